"""Edge blending: how every generator writes its tumour into the CT of the tumour's box.

One formula for all generators (per voxel x of the box)::

    w(x)   in [0, 1]                                  presence (a sigmoid of the shape's distance, or a
                                                      blurred population map); below MIN_WEIGHT: 0
    out(x) = in(x) + w(x) * (target(x) - level(x))    only where w > 0 (elsewhere byte-identical)

``rules`` and ``ca`` aim at ``target = mu + delta (+ texture)`` (the organ's mean plus the designed
offset) from ``level = smooth(in)``, the input blurred by :data:`SMOOTH_MM`: the tumour replaces
the local tissue level (a vessel inside the blend zone does not shine through) while the scan's
own noise grain is kept. ``diffusion`` aims at the generated HU from ``level = in``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

from tumorsyn.priors import EARLY_BELOW_MM

__all__ = ["SMOOTH_MM", "MIN_WEIGHT", "LABEL_AT", "LABEL_AT_TIGHT", "LEVEL_BLURS", "sigmoid_weight", "drop_faint",
           "tissue_level", "blend", "visible_contrast", "edge_reach_mm", "edge_mm_for_sharpness"]

SMOOTH_MM = 1.5          # blur (mm) that separates the tissue level from the scan's noise grain
MIN_WEIGHT = 1.0 / 256   # presence below this leaves a voxel untouched (byte-identical on disk)
LABEL_AT = 0.5           # a tumour's label: the voxels with at least this share of its contrast (half-maximum)
# Real early tumours' reference labels lie inside the half-maximum: on LiTS-117's calibration half the first
# voxel layer outside the label still carries 0.34 of the lesion's contrast and the first layer inside 0.92
# (median of 19 tumours of 5-20 mm); a sigmoid edge labelled at half its contrast gives 0.10-0.23 and 0.82
# (benchmarks/RESULTS.md, eighth session). Labelled at 0.7, it gives 0.34 and 0.94.
LABEL_AT_TIGHT = 0.7

# Sigmoid edge width (mm) -> edge sharpness (tumorsyn realism) of sigmoid-edged tumours (rules) on
# the reference host, 3D-IRCADb patient 7's liver (0.78 x 0.78 x 1.6 mm), median of 6 tumours of
# 8-18 mm per value (hypodense, seed 1; re-measured with the rules contrast gain 1.5): the priors give a
# sharpness, this table turns it into an edge width. Widths then x 1.15: with the finer texture and gain 1.1,
# 24 early tumours against the CALIBRATION tumours read sharpness 0.60 vs 0.565 and an edge gradient of
# -1.85 vs -1.55 noise units per mm.
_EDGE_TABLE_SHARPNESS = (0.40, 0.535, 0.75, 0.95)
_EDGE_TABLE_MM = (5.75, 3.45, 1.725, 0.575)
# The same for large tumours (>= 20 mm; issue 14): real large tumours read borders as soft as 0.30-0.42, below
# the table above, and a large tumour shows a lower sharpness than a small one at the same width (its median,
# the denominator, is reached deeper inside). Measured on the same host with the rules generator's large-tumour
# texture (tumorsyn.generators.rules), medians of two sets of 20-40 mm tumours per width (the same draws at
# each width; sets of 8 and 16, which differ by about 0.05: single tumours spread from 0.25 to 1.0, capsules
# reading highest), averaged with weights 1:2: 3.5 mm -> 0.480 / 0.542, 5 -> 0.398 / 0.445, 6.5 -> 0.327 / 0.383,
# 8.5 -> 0.283 / 0.334.
_EDGE_TABLE_LARGE_SHARPNESS = (0.317, 0.364, 0.429, 0.521)
_EDGE_TABLE_LARGE_MM = (8.5, 6.5, 5.0, 3.5)
# Early tumours labelled at 0.7 of their contrast (the rules generator's label_at, issue 14), measured where the
# real tumours' sharpness is measured: rules tumours written into 3D-IRCADb p7's liver and read on LiTS-117's
# grid (p7 block-averaged 2 x 2 x 1 to 1.56 x 1.56 x 1.6 mm, as bench_realism's matched cell does); median of 24
# hypodense 5-20 mm tumours per width (the same draws at each width; benchmarks/RESULTS.md, eighth session).
_EDGE_TABLE_LABEL70_SHARPNESS = (0.452, 0.516, 0.556, 0.626, 0.692, 0.738, 0.801)
# Widths then x 0.9: with the default appearance mix and the rules contrast gain 1.2, two sets of 48 early tumours
# (benchmarks/calibrate_realism.py --lits-grid --n 48 --seed 0 / 1) read sharpness 0.549 / 0.608 and an edge gradient
# of -1.42 / -1.47 noise units per mm against the CALIBRATION tumours' 0.565 and -1.59 (1.36 mm voxels in-plane, where
# the 1.56 mm of the matched grid reads about an eighth softer).
_EDGE_TABLE_LABEL70_MM = (3.06, 2.52, 2.16, 1.8, 1.44, 1.08, 0.72)


def drop_faint(w: np.ndarray) -> np.ndarray:
    """Set presence below :data:`MIN_WEIGHT` to 0, in place (those voxels stay untouched); returns ``w``."""
    w[w < MIN_WEIGHT] = 0.0
    return w


def sigmoid_weight(distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Presence ``sigmoid(-d / tau)`` with ``tau = edge_mm / 4`` (mm), faint voxels dropped; float32.

    Parameters
    ----------
    distance_mm : ndarray of float32, shape (X, Y, Z)
        Signed distance to the tumour's surface (mm), negative inside.
    edge_mm : float
        Edge width (mm): presence falls from 0.88 to 0.12 over ``edge_mm``.
    """
    w = expit(-distance_mm / np.float32(edge_mm / 4.0)).astype(np.float32)
    return drop_faint(w)


