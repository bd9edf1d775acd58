"""A batchgeneratorsv2 transform writing synthetic tumours into one normalised nnU-Net training patch.

nnU-Net's data loader crops a patch from the preprocessed case (resampled to the configuration's
spacing and normalised) and runs the training transforms on it, one sample at a time, as
``transform(image=(C, X, Y, Z) tensor, segmentation=(C, X, Y, Z) tensor)``. Put first, before the
spatial augmentation, this transform sees the patch at the plans' spacing: it turns the CT channel
back into HU (:class:`~tumorsyn.integrations.nnunet.settings.CTIntensity`), draws and applies the
tumours with the core (:func:`tumorsyn.sampling.iter_specs`, :func:`tumorsyn.apply.apply_specs`),
normalises the changed voxels again and writes the tumour label into the segmentation.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from typing import Sequence

import numpy as np
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from tumorsyn.apply import apply_specs, paste, paste_labels
from tumorsyn.errors import ConfigError, EmptyOrganError, NotHUError, OrganTooSmallError
from tumorsyn.generators import get_generator
from tumorsyn.integrations.nnunet.settings import CTIntensity, TumorSynSettings
from tumorsyn.sampling import check_options, iter_specs, parse_size_bins
from tumorsyn.spec import TumorSpec

__all__ = ["TumorSynthesisTransform"]


class TumorSynthesisTransform(BasicTransform):
    """Write random synthetic tumours into an nnU-Net training patch (batchgeneratorsv2 transform).

    Parameters
    ----------
    settings : TumorSynSettings
        Organ, probability, method, size range, count, channel, device, options.
    intensity : CTIntensity
        The CT channel's normalisation (from the plans).
    spacing_mm : (float, float, float)
        Voxel size of the patch in mm, in the patch's own axis order: the configuration's
        ``spacing`` (nnU-Net arrays are transposed by ``transpose_forward``; the plans' spacing is too).
    organ_labels : sequence of int
        The organ's values in the segmentation.
    tumor_label : int
        The value written where a tumour is visible; existing voxels of it are kept clear of.
    kept_shape : (int, int, int), optional
        The patch size (voxels) the spatial augmentation later cuts from the centre of this
        patch (nnU-Net loads a larger patch so that rotations have data at the corners).
        Tumour centres are drawn in that central box, so that the tumours reach the batch;
        by default anywhere in the patch.

    Notes
    -----
    *Randomness.* Whether a patch is selected and the seed its tumours are drawn from come from
    ``numpy.random``'s global state, as in every batchgenerators transform: nnU-Net seeds it per
    augmentation worker. The drawn specs of the last patch are kept in ``last_specs``.

    *Skipped patches.* A patch without enough organ for the smallest size, whose organ is too thin
    or too small for a tumour, or whose organ region spans less than 100 HU (a sliver at the patch
    border) passes unchanged; ``stats`` counts patches per outcome in this process (each augmentation
    worker has its own counts). The first patch a process skips because its organ does not look like
    the organ in HU raises a warning: a wrong ``organ_labels`` would otherwise skip every patch unseen.
    """

    def __init__(self, settings: TumorSynSettings, intensity: CTIntensity, spacing_mm: Sequence[float], *,
                 organ_labels: Sequence[int], tumor_label: int, kept_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.intensity = intensity
        spacing = tuple(float(s) for s in spacing_mm)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ConfigError(f"tumour synthesis needs 3D patches with a spacing (x, y, z) in mm, got {spacing_mm!r} "
                              "(use a 3d_fullres or 3d_lowres configuration)")
        self.spacing_mm = spacing
        self.organ_labels = tuple(int(v) for v in organ_labels)
        self.tumor_label = int(tumor_label)
        self.kept_shape = None if kept_shape is None else tuple(int(n) for n in kept_shape)
        if self.kept_shape is not None and (len(self.kept_shape) != 3 or min(self.kept_shape) < 1):
            raise ConfigError(f"kept_shape must be three positive voxel counts, got {kept_shape!r}")
        # Fail now, not in the middle of an epoch: an unknown method, an option it does not take.
        get_generator(settings.method, device=settings.device)
        check_options(settings.method, settings.options)
        ranges, _ = parse_size_bins(settings.size_mm)
        smallest_mm = min(lo for lo, _ in ranges)
        # An organ part holding less than one sphere of the smallest size cannot take a tumour:
        # skip it without trying placements.
        self.min_organ_voxels = math.pi / 6 * smallest_mm ** 3 / float(np.prod(self.spacing_mm))
        self.stats: Counter = Counter()
        self.last_specs: list[TumorSpec] = []
        self._warned = False

    def get_parameters(self, **data_dict) -> dict:
        """Draw "synthesise or not" and, when selected, the 32-bit seed of this patch's tumours."""
        selected = bool(np.random.uniform() < self.settings.prob)
        return {"seed": int(np.random.randint(0, 2**32, dtype=np.int64)) if selected else None}

    def apply(self, data_dict: dict, **params) -> dict:
        self.last_specs = []
        if params.get("seed") is None:
            self.stats["not selected"] += 1
            return data_dict
        image, seg = data_dict.get("image"), data_dict.get("segmentation")
        if image is None or seg is None:
            raise ConfigError("tumour synthesis needs both 'image' and 'segmentation' in nnU-Net's data")
        # CPU tensors share memory with their numpy views: the patch is changed in place.
        specs, reason = self.write(image.numpy(), seg.numpy(), rng=np.random.default_rng(params["seed"]))
        self.last_specs = specs
        self.stats[reason.split(":")[0] or "tumour written"] += 1
        return data_dict

    def write(self, image: np.ndarray, seg: np.ndarray, *, rng) -> tuple[list[TumorSpec], str]:
        """Write tumours into ``image`` and ``seg`` in place; return the specs and why none ("" if some).

        Parameters
        ----------
        image : ndarray of float32, shape (C, X, Y, Z)
            The normalised patch.
        seg : ndarray of int, shape (C, X, Y, Z)
            Its segmentation (channel 0; -1 outside the image); other channels (a cascade's
            previous stage) are left alone.
        rng : numpy.random.Generator or int
        """
        if image.ndim != 4 or seg.ndim != 4:
            raise ConfigError(f"tumour synthesis needs 3D patches (C, X, Y, Z), got image {image.shape}, "
                              f"segmentation {seg.shape} (use a 3d_fullres or 3d_lowres configuration)")
        settings = self.settings
        labels = seg[0]
        organ_mask = np.isin(labels, self.organ_labels)
        if organ_mask.sum() < self.min_organ_voxels:
            return [], "organ absent or too small in the patch"
        centers = self.central_box(labels.shape)
        if centers is not None and not (organ_mask & centers).any():
            return [], "organ absent from the centre the spatial augmentation keeps"
        hu = self.intensity.to_hu(image[settings.channel])
        specs: list[TumorSpec] = []
        try:
            for spec in iter_specs(organ_mask, self.spacing_mm, count=settings.count, organ=settings.organ,
                                   size_mm=settings.size_mm, rng=rng, ct_hu=hu, avoid=labels == self.tumor_label,
                                   centers=centers, method=settings.method, device=settings.device,
                                   **settings.options):
                specs.append(spec)
        except (EmptyOrganError, OrganTooSmallError, NotHUError) as exc:
            # One odd patch must not stop a training run: keep what fits and say why.
            if isinstance(exc, NotHUError) and not self._warned:
                self._warned = True
                # A wrong organ label would skip every patch without a word: say it once per process.
                warnings.warn(f"tumour synthesis skips a patch: {exc} (organ labels {self.organ_labels}); "
                              "if this repeats, check organ_labels in the settings", stacklevel=2)
            if not specs:
                return [], f"{type(exc).__name__}: {exc}"
        applied = apply_specs(hu, organ_mask, self.spacing_mm, specs, device=settings.device)
        # Only the voxels a tumour changed are normalised again and written: every other voxel
        # keeps nnU-Net's exact value.
        normalised = [dataclasses.replace(t, ct_box=self.intensity.normalise(t.ct_box)) for t in applied.tumors]
        paste(image[settings.channel], normalised)
        paste_labels(labels, applied.tumors, self.tumor_label)
        return specs, ""

    def central_box(self, shape: Sequence[int]) -> np.ndarray | None:
        """Where tumour centres may lie in a patch of ``shape``: the centred ``kept_shape`` box, or None (anywhere)."""
        if self.kept_shape is None or all(k >= n for k, n in zip(self.kept_shape, shape)):
            return None
        box = np.zeros(tuple(shape), dtype=bool)
        box[tuple(slice(max((n - k) // 2, 0), max((n - k) // 2, 0) + k) for k, n in zip(self.kept_shape, shape))] = True
        return box
