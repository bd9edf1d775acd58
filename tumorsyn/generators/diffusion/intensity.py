"""How a diffusion model's crops map HU to its value range [-1, 1]: absolute, or relative to the host organ.

Two modes, recorded in the model folder (``config.json``, ``data.intensity``):

``absolute``
    ``unit = clip((HU - low) * 2 / (high - low) - 1, -1, 1)`` with the fixed window
    ``data.hu_window = (low, high)`` (default ``[-175, 250]`` HU). The model learns the absolute HU of
    its training phase. Model folders written before the key existed load as absolute.

``relative`` (the default of new models)
    Each crop is first standardised by its host parenchyma, ``z = (HU - m) / s``, where ``m`` and
    ``s`` are the robust median and spread (``1.4826 x MAD``) of the organ's parenchyma around the
    tumour (:func:`tumorsyn.host.parenchyma_statistics`, which drops fat, vessels and lesions), and
    ``z`` is then windowed like HU: ``unit = clip((z - a) * 2 / (b - a) - 1, -1, 1)`` with
    ``data.relative_window_sd = (a, b)`` (default ``[-12, 8]`` robust SDs). That is the absolute
    mapping with a per-crop HU window ``(m + a s, m + b s)``, so one pair of functions
    (:func:`tumorsyn.generators.diffusion.sampler.hu_to_unit` / ``unit_to_hu``) serves both modes
    and the round trip HU -> units -> HU is exact (float32) inside the window.

    Training normalises every crop by the statistics of its own scan; sampling normalises the host
    crop by the host's statistics and maps the inpainted crop back with the same window. A
    liver-trained model therefore writes a tumour at the same contrast, in units of the host's
    spread, into a venous-phase liver, a non-contrast liver, a pancreas or a kidney: a host 60 HU
    brighter gets a tumour 60 HU brighter. With a spread of 20 HU the default window spans
    ``m - 240`` to ``m + 160`` HU, about the width of the absolute default window.

The spread a host is sampled with. Models that record ``training.spread_per_noise`` (the median,
over their tumour crops, of the crop's ring spread divided by the tumour's shell noise, ``tumorsyn
realism``'s unit of contrast read on the scan's own grid,
:func:`tumorsyn.metrics.realism.descriptors.shell_noise_ref_hu`) take the host's spread as that ratio
times the shell noise around the tumour about to be written (spec key ``host_spread: shell_noise``).
Noise at the reference voxel does not depend on the voxel size; a parenchyma's spread does: on a 3 mm
scan it is the noise averaged down, and a spread-relative contrast written there came out at about
half the real tumours' conspicuity. Older folders and specs without the key use the ring spread.

"The parenchyma around the tumour" is the ring of organ voxels in the model crop outside the grown
tumour mask (and, in training, outside every labelled lesion). Where fewer than
:data:`MIN_RING_VOXELS` of them are tissue (at least :data:`tumorsyn.host.FAT_BELOW_HU`), the
organ-wide statistics of the host are used instead (see :func:`ring_statistics`). The spread is
never taken below :data:`MIN_SPREAD_HU`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorsyn.host import FAT_BELOW_HU, parenchyma_statistics

__all__ = ["INTENSITY_MODES", "DEFAULT_INTENSITY", "LEGACY_INTENSITY", "DEFAULT_RELATIVE_WINDOW_SD", "MIN_RING_VOXELS",
           "MIN_SPREAD_HU", "ring_statistics", "relative_window_hu"]

INTENSITY_MODES = ("relative", "absolute")
DEFAULT_INTENSITY = "relative"      # what new training configs use
LEGACY_INTENSITY = "absolute"       # what a model folder without data.intensity was trained with
# Robust SDs of the host parenchyma mapped to [-1, 1]. Asymmetric like the absolute window around a
# ~100 HU liver: fat (~ -100 HU) lies 10-15 SDs below parenchyma, enhancing vessels 3-8 SDs above.
DEFAULT_RELATIVE_WINDOW_SD = (-12.0, 8.0)
# Tissue voxels of the ring below which its median and MAD are too unsteady (a 5 mm tumour's
# grown mask alone holds ~100 voxels at 1 mm): the host organ's own statistics are used instead.
MIN_RING_VOXELS = 100
# A floor for the spread (HU): a denoised scan or a noise-free phantom would otherwise squeeze the
# whole window into a few HU and every generated contrast with it. CT parenchyma reads 8-25 HU.
MIN_SPREAD_HU = 5.0


def ring_statistics(hu: np.ndarray, organ: np.ndarray, exclude: np.ndarray | None, *,
                    fallback: tuple[float, float]) -> tuple[float, float, bool]:
    """Median and spread (HU) of the organ ring in a crop, or the host organ's when the ring is too small.

    Parameters
    ----------
    hu : ndarray of float, shape (X, Y, Z)
        The crop in HU (the model's grid).
    organ : ndarray of bool, shape (X, Y, Z)
        The host organ in the crop.
    exclude : ndarray of bool, shape (X, Y, Z), optional
        Voxels that are not parenchyma (the grown tumour mask; in training every lesion).
    fallback : (float, float)
        The organ-wide median and spread (HU) of the host (a spec's ``organ_mean_hu`` /
        ``organ_std_hu``, i.e. :func:`tumorsyn.placement.organ_statistics`).

    Returns
    -------
    (float, float, bool)
        Median (HU), spread (HU, at least :data:`MIN_SPREAD_HU`), and whether the fallback was used.
    """
    ring = np.asarray(organ, dtype=bool)
    if exclude is not None:
        ring = ring & ~np.asarray(exclude, dtype=bool)
    values = np.asarray(hu)[ring]
    # Fallback: an organ that barely enters the crop (a thin pancreas, a tumour at the organ's tip)
    # leaves too few parenchyma voxels for a steady median and MAD; the whole organ's are the next
    # best description of this host's level and spread.
    used_fallback = int(np.count_nonzero(values >= FAT_BELOW_HU)) < MIN_RING_VOXELS
    median, spread = (float(fallback[0]), float(fallback[1])) if used_fallback else parenchyma_statistics(values)
    return float(median), max(float(spread), MIN_SPREAD_HU), used_fallback


def relative_window_hu(median_hu: float, spread_hu: float, window_sd: Sequence[float]) -> tuple[float, float]:
    """The HU window ``(m + a s, m + b s)`` that maps ``z = (HU - m) / s`` in ``(a, b)`` onto [-1, 1]."""
    lo, hi = float(window_sd[0]), float(window_sd[1])
    return float(median_hu) + lo * float(spread_hu), float(median_hu) + hi * float(spread_hu)
