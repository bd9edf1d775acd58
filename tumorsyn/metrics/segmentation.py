"""Voxel overlap (Dice) and normalised surface Dice at a tolerance in mm.

Surface Dice follows Nikolov et al. (2021) with boundaries made of voxels, as MONAI's
``compute_surface_dice(..., use_subvoxels=False)``: a boundary voxel is a mask voxel that a
6-connected (face) erosion removes; distances are Euclidean between voxel centres, scaled by the
spacing; a boundary voxel counts as correct when its distance to the other boundary is <= tolerance.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from tumorsyn.placement import bounding_box

__all__ = ["SURFACE_TOLERANCE_MM", "dice", "surface_dice", "boundary_points_mm"]

SURFACE_TOLERANCE_MM = 2.0
# Absorbs float rounding of distances that equal the tolerance exactly (e.g. 2 voxels of 1 mm).
_TIE_SLACK_MM = 1e-6


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"{name} must be 3D (X, Y, Z), got shape {mask.shape}")
    return mask if mask.dtype == bool else mask != 0


def _check_spacing(spacing_mm: Sequence[float]) -> np.ndarray:
    spacing = np.asarray([float(s) for s in spacing_mm], dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must be 3 positive numbers in mm, got {tuple(spacing_mm)}")
    return spacing


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Dice coefficient ``2 |R & P| / (|R| + |P|)``.

    Parameters
    ----------
    reference, prediction : ndarray of bool, shape (X, Y, Z)
        Binary masks on one grid.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when both masks are empty (Dice is undefined there).
    """
    ref = _as_bool(reference, "reference")
    pred = _as_bool(prediction, "prediction")
    if ref.shape != pred.shape:
        raise ValueError(f"reference shape {ref.shape} differs from prediction shape {pred.shape}")
    total = int(np.count_nonzero(ref)) + int(np.count_nonzero(pred))
    if total == 0:
        return math.nan
    return 2.0 * int(np.count_nonzero(ref & pred)) / total


def boundary_points_mm(mask: np.ndarray, *, spacing_mm: Sequence[float]) -> np.ndarray:
    """Centres of the boundary voxels of ``mask``, in mm from voxel (0, 0, 0).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    ndarray of float, shape (N, 3)
        Voxels of the mask removed by one 6-connected erosion (a voxel on the array's edge is a
        boundary voxel, as if the array were padded with background).
    """
    mask = _as_bool(mask, "mask")
    spacing = _check_spacing(spacing_mm)
    box = bounding_box(mask)
    if box is None:
        return np.zeros((0, 3))
    # Erode only the lesion's box (padded by one background voxel): cost follows the mask, not the scan.
    crop = np.pad(mask[box], 1)
    edge = crop & ~ndimage.binary_erosion(crop)
    index = np.argwhere(edge) - 1 + np.array([s.start for s in box])
    return index * spacing


def surface_dice(reference: np.ndarray, prediction: np.ndarray, *, spacing_mm: Sequence[float],
                 tolerance_mm: float = SURFACE_TOLERANCE_MM) -> float:
    """Normalised surface Dice: fraction of both boundaries within ``tolerance_mm`` of the other.

    Parameters
    ----------
    reference, prediction : ndarray of bool, shape (X, Y, Z)
        Binary masks on one grid.
    spacing_mm : sequence of 3 float
        Voxel size in mm (anisotropic allowed).
    tolerance_mm : float, optional
        Accepted boundary deviation in mm (default 2 mm).

    Returns
    -------
    float
        In [0, 1]; 0 when exactly one mask is empty; ``nan`` when both are.

    References
    ----------
    S. Nikolov et al., "Clinically applicable segmentation of head and neck anatomy for
    radiotherapy", J Med Internet Res 23 (2021) e26151.
    """
    ref = _as_bool(reference, "reference")
    pred = _as_bool(prediction, "prediction")
    if ref.shape != pred.shape:
        raise ValueError(f"reference shape {ref.shape} differs from prediction shape {pred.shape}")
    tolerance = float(tolerance_mm)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance_mm must be a finite number >= 0, got {tolerance_mm}")
    ref_pts = boundary_points_mm(ref, spacing_mm=spacing_mm)
    pred_pts = boundary_points_mm(pred, spacing_mm=spacing_mm)
    if len(ref_pts) == 0 and len(pred_pts) == 0:
        return math.nan
    if len(ref_pts) == 0 or len(pred_pts) == 0:
        return 0.0
    # A k-d tree over boundary points avoids a distance transform of the whole (possibly huge) box.
    bound = tolerance + _TIE_SLACK_MM
    # Points farther than the bound come back as inf, which fails the comparison below.
    search = bound * 1.0001 + 1e-9
    d_pred = cKDTree(ref_pts).query(pred_pts, k=1, distance_upper_bound=search)[0]
    d_ref = cKDTree(pred_pts).query(ref_pts, k=1, distance_upper_bound=search)[0]
    near_pred = d_pred <= bound
    near_ref = d_ref <= bound
    return float((np.count_nonzero(near_pred) + np.count_nonzero(near_ref)) / (len(pred_pts) + len(ref_pts)))
