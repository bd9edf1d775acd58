"""TorchIO transforms that write synthetic tumours into a ``tio.Subject``: :class:`RandomTumor` and :class:`Tumor`.

:class:`RandomTumor` is the random transform: in :meth:`~RandomTumor.apply_transform` it draws one
seed from torch's random generator (as every TorchIO random transform does), draws the tumour specs
with :func:`tumorsyn.sampling.iter_specs` from a ``numpy.random.Generator`` seeded with it, and
applies them through :class:`Tumor`, its deterministic twin (``RandomNoise`` -> ``Noise``). The
subject's history holds that ``Tumor`` with the specs, so ``subject.get_composed_history()`` applied
to the input subject writes the same tumours again.

>>> import torchio as tio
>>> from tumorsyn.transforms.torchio import RandomTumor
>>> pipeline = tio.Compose([
...     RandomTumor(organ="liver", size_mm=(5, 20), p=0.5),   # on HU: before any intensity scaling
...     tio.Clamp(out_min=-175, out_max=250),
...     tio.RescaleIntensity(out_min_max=(0, 1), include=["ct"]),
... ])

Geometry comes from each image's own affine: TorchIO keeps ``(C, I, J, K)`` tensors with a
voxel-to-RAS+ affine in any orientation; the core works on canonical RAS+ arrays ``(X, Y, Z)`` with
a spacing in mm (DESIGN.md). The transforms view both images in canonical order (flips and
transposes from nibabel's ``io_orientation``, as :class:`tumorsyn.io.scan.Scan` does), write there,
and give the data back in the subject's own orientation: a subject stored LPS and the same subject
stored RAS get the same tumour in world space.

This module needs torch and torchio (``pip install tumorsyn[torchio]``), not MONAI; it never imports
torchvision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torchio as tio
from torchio.transforms.augmentation import RandomTransform
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from tumorsyn.apply import apply_specs, paste, paste_labels
from tumorsyn.device import parse_device
from tumorsyn.errors import ConfigError, EmptyOrganError, GridMismatchError, OrganTooSmallError
from tumorsyn.generators import get_generator
from tumorsyn.io.labels import (ORGANS, lesion_mask_from_labels, organ_label_values,
                                organ_mask_from_labels, tumor_label_value)
from tumorsyn.placement import PlacementContext, bounding_box, check_hu_span
from tumorsyn.sampling import check_options, iter_specs, parse_size_bins
from tumorsyn.spec import TumorSpec, as_specs

__all__ = ["RandomTumor", "Tumor", "tumor_label_value"]

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
# TorchIO runs apply_transform under np.errstate(all="raise"); the core is written for numpy's
# default error handling (a benign 0/0 in a filter must not stop a training run), so it runs under that.
_NUMPY_DEFAULTS = dict(divide="warn", over="warn", under="ignore", invalid="warn")


def _as_spec_dicts(specs, name: str) -> list[dict]:
    """Specs (TumorSpec, dict, JSON text, or a sequence of them) as checked JSON dicts, in order."""
    try:
        return [spec.to_dict() for spec in as_specs(specs)]
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass
class _View:
    """One subject's CT and label map in canonical RAS+ order, and the way back."""

    image: tio.Image
    label: tio.Image
    ct: np.ndarray            # (X, Y, Z) canonical view, the image's dtype
    labels: np.ndarray        # (X, Y, Z) canonical view, integer values
    spacing_mm: tuple[float, float, float]
    ornt: np.ndarray          # file axes -> canonical (nibabel orientation)

    def back(self, array: np.ndarray) -> torch.Tensor:
        """Canonical ``(X, Y, Z)`` array -> a ``(1, I, J, K)`` tensor in the subject's own orientation."""
        stored = apply_orientation(array, ornt_transform(_RAS, self.ornt))
        return torch.from_numpy(np.ascontiguousarray(stored)[None])


