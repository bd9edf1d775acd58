"""The automaton's world: tissue classes from the scan's own HU, neighbour offsets, probabilities.

Tissue classes (``int8`` codes in the padded box)
-------------------------------------------------
``BARRIER`` (0)
    Outside the organ, air, or the box's one-voxel padding: never entered.
``SURFACE`` (1)
    Organ voxels closer than the organ preset's margin to the organ surface: the capsule of the
    organ holds, the tumour is deflected along it (not entered).
``LOW``, ``MID``, ``HIGH`` (2, 3, 4)
    Parenchyma darker than, like, or brighter than the organ's typical tissue: the 1 mm-smoothed
    HU below ``mean - 0.5 std``, between, or above ``mean + 0.5 std`` (relative to this scan's
    organ statistics, so arterial, venous and unenhanced scans all give three populated levels).
    Looser (darker) tissue is invaded more easily.
``VESSEL`` (5)
    Bright vessels and enhancing ducts, exactly :func:`tumorsyn.placement.vessel_mask`: they
    resist (a saturated neighbour must push ``yield_pushes`` times before they give way) and
    deflect the growth meanwhile.
``OUTSIDE`` (6)
    Soft tissue just outside the organ, passable only for an exophytic (kidney) tumour.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from tumorsyn.organs import get_preset
from tumorsyn.placement import vessel_mask, vessel_smoothing

__all__ = ["BARRIER", "SURFACE", "LOW", "MID", "HIGH", "VESSEL", "OUTSIDE", "N_CLASSES", "OFFSETS",
           "direction_weights", "probability_table", "tissue_classes"]

BARRIER, SURFACE, LOW, MID, HIGH, VESSEL, OUTSIDE = range(7)
N_CLASSES = 7

# The 26 neighbours of a voxel (every offset in {-1, 0, 1}^3 except the centre), in a fixed order
# that the hash's direction index refers to. Exactly 26 outcomes: the ancestor's picker had 28,
# one of which jumped two voxels.
OFFSETS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)
                    if (a, b, c) != (0, 0, 0)], dtype=np.int64)

# A voxel counts as air (a barrier even for exophytic growth) this far below the organ's mean.
_AIR_BELOW_MEAN_HU = 350.0
_LEVEL_SD = 0.5  # parenchyma levels: mean -/+ 0.5 organ std


def direction_weights(spacing_mm) -> np.ndarray:
    """Per-direction factor ``min(spacing) / step length`` (26,), float64 in (0, 1].

    Every direction is picked with the same probability 1/26; the acceptance probability is scaled
    by the inverse step length (mm) so that a cell advances the same mean distance in millimetres
    in every direction: the tumour stays round on anisotropic grids.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    lengths = np.sqrt(((OFFSETS * spacing) ** 2).sum(axis=1))
    return spacing.min() / lengths


def probability_table(params: dict, spacing_mm) -> np.ndarray:
    """Acceptance probability of an invasion into each tissue class along each direction.

    Parameters
    ----------
    params : dict
        The spec's ``params`` (``invasion`` holds the per-class probabilities).
    spacing_mm : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    ndarray of float32, shape (N_CLASSES, 26)
        Zero rows for ``BARRIER`` and ``SURFACE`` (never entered).
    """
    inv = params["invasion"]
    per_class = np.zeros(N_CLASSES, dtype=np.float64)
    per_class[LOW], per_class[MID], per_class[HIGH] = inv["low"], inv["mid"], inv["high"]
    per_class[VESSEL] = inv["vessel"]
    per_class[OUTSIDE] = inv["outside"]
    table = np.clip(per_class[:, None] * direction_weights(spacing_mm)[None, :], 0.0, 1.0)
    return table.astype(np.float32)


def tissue_classes(organ_box: np.ndarray, *, spacing_mm, organ: str, organ_mean_hu: float, organ_std_hu: float,
                   ct_box: np.ndarray | None, exophytic: bool, margin_mm: float | None = None,
                   level_bias: np.ndarray | None = None) -> np.ndarray:
    """Tissue class of every voxel of the box, padded by one ``BARRIER`` voxel on each side.

    Parameters
    ----------
    organ_box : ndarray of bool, shape (X, Y, Z)
        The organ inside the tumour's box.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    organ : str
        Organ name (its preset gives the vessel thresholds and the surface margin).
    organ_mean_hu, organ_std_hu : float
        The organ's robust HU statistics in this scan; every class threshold is relative to them.
    ct_box : ndarray of float, shape (X, Y, Z), optional
        The CT in HU. Without it every organ voxel is ``MID`` (no vessels known).
    exophytic : bool
        Whether the tumour may leave the organ (then the surface margin is not kept and the
        soft tissue outside is ``OUTSIDE``).
    margin_mm : float, optional
        Depth of the ``SURFACE`` shell; default: the organ preset's ``margin_mm``.
    level_bias : ndarray of float, shape (X, Y, Z), optional
        Added to the smoothed HU, in units of ``organ_std_hu``, before the ``LOW`` / ``MID`` / ``HIGH``
        thresholds: a tumour's lobulation field (regions where it grows easily or hardly). Vessels are
        found on the scan itself. Also applied without ``ct_box`` (on a homogeneous organ).

    Returns
    -------
    ndarray of int8, shape (X + 2, Y + 2, Z + 2)
    """
    preset = get_preset(organ)
    organ_box = np.asarray(organ_box, dtype=bool)
    tissue = np.full(organ_box.shape, MID, dtype=np.int8)
    smooth = None
    if ct_box is not None:
        ct = np.asarray(ct_box, dtype=np.float32)
        # The same 1 mm smoothing as vessel_mask: classes follow tissue, not the scan's noise grain.
        smooth = vessel_smoothing(ct, spacing_mm)
    level = smooth
    if level_bias is not None:
        base = np.full(organ_box.shape, organ_mean_hu, np.float32) if smooth is None else smooth
        level = base + np.float32(organ_std_hu) * np.asarray(level_bias, dtype=np.float32)
    if level is not None:
        tissue[level < organ_mean_hu - _LEVEL_SD * organ_std_hu] = LOW
        tissue[level > organ_mean_hu + _LEVEL_SD * organ_std_hu] = HIGH
    if smooth is not None:
        tissue[vessel_mask(ct, spacing_mm=spacing_mm, organ_mean_hu=organ_mean_hu, organ_std_hu=organ_std_hu,
                           preset=preset, smoothed=smooth)] = VESSEL
    if exophytic:
        outside = ~organ_box
        if ct_box is not None:
            air = np.asarray(ct_box) < organ_mean_hu - _AIR_BELOW_MEAN_HU
            tissue[outside & air] = BARRIER
            outside &= ~air
        tissue[outside] = OUTSIDE
    else:
        tissue[~organ_box] = BARRIER
        margin = preset.margin_mm if margin_mm is None else float(margin_mm)
        if margin > 0 and not organ_box.all():
            # Depth below the surface; the box border is padded with organ (the organ goes on
            # beyond the box there), as in tumorsyn.placement.check_placement.
            padded = np.pad(organ_box, 1, constant_values=True)
            depth = ndimage.distance_transform_edt(padded, sampling=spacing_mm)[1:-1, 1:-1, 1:-1]
            tissue[organ_box & (depth < margin)] = SURFACE
    return np.pad(tissue, 1, constant_values=BARRIER)

