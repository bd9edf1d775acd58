"""Statistics of a host organ's parenchyma: its tissue level, its spread and the scanner's noise.

Tumours are drawn relative to these figures, and ``tumorsyn realism`` measures real and synthetic
lesions with the same noise estimate, so "contrast in units of the host's noise" means one thing
on both sides.

Organ labels are not parenchyma: a 3 mm pancreas label is largely peripancreatic fat, a kidney label
holds the sinus fat and the enhancing cortex, any label holds vessels. The robust statistics below
drop fat (below ``FAT_BELOW_HU``) and then, once, everything beyond ``OUTLIER_ROBUST_SD`` robust
standard deviations (vessels, calcifications, lesions) before taking the median and MAD.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["FAT_BELOW_HU", "MAD_TO_SD", "OUTLIER_ROBUST_SD", "REFERENCE_VOXEL_MM3", "NOISE_VOLUME_EXPONENT",
           "robust_centre_spread", "parenchyma_statistics", "highpass_residual", "highpass_noise_hu",
           "reference_noise_factor", "reference_noise_hu"]

FAT_BELOW_HU = -20.0       # fat is about -100 HU; no parenchyma of liver, pancreas or kidney is this dark
OUTLIER_ROBUST_SD = 3.0    # vessels, calcifications and lesions lie beyond this many robust SDs
MAD_TO_SD = 1.4826         # MAD -> standard deviation for a normal distribution
# Noise at a reference voxel: a lesion's contrast is a property of the tissue, the noise it is read
# against falls as voxels grow. Contrast in units of noise measured on each scan's own grid therefore
# reads higher on coarse grids (3D-IRCADb p7 block-averaged to LiTS-117's grid read 25 % more
# conspicuous). Noise is converted to a 1.5 mm cube before it becomes a unit of contrast.
REFERENCE_VOXEL_MM3 = 1.5 ** 3
# noise ~ voxel volume ** -exponent. Block-averaging 2-4 voxels of 3D-IRCADb p1, p7 and LiTS-117 (0.52-
# 3 mm^3 voxels) lowered the parenchyma's noise with exponents 0.12-0.31, median 0.2 (CT noise is
# correlated at these sizes; white noise would give 0.5). The bundled 3 mm example gave 0.43-0.63 when
# made coarser still; towards the reference it is extrapolated with the fine-grid 0.2 (docs/realism.md).
NOISE_VOLUME_EXPONENT = 0.2
_MIN_VOXELS = 50
_CUBE_26 = np.ones((3, 3, 3), dtype=bool)


def robust_centre_spread(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 x MAD)`` of ``values`` (HU)."""
    values = np.asarray(values, dtype=np.float64)
    median = float(np.median(values))
    return median, MAD_TO_SD * float(np.median(np.abs(values - median)))


def parenchyma_statistics(values_hu: np.ndarray) -> tuple[float, float]:
    """Robust median and SD (HU) of organ voxels after dropping fat and outliers (vessels, lesions).

    Parameters
    ----------
    values_hu : ndarray of float
        HU of the organ's voxels (any shape; a subsample is fine).

    Returns
    -------
    (float, float)
        Median and ``1.4826 x MAD`` in HU. Where fewer than 50 voxels survive the fat cut, the
        statistics of all voxels are returned (a label that is all fat is then refused by the
        host plausibility check, with its figures).
    """
    values = np.asarray(values_hu, dtype=np.float64).ravel()
    tissue = values[values >= FAT_BELOW_HU]
    if tissue.size < _MIN_VOXELS:
        return robust_centre_spread(values)
    median, spread = robust_centre_spread(tissue)
    if spread > 0:
        kept = tissue[np.abs(tissue - median) <= OUTLIER_ROBUST_SD * spread]
        if kept.size >= _MIN_VOXELS:
            median, spread = robust_centre_spread(kept)
    return median, spread


def highpass_residual(hu: np.ndarray) -> np.ndarray:
    """HU minus the mean of each voxel's 26 neighbours, scaled so that white noise of SD s gives SD s.

    For white noise, ``x - mean(26 neighbours)`` has variance ``s^2 (1 + 1/26) = s^2 27/26``; the
    factor ``sqrt(26/27)`` undoes it. Smooth anatomy (organ level, gradients) cancels out.
    """
    hu = np.asarray(hu, dtype=np.float64)
    box_sum = ndimage.uniform_filter(hu, size=3, mode="nearest") * 27.0
    return (hu - (box_sum - hu) / 26.0) * math.sqrt(26.0 / 27.0)


def highpass_noise_hu(hu: np.ndarray, region: np.ndarray, valid: np.ndarray | None = None, *,
                      min_voxels: int = 10) -> float:
    """Scanner noise (HU): robust SD of the high-pass residual over ``region``.

    Parameters
    ----------
    hu : ndarray of float, shape (X, Y, Z)
        CT in HU (a box around the region is enough).
    region : ndarray of bool, shape (X, Y, Z)
        Voxels whose residual is used.
    valid : ndarray of bool, shape (X, Y, Z), optional
        Tissue a neighbourhood may hold; only region voxels whose whole 3x3x3 neighbourhood is valid
        are used (no edge with fat, air or a lesion in the residual) when at least ``min_voxels``
        such voxels exist. Default: ``region`` itself.
    """
    region = np.asarray(region, dtype=bool)
    valid = region if valid is None else np.asarray(valid, dtype=bool)
    residual = highpass_residual(hu)
    inner = region & ndimage.binary_erosion(valid, structure=_CUBE_26, border_value=0)
    use = inner if np.count_nonzero(inner) >= min_voxels else region
    if not use.any():
        return float("nan")
    return robust_centre_spread(residual[use])[1]


def reference_noise_factor(spacing_mm) -> float:
    """Factor turning noise measured on voxels of ``spacing_mm`` into noise at :data:`REFERENCE_VOXEL_MM3`.

    ``(voxel volume / reference volume) ** NOISE_VOLUME_EXPONENT``: below 1 for voxels smaller than a
    1.5 mm cube (their noise is higher than the reference's), above 1 for larger ones.
    """
    volume = float(np.prod(np.asarray(spacing_mm, dtype=np.float64)))
    return (volume / REFERENCE_VOXEL_MM3) ** NOISE_VOLUME_EXPONENT


def reference_noise_hu(noise_hu: float, spacing_mm) -> float:
    """Noise (HU) measured on voxels of ``spacing_mm``, converted to the reference voxel (see above)."""
    return float(noise_hu) * reference_noise_factor(spacing_mm)
