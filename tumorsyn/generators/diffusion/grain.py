"""Scanner grain under a sampled tumour: the model's structure, the host's noise.

A latent autoencoder that compresses 4x per axis cannot reproduce scanner noise: decoded crops are
smooth (the CPU recipe's autoencoder returns held-out crops visibly smoothed), so a tumour written with
the model's own voxels may read as a smooth patch inside grainy parenchyma. With ``grain="host"`` the
written values are the model's content above ``GRAIN_SIGMA_MM``
plus the grain of a tumour-free source below it::

    gen'(x) = G(gen)(x) + (src(x) - G(src)(x))       G = Gaussian low-pass, sigma GRAIN_SIGMA_MM (mm)

With ``grain="noise"`` the model's values are kept whole and the source's grain is added::

    gen'(x) = gen(x) + (src(x) - G(src)(x))

This is what a scanner does to a tumour: its (smooth) content plus the scanner's noise. It suits
models whose output is a denoised estimate: a border refiner trained with an L1 loss draws sharp
borders but a noise-free interior.

When sampling into a scan the source is the host box itself (healthy tissue at the very voxels the
tumour replaces: the scanner's own noise, at the scan's own grid), so the blend reduces to
``out = in + w * (G(gen) - G(in))`` for ``host`` (only the low-pass part is replaced) and
``out = in + w * (gen - G(in))`` for ``noise``. Held-out evaluation uses a
tumour-free crop of the same scan as the source (never the real tumour's own voxels).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["GRAIN_MODES", "DEFAULT_GRAIN", "DEFAULT_GRAIN_WITH_REFINER", "GRAIN_SIGMA_MM", "default_grain", "lowpass",
           "with_grain", "grained"]

GRAIN_MODES = ("host", "model", "noise")
# Measured on the CPU recipe's 20 held-out LiTS-117 tumours x 4 samples (benchmarks/RESULTS.md, 2026-12-01):
# without a refiner, "model" 1 of 3 figures inside the real IQR (contrast -5.36 noise units, spread 1.48,
# edge 0.21), "host" 0 of 3 (-4.74, 1.32, 0.16): the low-pass takes contrast from small tumours. With the
# border refiner (an L1-trained, denoising output) "model" reads spread 1.21 and "noise" 1.73 (real median
# 1.93), edges kept: a model with a refiner defaults to "noise", one without to "model".
DEFAULT_GRAIN = "model"
DEFAULT_GRAIN_WITH_REFINER = "noise"
# Below the autoencoder's reach: at the recipe's 1.25 mm grid and 4x compression, a latent voxel spans
# 5 mm; 1.5 mm keeps the model's edges (the half-maximum width of this kernel is 3.5 mm) and hands the
# voxel-scale grain to the host.
GRAIN_SIGMA_MM = 1.5


def default_grain(model_config: dict) -> str:
    """The grain a model folder's tumours are written with unless asked otherwise (see the figures above)."""
    return DEFAULT_GRAIN_WITH_REFINER if model_config.get("refiner") else DEFAULT_GRAIN


def lowpass(hu: np.ndarray, spacing_mm: Sequence[float], sigma_mm: float = GRAIN_SIGMA_MM) -> np.ndarray:
    """Gaussian low-pass of ``hu`` (float32) with ``sigma_mm`` (mm) on a grid of ``spacing_mm``; edges repeated."""
    sigma = [float(sigma_mm) / float(s) for s in spacing_mm]
    return ndimage.gaussian_filter(np.asarray(hu, np.float32), sigma=sigma, mode="nearest", truncate=3.0)


def with_grain(generated_hu: np.ndarray, source_hu: np.ndarray, spacing_mm: Sequence[float],
               sigma_mm: float = GRAIN_SIGMA_MM) -> np.ndarray:
    """``G(generated) + source - G(source)``: the model's content with the source's grain (HU, float32).

    Parameters
    ----------
    generated_hu, source_hu : ndarray of float, same shape
        The sampled values and a tumour-free image of the same scanner and grid (HU).
    spacing_mm : sequence of 3 float
        The grid's voxel size (mm).
    sigma_mm : float
        Low-pass sigma (mm).
    """
    generated_hu = np.asarray(generated_hu, np.float32)
    source_hu = np.asarray(source_hu, np.float32)
    if generated_hu.shape != source_hu.shape:
        raise ValueError(f"generated {generated_hu.shape} and grain source {source_hu.shape} differ in shape")
    return lowpass(generated_hu, spacing_mm, sigma_mm) + (source_hu - lowpass(source_hu, spacing_mm, sigma_mm))


def grained(mode: str, generated_hu: np.ndarray, source_hu: np.ndarray, spacing_mm: Sequence[float],
            sigma_mm: float = GRAIN_SIGMA_MM) -> np.ndarray:
    """The sampled values as the ``grain`` option writes them (HU, float32), from a tumour-free source.

    ``model``: the values as sampled; ``host``: :func:`with_grain`; ``noise``: the values plus the
    source's high-pass ``source - G(source)``.
    """
    generated_hu = np.asarray(generated_hu, np.float32)
    if mode == "model":
        return generated_hu
    if mode == "host":
        return with_grain(generated_hu, source_hu, spacing_mm, sigma_mm)
    if mode == "noise":
        source_hu = np.asarray(source_hu, np.float32)
        if generated_hu.shape != source_hu.shape:
            raise ValueError(f"generated {generated_hu.shape} and grain source {source_hu.shape} differ in shape")
        return generated_hu + (source_hu - lowpass(source_hu, spacing_mm, sigma_mm))
    raise ValueError(f"grain must be one of {', '.join(GRAIN_MODES)}, got {mode!r}")