def edge_reach_mm(edge_mm: float) -> float:
    """How far (mm) outside the surface a sigmoid edge still changes voxels.

    ``sigmoid(-d / tau)`` falls below 1/256 at ``d = 5.6 tau = 1.4 edge_mm``.
    """
    return 1.5 * edge_mm


def edge_mm_for_sharpness(sharpness: float, size_mm: float | None = None, *, label_at: float = LABEL_AT) -> float:
    """Sigmoid edge width (mm) whose tumours show ``sharpness`` (realism's edge_sharpness), clamped to the table.

    Parameters
    ----------
    sharpness : float
        Target edge sharpness (1).
    size_mm : float, optional
        The tumour's equivalent diameter (mm): from 20 mm on (:data:`tumorsyn.priors.EARLY_BELOW_MM`) the
        large-tumour table applies; without it, the early one.
    label_at : {0.5, 0.7}
        The share of the nominal contrast at which the tumour is labelled (:func:`visible_contrast`): the
        same edge reads sharper when the label is drawn further inside it, so each has its table (0.7:
        early tumours only).
    """
    if size_mm is not None and float(size_mm) >= EARLY_BELOW_MM:
        if label_at != LABEL_AT:
            raise ValueError(f"large tumours have an edge table for label_at {LABEL_AT} only, not {label_at}")
        return float(np.interp(float(sharpness), _EDGE_TABLE_LARGE_SHARPNESS, _EDGE_TABLE_LARGE_MM))
    tables = {LABEL_AT: (_EDGE_TABLE_SHARPNESS, _EDGE_TABLE_MM),
              LABEL_AT_TIGHT: (_EDGE_TABLE_LABEL70_SHARPNESS, _EDGE_TABLE_LABEL70_MM)}
    if label_at not in tables:
        raise ValueError(f"no edge table for label_at {label_at}; choose one of {', '.join(map(str, tables))}")
    return float(np.interp(float(sharpness), *tables[label_at]))


LEVEL_BLURS = ("voxel", "mm")  # spec key level_blur of rules and CA; specs without it were drawn with "mm"


