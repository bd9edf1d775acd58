"""The contract every generator keeps, so that ``rules``, ``ca`` and ``diffusion`` plug in alike.

A generator turns a :class:`~tumorsyn.spec.TumorSpec` into a change of the CT inside the
tumour's box. It is split in the TorchIO way: ``sample_params`` draws (random), ``render`` and
``apply`` are deterministic functions of the spec.
"""
from __future__ import annotations


import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from tumorsyn.device import check_device
from tumorsyn.errors import ConfigError
from tumorsyn.organs import OrganPreset
from tumorsyn.placement import box_slices
from tumorsyn.spec import TumorSpec

__all__ = ["Generator", "Rendering", "MIN_DELTA_HU", "hypodense_contrast"]


@dataclass
class Rendering:
    """A tumour drawn in its box, without touching a CT.

    Attributes
    ----------
    label : ndarray of bool
        Visible tumour voxels in the box (after the organ cut unless exophytic).
    presence : ndarray of bool
        The same before the organ cut (for the inside-fraction check).
    """

    label: np.ndarray
    presence: np.ndarray


class Generator(ABC):
    """Base class of tumour generators (registered under ``name``)."""

    name: str = ""
    # Whether the tumour depends on the scan's HU (the cellular automaton grows through the tissue).
    # Every ``render`` takes the keyword ``ct_box``; generators that do not use it ignore it, so
    # callers may always pass the box's CT. This flag only says whether it matters (e.g. for caching).
    uses_ct: bool = False
    # The library that runs this generator's GPU work ("numba", "torch"), asked whether a GPU
    # asked for exists; None for generators that run on the CPU whatever the device.
    device_backend: str | None = None
    # Keyword options ``sample_spec(..., **options)`` hands to :meth:`sample_params`. Anything
    # else is refused by :meth:`check_options` (a typo or another generator's option would
    # otherwise be dropped without a word). ``None``: the generator does not declare them.
    options: frozenset | None = frozenset()

    def __init__(self, device="auto") -> None:
        self._device = "auto"
        self.to(device)

    @property
    def device(self) -> str:
        """Where this generator's work runs: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (canonical text).

        An execution setting held by the instance, never part of the spec: every device gives
        the same tumour for one spec. Change it with :meth:`to`.
        """
        return self._device

    def to(self, device) -> "Generator":
        """Run this generator's work on ``device`` from now on; returns the generator (diffusers' ``pipe.to``).

        ``device`` is ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``. A GPU
        that is not there is refused now (:class:`~tumorsyn.errors.ConfigError`), not at the first tumour.

        Examples
        --------
        >>> from tumorsyn.generators import get_generator
        >>> get_generator("rules").to("cpu").device
        'cpu'
        """
        self._device = check_device(device, backend=self.device_backend)
        return self

    def box(self, spec: TumorSpec) -> tuple[slice, ...]:
        """The box (slices of the scan) holding every voxel this generator may change for ``spec``, clipped to the grid."""
        half = [self.extent_mm(spec) / s + 1.0 for s in spec.spacing_mm]
        return box_slices(spec.center_vox, half, spec.grid_shape)

    @classmethod
    def check_options(cls, options, *, also=()) -> None:
        """Refuse options this generator does not take, naming them and listing the valid ones.

        Parameters
        ----------
        options : iterable of str
            Option names given to ``sample_spec``.
        also : iterable of str
            Further names the caller accepts itself (listed in the message).
        """
        if cls.options is None:
            return
        bad = sorted(set(options) - set(cls.options))
        if not bad:
            return
        from tumorsyn.generators.registry import option_owners

        owners = option_owners()
        notes = []
        for name in bad:
            others = [method for method, names in owners.items() if method != cls.name and name in names]
            notes.append(f"{name!r} (an option of {' and '.join(others)})" if others else repr(name))
        valid = sorted(set(cls.options) | set(also))
        kind = "option" if len(bad) == 1 else "options"
        raise ConfigError(f"method {cls.name!r} does not take the {kind} {', '.join(notes)}; "
                          f"it takes: {', '.join(valid) or 'none'}")

    @abstractmethod
    def sample_params(self, rng: np.random.Generator, *, size_mm: float, preset: OrganPreset,
                      organ_mean_hu: float, organ_std_hu: float, spacing_mm, options: dict,
                      organ_noise_hu: float | None = None) -> dict:
        """Draw the generator's own parameters (JSON values) for a tumour of ``size_mm``.

        ``organ_mean_hu`` / ``organ_std_hu`` are the host parenchyma's robust level and spread, and
        ``organ_noise_hu`` its scanner noise (:mod:`tumorsyn.host`); the real-tumour priors
        (:mod:`tumorsyn.priors`) give contrast and internal spread in units of that noise.
        """

    @abstractmethod
    def extent_mm(self, spec: TumorSpec) -> float:
        """Half-width (mm) of the box around the centre that holds every voxel the tumour changes."""

    @abstractmethod
    def render(self, spec: TumorSpec, organ_box: np.ndarray, origin, *, ct_box: np.ndarray | None = None) -> Rendering:
        """Label and presence of the tumour in the box starting at ``origin`` (voxel index), without writing a CT.

        ``ct_box`` (HU, the box's CT) is used by generators whose tumour depends on the scan
        (``uses_ct``) and ignored by the others.
        """

    @abstractmethod
    def apply(self, ct_box: np.ndarray, organ_box: np.ndarray, spec: TumorSpec, origin):
        """Return ``(ct_box_out, label_box, changed_box)`` for the box starting at ``origin``."""

    def rescale(self, spec: TumorSpec, factor: float) -> TumorSpec:
        """A spec whose tumour is ``factor`` times larger in every direction (used to meet sizes).

        Generators without a continuous size knob return the spec unchanged.
        """
        return spec

    def batch_key(self, spec: TumorSpec):
        """A hashable key: specs with the same key may be applied together by :meth:`apply_batch`.

        ``None`` (the default) means one at a time. Generators whose work batches well on a GPU
        (the diffusion sampler) return e.g. the model and step count.
        """
        return None

    def apply_batch(self, jobs) -> list:
        """:meth:`apply` for many ``(ct_box, organ_box, spec, origin)`` jobs; by default one after another."""
        return [self.apply(*job) for job in jobs]

    def validate(self, spec: TumorSpec) -> None:
        """Raise :class:`~tumorsyn.errors.ConfigError` if ``spec.params`` is not usable."""


# Weaker designed contrast would not be visible on CT (HU).
MIN_DELTA_HU = 8.0


def hypodense_contrast(contrast_hu: float, organ_mean_hu: float, organ: str) -> float:
    """The darkening (HU, positive) of a solid hypodense tumour: never darker than water.

    A solid tumour is not a cyst, so its level stays above about 5 HU. In an organ that is itself
    close to water (an unenhanced kidney, a fatty pancreas) that bound eats the drawn contrast: the
    tumour then cannot look as asked, and a warning says so with the figures.
    """
    reachable = max(float(organ_mean_hu) - 5.0, MIN_DELTA_HU)
    if reachable < 0.5 * float(contrast_hu):
        # One message per host (no per-tumour figures), so Python shows it once per scan, not per tumour.
        warnings.warn(f"hypodense {organ} tumours cannot reach the contrast real tumours show in this {organ} of "
                      f"{organ_mean_hu:.0f} HU without going below water: they are drawn at most {reachable:.0f} HU "
                      "darker (an unenhanced scan? try appearance='hyperdense' or 'isodense', or a contrast-enhanced "
                      "scan)", stacklevel=3)
    return float(min(float(contrast_hu), reachable))
