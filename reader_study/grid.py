"""No resolution tell: real and synthetic cases come from scans of like voxel size, or are made alike.

A 3 mm scan looks blocky and smooth next to a 0.7 mm one whatever the display grid, so a reader
could tell real from synthetic by the source scans' resolution alone. ``reader-study build`` either

* **matches**: pairs a real with a synthetic lesion only when their source scans' in-plane pixel
  sizes and slice spacings agree within a tolerance (the coarser at most ``1 + tolerance`` times the
  finer), and refuses, naming the figures, when no pair does; or
* **harmonises** (``--harmonise``): resamples every case onto the coarsest pixel size and slice
  spacing among the chosen cases before rendering, so that all of them show one resolution.

"Slice" means the voxel spacing along the body axis: NIfTI keeps no separate slice thickness.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["DEFAULT_PIXEL_TOLERANCE", "DEFAULT_SLICE_TOLERANCE", "spacing_compatible", "spacing_summary",
           "describe_spacings", "coarsest_grid", "harmonised_block"]

# In-plane pixel size follows the reconstruction field of view (patient size): 0.6-0.9 mm among
# abdominal CTs of one protocol. 40 % lets that spread pair up and keeps 0.7 vs 1.5 mm apart.
DEFAULT_PIXEL_TOLERANCE = 0.4
# Slice spacing: 1.25 vs 1.6 mm or 2 vs 2.5 mm look alike in an axial stack; 1 vs 3 mm does not.
DEFAULT_SLICE_TOLERANCE = 0.5


def _close(a: float, b: float, tolerance: float) -> bool:
    return max(a, b) <= (1.0 + tolerance) * min(a, b) + 1e-9


def spacing_compatible(a, b, *, pixel_tolerance: float = DEFAULT_PIXEL_TOLERANCE,
                       slice_tolerance: float = DEFAULT_SLICE_TOLERANCE) -> bool:
    """Whether two lesions' source scans agree in pixel size and slice spacing within the tolerances.

    Parameters
    ----------
    a, b : Lesion
        Anything with ``pixel_mm`` and ``slice_mm`` (mm).
    pixel_tolerance, slice_tolerance : float
        The coarser may be at most ``1 + tolerance`` times the finer.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> spacing_compatible(S(pixel_mm=0.7, slice_mm=1.0), S(pixel_mm=0.8, slice_mm=1.25))
    True
    >>> spacing_compatible(S(pixel_mm=0.7, slice_mm=1.0), S(pixel_mm=3.0, slice_mm=3.0))
    False
    """
    return _close(a.pixel_mm, b.pixel_mm, pixel_tolerance) and _close(a.slice_mm, b.slice_mm, slice_tolerance)


def spacing_summary(lesions: Sequence) -> dict:
    """``{'cases', 'pixel_mm': [min, max], 'slice_mm': [min, max]}`` of some lesions' source scans."""
    if not lesions:
        return {"cases": 0, "pixel_mm": None, "slice_mm": None}
    pixel = [lesion.pixel_mm for lesion in lesions]
    slices = [lesion.slice_mm for lesion in lesions]
    return {"cases": len(lesions), "pixel_mm": [round(min(pixel), 3), round(max(pixel), 3)],
            "slice_mm": [round(min(slices), 3), round(max(slices), 3)]}


def _range(values) -> str:
    low, high = values
    return f"{low:.2g} mm" if abs(high - low) < 0.005 else f"{low:.2g}-{high:.2g} mm"


def describe_spacings(real: dict, synthetic: dict) -> str:
    """``real cases have 0.57-0.78 mm pixels and 1.6 mm slices, synthetic 3 mm pixels and 3 mm slices``."""
    return (f"real cases have {_range(real['pixel_mm'])} pixels and {_range(real['slice_mm'])} slices, synthetic "
            f"{_range(synthetic['pixel_mm'])} pixels and {_range(synthetic['slice_mm'])} slices")


def coarsest_grid(lesions: Sequence) -> tuple[float, float]:
    """(pixel_mm, slice_mm): the coarsest in-plane pixel and slice spacing among the lesions' source scans."""
    return max(lesion.pixel_mm for lesion in lesions), max(lesion.slice_mm for lesion in lesions)


def harmonised_block(volume, spacing_mm, low, high, target_mm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The canonical box ``[low, high)`` of ``volume`` as a scan of voxel size ``target_mm`` would show it.

    Along each axis finer than the target, the HU are smoothed by a Gaussian that widens the voxel's
    own box profile (width ``s``) to that of a target voxel (width ``t``): its variance is the
    difference of the two boxes' variances, ``(t**2 - s**2) / 12``. Then they are sampled every
    ``t`` mm, starting at the box's first voxel, by linear interpolation. An axis that is already as
    coarse as the target is kept as it is.

    Parameters
    ----------
    volume : array-like, shape (X, Y, Z)
        Canonical HU, indexable by a tuple of slices (:class:`reader_study.volume.CTVolume`).
    spacing_mm : sequence of 3 float
        Its voxel size.
    low, high : sequence of 3 int
        Canonical voxel box to resample (``high`` exclusive); the caller reads a margin of
        ``3 * target`` mm around what it needs.
    target_mm : sequence of 3 float
        Voxel size to show, mm.

    Returns
    -------
    (block, spacing_mm, origin_mm)
        HU on the new grid (float32), its voxel size, and the position (mm, in the frame
        index x ``spacing_mm`` of ``volume``) of its first voxel.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    low, high = np.asarray(low, dtype=int), np.asarray(high, dtype=int)
    step = np.maximum(spacing, np.asarray(target_mm, dtype=float))
    block = np.asarray(volume[tuple(slice(int(a), int(b)) for a, b in zip(low, high))], dtype=np.float32)
    sigma = np.sqrt(np.maximum(step ** 2 - spacing ** 2, 0.0) / 12.0) / spacing  # in source voxels
    if np.any(sigma > 0):
        block = ndimage.gaussian_filter(block, sigma=sigma, mode="nearest")
    counts = np.floor((np.array(block.shape) - 1) * spacing / step + 1e-9).astype(int) + 1
    axes = [np.arange(n) * t / s for n, t, s in zip(counts, step, spacing)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=0)
    resampled = ndimage.map_coordinates(block, coords, order=1, mode="nearest", prefilter=False).astype(np.float32)
    return resampled, step, low * spacing
