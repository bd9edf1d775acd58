"""Sizes of lesions in millimetres: the conventions every tumorsyn figure uses.

- A lesion is a 26-connected component of a binary mask.
- Equivalent-sphere diameter: ``2 * (3 V / (4 pi)) ** (1/3)`` with ``V`` = voxel count x voxel volume.
- Maximum 3D diameter: the largest distance between vertices of the lesion's marching-cubes surface
  (iso-level 0.5, scaled by the spacing), as pyradiomics' ``Maximum3DDiameter``; it counts the
  lesion's physical extent, so a one-voxel lesion measures about one voxel, not zero.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = [
    "CONNECTIVITY_26",
    "label_lesions",
    "equivalent_diameter_mm",
    "max_diameter_mm",
    "volume_ml",
]

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of ``mask``: (labels int32, count)."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=CONNECTIVITY_26)
    return labels, int(count)


def volume_ml(mask: np.ndarray, spacing_mm) -> float:
    """Volume of ``mask`` in millilitres (cm^3)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing_mm)) / 1000.0


def equivalent_diameter_mm(mask: np.ndarray, spacing_mm) -> float:
    """Diameter (mm) of the sphere with the same volume as ``mask``; 0 for an empty mask."""
    volume_mm3 = float(np.count_nonzero(mask)) * float(np.prod(spacing_mm))
    return 2.0 * (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)


def max_diameter_mm(mask: np.ndarray, spacing_mm) -> float:
    """Largest distance (mm) between points of the lesion's surface (marching cubes, level 0.5).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        One lesion (or any binary mask; all voxels count together).
    spacing_mm : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    float
        0 for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    box = ndimage.find_objects(mask.astype(np.uint8))
    if not box or box[0] is None:
        return 0.0
    crop = np.pad(mask[box[0]], 1).astype(np.float32)
    from skimage.measure import marching_cubes  # deferred: skimage's import is slow

    verts = marching_cubes(crop, level=0.5, spacing=tuple(float(s) for s in spacing_mm))[0]
    if len(verts) > 64:
        from scipy.spatial import ConvexHull, QhullError

        try:
            verts = verts[ConvexHull(verts).vertices]
        except QhullError:  # flat lesion: every vertex is a candidate
            pass
    # Pairwise distances in chunks keep memory bounded for large hulls.
    best = 0.0
    for start in range(0, len(verts), 512):
        diff = verts[start:start + 512, None, :] - verts[None, :, :]
        best = max(best, float(np.sqrt((diff ** 2).sum(-1).max())))
    return best
