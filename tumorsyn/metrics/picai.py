"""The ``picai`` convention: picai_eval's detection maps, lesion entries, AP, AUROC and FROC.

picai_eval (the PI-CAI and PANORAMA evaluator, DIAGNijmegen) scores *detection maps*: every
26-connected component of the non-zero voxels is a lesion candidate whose confidence is its maximum
(no 0.5 cut), candidates and lesions are matched one to one (:func:`tumorsyn.metrics.lesions.picai_assignment`),
and each case adds entries ``(is_lesion, confidence)`` to one list: a matched lesion ``(1, its
candidate's confidence)``, a missed lesion ``(1, 0)``, an unmatched candidate ``(0, confidence)``; a
candidate that overlaps a lesion at IoU >= 0.1 without being assigned adds nothing. From that list come
the lesion-level average precision and FROC; the case score (the maximum of the detection map) against
"has a lesion" gives the AUROC. The rules below restate picai_eval 1.4's ``Metrics`` in our words; the
tests run picai_eval itself on the same maps and agree to 1e-6.

A softmax map (a component holding several values) is not a detection map: picai_eval refuses it,
and so does :func:`detection_map` unless asked to extract candidates with
``report_guided_annotation.extract_lesion_candidates`` (the library PI-CAI uses; it comes with the
``picai`` extra), which is what picai_eval does given ``y_det_postprocess_func=lambda p:
extract_lesion_candidates(p)[0]``.
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

from tumorsyn.errors import ConfigError
from tumorsyn.lesion_size import label_lesions
from tumorsyn.metrics.froc import FROC_FP_RATES

__all__ = ["PICAI_MAX_THRESHOLDS", "detection_map", "picai_entries", "average_precision", "case_auroc",
           "picai_froc", "picai_summary"]

# picai_eval thins the FROC to about this many thresholds when there are more.
PICAI_MAX_THRESHOLDS = 10_000


def _extract_candidates(values: np.ndarray) -> np.ndarray:
    try:
        # report_guided_annotation prints a citation request on import: keep it off our stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            from report_guided_annotation import extract_lesion_candidates
    except ImportError as exc:
        raise ConfigError(f"--picai-extract needs report_guided_annotation ({exc}); "
                          f"install tumorsyn[picai]") from None
    return np.asarray(extract_lesion_candidates(values)[0], dtype=np.float32)


def detection_map(values: np.ndarray, *, extract: bool = False) -> np.ndarray:
    """The float32 detection map picai_eval would score for a prediction.

    Parameters
    ----------
    values : ndarray, shape (X, Y, Z)
        A detection map (each candidate one confidence), a binary mask, or, with ``extract``, a
        softmax/probability map. Must be >= 0.
    extract : bool, optional
        Turn ``values`` into a detection map with ``report_guided_annotation.extract_lesion_candidates``
        (default arguments), as picai_eval's ``y_det_postprocess_func`` would.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)

    Raises
    ------
    ValueError
        Negative values, or (without ``extract``) a map with fewer components than distinct non-zero
        values, which picai_eval refuses as a softmax map.
    """
    y_det = np.asarray(values).astype(np.float32)  # picai_eval casts to float32 before anything else
    if y_det.size and float(y_det.min()) < 0:
        raise ValueError(f"a detection map must be >= 0; its minimum is {float(y_det.min())!r}")
    if extract:
        return _extract_candidates(y_det)
    _, n_components = label_lesions(y_det != 0)
    n_values = len(np.unique(y_det[y_det != 0]))
    if n_components < n_values:
        raise ValueError(f"the prediction is a softmax/probability map, not a detection map ({n_values} distinct "
                         f"non-zero values in {n_components} candidate(s)); picai_eval refuses it too. Turn it into "
                         f"a detection map first, or let report_guided_annotation.extract_lesion_candidates do it "
                         f"(--picai-extract), as PI-CAI does")
    return y_det


def picai_entries(results: Sequence) -> list[list[tuple[int, float]]]:
    """picai_eval's ``(is_lesion, confidence)`` entries, one list per case, from ``picai`` case results.

    A detected lesion gives ``(1, score of its assigned candidate)``, a missed one ``(1, 0.0)``, a
    counted unmatched candidate ``(0, its score)``; ignored candidates give nothing.
    """
    out = []
    for r in results:
        entries = [(1, float(les.score) if les.matched else 0.0) for les in r.reference]
        entries += [(0, float(c.score)) for c in r.predicted if c.counted and not c.matched]
        out.append(entries)
    return out


def average_precision(entries: Sequence[tuple[int, float]]) -> float | None:
    """Lesion-level average precision as picai_eval computes it (None without lesions).

    At each distinct confidence t (decreasing), entries with confidence >= t are called positive;
    AP = sum of (recall gain) x precision, where precision at t = 0 counts as 0 (the zero entries only
    carry the missed lesions into the recall).
    """
    y = np.array([e[0] for e in entries], dtype=np.float64)
    s = np.array([e[1] for e in entries], dtype=np.float64)
    n_lesions = y.sum()
    if n_lesions == 0:
        return None
    ap, recall_before = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        called = s >= t
        tp = y[called].sum()
        recall = tp / n_lesions
        precision = 0.0 if t == 0 else tp / called.sum()
        ap += (recall - recall_before) * precision
        recall_before = recall
    return float(ap)


def case_auroc(targets: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the case-level ROC curve (trapezoids, so a tied pair counts one half); None with one class."""
    t = np.asarray(targets, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[t], s[~t]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def _thresholds(scores: np.ndarray) -> np.ndarray:
    """Distinct confidences, decreasing; above PICAI_MAX_THRESHOLDS thinned as picai_eval thins them."""
    thresholds = np.unique(scores)[::-1]
    if len(thresholds) > PICAI_MAX_THRESHOLDS:
        # picai_eval keeps every threshold above 0.8, the lowest 20, and an evenly strided sample.
        picks = thresholds[np.arange(1, len(thresholds), len(thresholds) / PICAI_MAX_THRESHOLDS, dtype=np.int32)]
        lowest = thresholds[-20:]
        thresholds = np.array([t for t in thresholds if t > 0.8 or t in picks or t in lowest])
    return thresholds


def picai_froc(entries: Sequence[tuple[int, float]], *, n_cases: int,
               rates: Sequence[float] = FROC_FP_RATES) -> dict:
    """picai_eval's lesion-level FROC curve and its sensitivity at fixed false positives per case.

    At each threshold (decreasing), TP and FP count the entries with confidence >= it; the last point
    is then replaced by (the previous TP, infinitely many FP) -- picai_eval "extends the curve to
    infinity", which drops the lowest threshold. Sensitivity at a rate r is that of the last point with
    FP per case <= r (0 when none).
    """
    y = np.array([e[0] for e in entries], dtype=np.float64)
    s = np.array([e[1] for e in entries], dtype=np.float64)
    thresholds = _thresholds(s)
    tp = np.array([y[s >= t].sum() for t in thresholds], dtype=np.float64)
    fp = np.array([(1 - y[s >= t]).sum() for t in thresholds], dtype=np.float64)
    if len(tp) >= 2:
        tp[-1], fp[-1] = tp[-2], np.inf
    else:
        tp, fp = np.array([0.0, 0.0]), np.array([0.0, np.inf])
    n_lesions = int(y.sum())
    sens = tp / n_lesions if n_lesions else np.full(len(tp), np.nan)
    fp_rate = fp / n_cases
    points = {}
    for rate in rates:
        ok = fp_rate <= rate
        points[f"{rate:g}"] = float(sens[ok][-1]) if ok.any() else 0.0
    values = list(points.values())
    return {
        "thresholds": [float(t) for t in thresholds],
        "sensitivity": [float(v) for v in sens],
        "fp_per_case": [float(v) if np.isfinite(v) else None for v in fp_rate],  # None: the point "at infinity"
        "sensitivity_at_fp_per_case": {"points": points, "mean": float(np.mean(values)) if values else None},
    }


def picai_summary(results: Sequence, *, rates: Sequence[float] = FROC_FP_RATES) -> dict:
    """The figures picai_eval reports for ``picai`` case results: AP, AUROC, their mean, and the FROC.

    Returns
    -------
    dict
        ``AP``, ``AUROC``, ``score`` ((AP + AUROC) / 2, PI-CAI's ranking score; None when either is
        undefined), ``num_cases``, ``num_lesions``, ``froc`` (:func:`picai_froc`) and the per-case
        ``case_scores`` and ``case_targets``.
    """
    per_case = picai_entries(results)
    flat = [e for entries in per_case for e in entries]
    targets = [int(any(e[0] for e in entries)) for entries in per_case]
    scores = [float(r.case_score) for r in results]
    ap = average_precision(flat)
    auroc = case_auroc(targets, scores)
    return {
        "AP": ap,
        "AUROC": auroc,
        "score": None if ap is None or auroc is None else (ap + auroc) / 2,
        "num_cases": len(results),
        "num_lesions": int(sum(e[0] for e in flat)),
        "froc": picai_froc(flat, n_cases=len(results), rates=rates),
        "case_scores": {r.case_id: s for r, s in zip(results, scores)},
        "case_targets": {r.case_id: t for r, t in zip(results, targets)},
    }