class Tumor(tio.Transform):
    """Write given tumour specs into a subject's CT and label map: the deterministic twin of :class:`RandomTumor`.

    Parameters
    ----------
    specs : TumorSpec, dict, JSON text, or a sequence of them
        The tumours to write, in order (e.g. from a ``tumorsyn generate`` manifest, or recorded by
        :class:`RandomTumor` in the subject's history). Kept as JSON dicts, so the history and
        ``to_hydra_config()`` hold plain values. An empty list writes nothing.
    organ : {'liver', 'pancreas', 'kidney', ...}, optional
        Host organ; by default the specs' organ. The organ mask must be the one the specs were
        drawn on (the rules generator cuts the tumour at the organ surface).
    organ_labels, label_preset, tumor_label, image_name, label_name, device
        As in :class:`RandomTumor`.
    reason : str
        Why fewer tumours than asked were written (recorded by :class:`RandomTumor`, e.g. ``"empty
        organ: ..."``); not used when applying.
    **kwargs
        TorchIO's transform arguments (``p``, ``copy``, ``include``, ``exclude``, ...).

    Notes
    -----
    The specs replay only on the canonical grid (shape and spacing in mm) they were drawn for;
    otherwise :class:`~tumorsyn.errors.InputError` says so. The transform is not invertible:
    ``subject.get_inverse_transform()`` skips it with TorchIO's warning.
    """

    def __init__(self, specs=(), *, organ: str | None = None, organ_labels: Iterable[int] | None = None,
                 label_preset: str | None = "totalsegmentator", tumor_label: int | None = None,
                 image_name: str | None = None, label_name: str | None = None, device: str = "auto",
                 reason: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.specs = _as_spec_dicts(specs, self.name)
        organs = sorted({spec["organ"] for spec in self.specs})
        if organ is None:
            if len(organs) > 1:
                raise ConfigError(f"{self.name}: the specs are for several organs ({', '.join(organs)}); give organ=")
            organ = organs[0] if organs else None
        elif organs and organs != [organ]:
            raise ConfigError(f"{self.name}: organ={organ!r} but the specs are for {', '.join(organs)}")
        _check_labels(self.name, organ, organ_labels, label_preset, tumor_label)
        self.organ = organ
        self.organ_labels = None if organ_labels is None else [int(v) for v in organ_labels]
        self.label_preset = label_preset
        self.tumor_label = None if tumor_label is None else int(tumor_label)
        self.image_name, self.label_name = image_name, label_name
        self.device = _check_device(self.name, device)
        self.reason = str(reason)
        for method in sorted({spec["method"] for spec in self.specs}):
            try:
                get_generator(method, device=self.device)  # a GPU that is not there: ConfigError now
            except ConfigError as exc:
                raise ConfigError(f"{self.name}: {exc}") from None
        # TorchIO's record of the arguments that rebuild this transform (subject history, repr, Hydra).
        self.args_names = ["specs", "organ", "organ_labels", "label_preset", "tumor_label", "image_name",
                           "label_name", "device", "reason"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        if not self.specs:
            return subject
        view = _read(subject, self)
        with np.errstate(**_NUMPY_DEFAULTS):
            organ_mask = organ_mask_from_labels(view.labels, self.organ, preset=self.label_preset,
                                                organ_labels=self.organ_labels)
            ct_hu = np.asarray(view.ct, dtype=np.float32)
            check_hu_span(ct_hu[bounding_box(organ_mask)], self.organ)
            self.write(view, ct_hu, organ_mask)
        return subject

    def write(self, view: _View, ct_hu: np.ndarray, organ_mask: np.ndarray) -> None:
        """Apply the specs to the canonical arrays and store the results in the subject's images."""
        value = tumor_label_value(view.labels, label_preset=self.label_preset, organ_labels=self.organ_labels,
                                  tumor_label=self.tumor_label)
        stored_labels = view.label.data[0].detach().cpu().numpy()
        if stored_labels.dtype == bool or (np.issubdtype(stored_labels.dtype, np.integer)
                                           and value > np.iinfo(stored_labels.dtype).max):
            raise ConfigError(f"{self.name}: tumour label {value} does not fit the label map's "
                              f"{stored_labels.dtype}; give tumor_label= or cast the label map")
        specs = [TumorSpec.from_dict(spec) for spec in self.specs]
        applied = apply_specs(ct_hu, organ_mask, view.spacing_mm, specs, device=self.device)
        # A float32 image is the core's own output; any other dtype takes only the changed voxels.
        image = applied.ct if view.ct.dtype == np.float32 else paste(np.array(view.ct, copy=True), applied.tumors)
        labels = paste_labels(np.array(apply_orientation(stored_labels, view.ornt), copy=True),
                              applied.tumors, value)
        view.image.set_data(view.back(image))
        view.label.set_data(view.back(labels))


class RandomTumor(RandomTransform):
    """Write random synthetic tumours into a subject's CT (HU) and label map (TorchIO random transform).

    Parameters
    ----------
    organ : {'liver', 'pancreas', 'kidney', ...}
        Host organ of the tumours.
    size_mm : float, (float, float) or list of ((float, float), float)
        Equivalent-sphere diameter of each tumour in millimetres, measured with the image's own
        spacing (anisotropic included): one range drawn uniformly, or weighted size bins
        ``[((low_mm, high_mm), weight), ...]``.
    count : int
        Tumours per subject; they never overlap.
    method : str
        Generator (``"rules"``, ``"ca"``, ``"diffusion"``; see :func:`tumorsyn.available_generators`).
    organ_labels : iterable of int, optional
        Label values of the organ in the label map; by default ``LABEL_PRESETS[label_preset][organ]``
        (TotalSegmentator: liver 5, pancreas 7, kidney 2 and 3).
    label_preset : str
        Key of :data:`tumorsyn.io.labels.LABEL_PRESETS`; its ``"lesion"`` labels mark existing
        tumours, which new ones avoid.
    tumor_label : int, optional
        Value written into the label map where a tumour is visible. By default the preset's first
        lesion label, else the subject's largest label + 1 (see :func:`tumor_label_value`): give it
        explicitly when the label maps of a dataset do not all hold the same labels.
    image_name, label_name : str, optional
        Names of the CT (a ``tio.ScalarImage`` in HU) and the label map (a ``tio.LabelMap``) in the
        subject; by default the subject's only image of each kind (after ``include``/``exclude``).
    device : {'auto', 'cpu', 'cuda', 'cuda:N'}
        Where generators with a GPU path run; every device draws the same specs. Keep ``"cpu"`` in
        ``SubjectsLoader`` worker processes.
    options : dict, optional
        Passed to :func:`tumorsyn.sample_spec` and the generator, e.g. ``{"appearance": "rim"}``,
        ``{"allow_smaller": True}``.
    **kwargs
        TorchIO's transform arguments: ``p`` (probability that a subject gets tumours), ``copy``,
        ``include``, ``exclude``, ...

    Notes
    -----
    *Randomness.* Per applied call, one seed is drawn from torch's global generator (TorchIO's
    ``_get_random_seed``) and seeds the ``numpy.random.Generator`` that draws every spec, so
    ``torch.manual_seed(s)`` reproduces a run, ``SubjectsLoader`` workers included (PyTorch seeds
    each worker from the main process's generator).

    *History.* The subject's history gets a :class:`Tumor` holding the drawn specs (an empty list
    and its ``reason`` when none could be placed), like ``RandomNoise`` records a ``Noise``:
    ``subject.history``, ``subject.get_composed_history()`` (replays the tumours exactly on the
    input subject) and ``tio.utils.history_collate`` (keeps them through a ``SubjectsLoader``).

    *Odd cases.* A subject without the organ (``EmptyOrganError``), or whose organ is too small for
    the size asked (``OrganTooSmallError``), passes through with what fits (possibly nothing) and
    the reason recorded, so one case does not stop a training run; other errors raise, e.g.
    ``NotHUError`` when the CT was normalised before this transform.
    """

    def __init__(self, organ: str = "liver", size_mm=(5.0, 20.0), count: int = 1, method: str = "rules",
                 organ_labels: Iterable[int] | None = None, label_preset: str | None = "totalsegmentator",
                 tumor_label: int | None = None, image_name: str | None = None, label_name: str | None = None,
                 device: str = "auto", options: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        name = self.name
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ConfigError(f"{name}: count must be a positive integer, got {count!r}")
        _check_labels(name, organ, organ_labels, label_preset, tumor_label)
        self.device = _check_device(name, device)
        self.options = dict(options or {})
        try:
            parse_size_bins(size_mm)
            get_generator(method, device=self.device)
            check_options(method, self.options)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        self.organ, self.size_mm, self.count, self.method = organ, size_mm, int(count), method
        self.organ_labels = None if organ_labels is None else [int(v) for v in organ_labels]
        self.label_preset = label_preset
        self.tumor_label = None if tumor_label is None else int(tumor_label)
        self.image_name, self.label_name = image_name, label_name

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        seed = self._get_random_seed()  # torch's generator: torch.manual_seed reproduces the specs
        view = _read(subject, self)
        specs, reason, organ_mask, ct_hu = self.get_params(view, seed)
        tumor = Tumor(specs, organ=self.organ, organ_labels=self.organ_labels, label_preset=self.label_preset,
                      tumor_label=tumor_label_value(view.labels, label_preset=self.label_preset,
                                                    organ_labels=self.organ_labels, tumor_label=self.tumor_label),
                      image_name=self.image_name, label_name=self.label_name, device=self.device, reason=reason,
                      **self._get_base_args())
        if specs:
            # The subject is already this call's copy: write in place instead of a second deep copy.
            with np.errstate(**_NUMPY_DEFAULTS):
                tumor.write(view, ct_hu, organ_mask)
        if self.parse_input:
            tumor._add_transform_to_subject_history(subject)
        return subject

    def get_params(self, view: _View, seed: int) -> tuple[list[TumorSpec], str, np.ndarray | None, np.ndarray | None]:
        """Draw the specs for one subject from ``seed``: ``(specs, reason, organ_mask, ct_hu)``.

        ``reason`` says why fewer than ``count`` specs were drawn (``""`` when all were).
        """
        with np.errstate(**_NUMPY_DEFAULTS):
            try:
                organ_mask = organ_mask_from_labels(view.labels, self.organ, preset=self.label_preset,
                                                    organ_labels=self.organ_labels)
            except EmptyOrganError as exc:
                return [], f"empty organ: {exc}", None, None
            ct_hu = np.asarray(view.ct, dtype=np.float32)
            value = tumor_label_value(view.labels, label_preset=self.label_preset, organ_labels=self.organ_labels,
                                      tumor_label=self.tumor_label)
            # New tumours keep clear of existing lesions and of tumours an earlier transform wrote.
            avoid = lesion_mask_from_labels(view.labels, preset=self.label_preset) | (view.labels == value)
            context = PlacementContext(organ_mask, view.spacing_mm, self.organ, ct_hu=ct_hu, avoid=avoid)
            specs: list[TumorSpec] = []
            try:
                for spec in iter_specs(organ_mask, view.spacing_mm, count=self.count, organ=self.organ,
                                       size_mm=self.size_mm, rng=np.random.default_rng(seed), context=context,
                                       method=self.method, device=self.device, **self.options):
                    specs.append(spec)
            except OrganTooSmallError as exc:
                # One odd case must not stop a training run: keep what fits and say why.
                reason = f"organ too small: {exc}" if not specs else \
                    f"placed {len(specs)} of {self.count} tumours; organ too small: {exc}"
                return specs, reason, organ_mask, ct_hu
        return specs, "", organ_mask, ct_hu


# --- shared checks and reading ----------------------------------------------------------------------
def _check_labels(name: str, organ: str | None, organ_labels, label_preset, tumor_label) -> None:
    """Refuse an unknown organ, preset or a bad tumour label at construction, not in the middle of an epoch."""
    if organ is not None and organ not in ORGANS:
        raise ConfigError(f"{name}: unknown organ {organ!r}; choose one of {', '.join(ORGANS)}")
    try:
        if organ is not None:
            organ_label_values(organ, label_preset, organ_labels)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if tumor_label is not None and (isinstance(tumor_label, bool) or not isinstance(tumor_label, (int, np.integer))
                                    or tumor_label <= 0):
        raise ConfigError(f"{name}: tumor_label must be a positive integer label value, got {tumor_label!r}")


def _check_device(name: str, device) -> str:
    try:
        parse_device(device)  # syntax; whether the GPU exists is asked by the generators that use one
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return str(device)


def _pick(images: dict, kind: type, wanted: str | None, what: str, name: str) -> tio.Image:
    """The named image (checked to be of ``kind``), or the subject's only image of that kind."""
    if wanted is not None:
        if wanted not in images:
            raise ConfigError(f"{name}: the subject has no image {wanted!r} (images: {', '.join(images) or 'none'})")
        if not isinstance(images[wanted], kind):
            raise ConfigError(f"{name}: {wanted!r} is a {type(images[wanted]).__name__}; the {what} must be a "
                              f"tio.{kind.__name__}")
        return images[wanted]
    found = [key for key, image in images.items() if isinstance(image, kind)]
    if len(found) != 1:
        arg = "image_name" if kind is tio.ScalarImage else "label_name"
        raise ConfigError(f"{name}: the subject holds {len(found)} tio.{kind.__name__} images "
                          f"({', '.join(found) or 'none'}); give {arg}= to name the {what}")
    return images[found[0]]


def _read(subject: tio.Subject, transform: Tumor | RandomTumor) -> _View:
    """The transform's CT and label map in canonical RAS+ order, checked to share one grid."""
    name = transform.name
    images = subject.get_images_dict(intensity_only=False, include=transform.include, exclude=transform.exclude)
    image = _pick(images, tio.ScalarImage, transform.image_name, "CT (in HU)", name)
    label = _pick(images, tio.LabelMap, transform.label_name, "label map", name)
    for key, one in (("CT", image), ("label map", label)):
        if one.data.ndim != 4 or one.data.shape[0] != 1:
            raise ConfigError(f"{name}: the {key} has shape {tuple(one.data.shape)}; expected one channel "
                              "(1, I, J, K) of a 3D volume")
    if image.data.shape != label.data.shape:
        raise GridMismatchError(f"{name}: label grid {tuple(label.data.shape[1:])} differs from CT grid "
                                f"{tuple(image.data.shape[1:])}; resample the label map onto the CT first "
                                "(tio.Resample(target=...))")
    affine = np.asarray(image.affine, dtype=np.float64)
    shift = float(np.abs(affine - np.asarray(label.affine, dtype=np.float64)).max())
    if shift > 0.01:
        raise GridMismatchError(f"{name}: label affine differs from the CT's by up to {shift:.3g} mm; the labels "
                                "are not on the CT's voxel grid (tio.Resample(target=...) first)")
    ornt = io_orientation(affine)
    shape = tuple(image.data.shape[1:])
    canonical_affine = affine @ inv_ornt_aff(ornt, shape)
    # Voxel size along canonical X, Y, Z: the lengths of the canonical affine's columns (as Scan.spacing_mm).
    spacing = tuple(float(z) for z in np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0)))
    ct = apply_orientation(image.data[0].detach().cpu().numpy(), ornt)
    labels = apply_orientation(label.data[0].detach().cpu().numpy(), ornt)
    if not np.issubdtype(labels.dtype, np.integer):
        labels = np.rint(labels).astype(np.int64)
    return _View(image=image, label=label, ct=ct, labels=labels, spacing_mm=spacing, ornt=ornt)
