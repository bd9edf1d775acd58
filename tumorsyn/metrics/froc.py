"""Free-response ROC: lesion sensitivity against false positives per scan, over score thresholds."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["FROC_FP_RATES", "FP_RATE_SETS", "froc_curve", "sensitivity_at_fp_rates"]

# Operating points of the LUNA16 competition performance metric (CPM), false positives per scan.
FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# Named sets of operating points (false positives per scan) for --fp-rates.
FP_RATE_SETS: dict[str, tuple[float, ...]] = {
    "luna16": FROC_FP_RATES,  # 1/8 ... 8, LUNA16 (Setio et al., 2017); their mean is the CPM
    "deeplesion": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),  # as reported for DeepLesion (Yan et al., 2018)
}


def froc_curve(lesion_scores: Sequence[float | None], fp_scores: Sequence[float], *, n_scans: int) -> dict:
    """FROC curve from per-lesion detection scores and false-positive component scores.

    Parameters
    ----------
    lesion_scores : sequence of float or None
        One entry per reference lesion: the highest score of a component that matches it
        (``None`` for a missed lesion).
    fp_scores : sequence of float
        Score (maximum probability) of every false-positive component.
    n_scans : int
        Number of scans evaluated (tumour-free ones included).

    Returns
    -------
    dict
        ``thresholds`` (decreasing), ``sensitivity`` and ``fp_per_scan`` at each threshold, where a
        component counts when its score >= the threshold; the curve starts at (0, 0).
    """
    if n_scans < 1:
        raise ValueError(f"n_scans must be >= 1, got {n_scans}")
    hits = np.array([s for s in lesion_scores if s is not None], dtype=np.float64)
    fps = np.asarray(fp_scores, dtype=np.float64)
    n_lesions = len(lesion_scores)
    thresholds = np.unique(np.concatenate([hits, fps]))[::-1]
    # Counting with sorted arrays: #scores >= t for every threshold t at once.
    hits_sorted, fps_sorted = np.sort(hits), np.sort(fps)
    tp = len(hits_sorted) - np.searchsorted(hits_sorted, thresholds, side="left")
    fp = len(fps_sorted) - np.searchsorted(fps_sorted, thresholds, side="left")
    sens = tp / n_lesions if n_lesions else np.full(len(thresholds), np.nan)
    return {
        "thresholds": [None, *map(float, thresholds)],  # None: above every score
        "sensitivity": [0.0 if n_lesions else float("nan"), *map(float, sens)],
        "fp_per_scan": [0.0, *map(float, fp / n_scans)],
        "n_lesions": int(n_lesions),
        "n_scans": int(n_scans),
    }


def sensitivity_at_fp_rates(curve: dict, rates: Sequence[float] = FROC_FP_RATES) -> dict:
    """Best sensitivity reachable with at most each rate of false positives per scan.

    Returns
    -------
    dict
        ``{'points': {rate: sensitivity}, 'mean': average over the rates}`` (the mean over the
        default rates is LUNA16's CPM).
    """
    fp = np.asarray(curve["fp_per_scan"], dtype=np.float64)
    sens = np.asarray(curve["sensitivity"], dtype=np.float64)
    points = {}
    for rate in rates:
        ok = fp <= rate
        points[f"{rate:g}"] = float(sens[ok].max()) if ok.any() else 0.0
    values = list(points.values())
    return {"points": points, "mean": float(np.mean(values)) if values else float("nan")}