def tissue_level(ct_box: np.ndarray, spacing_mm, blur: str = "voxel", organ_box: np.ndarray | None = None) -> np.ndarray:
    """The box's local tissue level: its HU blurred by :data:`SMOOTH_MM`, and by at least one voxel (float32).

    A tumour written as ``target + (in - level)`` keeps the host's grain ``in - level`` inside. The
    texture budget of the rules generator (:func:`tumorsyn.priors.texture_sd_for_spread`) counts on all
    of it; a 1.5 mm blur of 3 mm voxels (half a voxel) kept only 57-74 % of the grain in the bundled
    example's organs, and the tumours there read too smooth inside. One voxel keeps all of it. A blur
    that wide would mix the fat around a thin organ (a 3 mm pancreas) into its level and brighten the
    tumour by the difference, so with ``organ_box`` the level inside the organ is the blurred mean of the
    organ's own voxels (normalised convolution); where the organ holds less than a quarter of the
    blur's weight (outside it: an exophytic part), the plain blur.

    Parameters
    ----------
    ct_box : ndarray, shape (X, Y, Z)
        CT of the box, HU.
    spacing_mm : sequence of 3 float
        Voxel size in mm (the blur is ``max(SMOOTH_MM, voxel)`` along each axis).
    blur : {'voxel', 'mm'}
        ``mm``: :data:`SMOOTH_MM` alone over every voxel, as specs drawn before the one-voxel floor were
        written (``organ_box`` is then not used).
    organ_box : ndarray of bool, shape (X, Y, Z), optional
        The host organ in the box.
    """
    if blur not in LEVEL_BLURS:
        raise ValueError(f"level blur must be one of {', '.join(LEVEL_BLURS)}, got {blur!r}")
    ct = ct_box.astype(np.float32)
    if blur == "mm":
        return ndimage.gaussian_filter(ct, sigma=[SMOOTH_MM / s for s in spacing_mm], mode="nearest", truncate=3.0)
    sigma = [max(SMOOTH_MM / s, 1.0) for s in spacing_mm]
    plain = ndimage.gaussian_filter(ct, sigma=sigma, mode="nearest", truncate=3.0)
    if organ_box is None or not np.any(organ_box):
        return plain
    organ = np.asarray(organ_box, np.float32)
    weight = ndimage.gaussian_filter(organ, sigma=sigma, mode="nearest", truncate=3.0)
    own = ndimage.gaussian_filter(ct * organ, sigma=sigma, mode="nearest", truncate=3.0)
    inside = weight >= 0.25
    return np.where(inside, own / np.where(inside, weight, 1.0), plain).astype(np.float32)


def blend(ct_box: np.ndarray, w: np.ndarray, target_hu: np.ndarray, level_hu: np.ndarray,
          changed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(out, changed)``: ``out = in + w (target - level)`` where ``changed``, the input elsewhere (float32).

    Parameters
    ----------
    ct_box : ndarray, shape (X, Y, Z)
        CT of the box, HU; not modified.
    w : ndarray of float32
        Presence in [0, 1].
    target_hu, level_hu : ndarray of float32
        What the tumour's voxels aim at, and the level they move from (HU).
    changed : ndarray of bool, optional
        Voxels to write; default ``w > 0``.
    """
    changed = w > 0 if changed is None else changed
    out = ct_box.astype(np.float32, copy=True)
    out[changed] += w[changed] * (target_hu[changed] - level_hu[changed])
    return out, changed


def visible_contrast(w: np.ndarray, delta_hu: np.ndarray, nominal_delta_hu: float,
                     label_at: float = LABEL_AT) -> np.ndarray:
    """Voxels carrying at least ``label_at`` of the lesion's nominal contrast: ``w |delta| >= label_at |delta_0|``.

    The default, one half, is the lesion's half-maximum edge: the label is what is visible.
    :data:`LABEL_AT_TIGHT` draws it further inside, where real reference labels of early tumours lie.
    """
    return w * np.abs(delta_hu) >= label_at * abs(nominal_delta_hu)
