"""Dataset figures from per-case results: per-lesion, per-patient, false positives, per-case metrics, FROC."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorsyn.metrics.case import CaseResult
from tumorsyn.metrics.case_metrics import CASE_METRICS, metric_applies
from tumorsyn.metrics.froc import FROC_FP_RATES, froc_curve, sensitivity_at_fp_rates
from tumorsyn.metrics.sizes import is_early, size_convention as _size_convention
from tumorsyn.metrics.stats import proportion

__all__ = ["summarize", "VOLUME_SWEEP_MM3", "predicted_volume_mm3", "volume_threshold_sweep"]

# Patient-level volume thresholds (mm^3), 1 to 99 000 in 1-2-5 steps: a scan is called positive when
# its predicted tumour volume is >= T (the SyntheticTumors patient-level evaluation sweeps T over 1..99 000).
VOLUME_SWEEP_MM3: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000,
                                       50_000, 99_000)


def predicted_volume_mm3(result: CaseResult) -> float:
    """Predicted tumour volume of a case (mm^3): binary prediction voxels (organ-restricted) x voxel volume."""
    return result.pred_voxels * float(np.prod(result.spacing_mm))


def volume_threshold_sweep(results: Sequence[CaseResult], thresholds_mm3: Sequence[float] = VOLUME_SWEEP_MM3) -> dict:
    """Patient-level sensitivity and specificity when a scan is positive at predicted volume >= T.

    Parameters
    ----------
    results : sequence of CaseResult
    thresholds_mm3 : sequence of float
        The volumes T in mm^3.

    Returns
    -------
    dict
        ``points``: one ``{'threshold_mm3', 'sensitivity', 'specificity'}`` per T (proportions with
        Wilson 95 % intervals over tumour-positive and tumour-free scans), and ``auc``: the area under
        the ROC curve of the predicted volume as a score (ties count one half; None without both kinds
        of scans).
    """
    volumes = np.array([predicted_volume_mm3(r) for r in results])
    positive = np.array([r.has_tumour for r in results], dtype=bool)
    points = []
    for t in thresholds_mm3:
        called = volumes >= float(t)
        points.append({"threshold_mm3": float(t),
                       "sensitivity": proportion(int((called & positive).sum()), int(positive.sum())),
                       "specificity": proportion(int((~called & ~positive).sum()), int((~positive).sum()))})
    from tumorsyn.metrics.picai import case_auroc

    return {"points": points, "auc": case_auroc(positive, volumes)}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"n": int(arr.size), "mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}


def summarize(results: Sequence[CaseResult], *, bins_mm: Sequence[float] | None = None,
              size_convention: str = "max-diameter", fp_rates: Sequence[float] = FROC_FP_RATES,
              volume_thresholds_mm3: Sequence[float] | None = None) -> dict:
    """Aggregate case results into the figures of a report.

    Parameters
    ----------
    results : sequence of CaseResult
    bins_mm : sequence of float, optional
        Size bin edges in mm (the same as used for the cases; default: the size convention's).
    size_convention : str, optional
        The size convention the cases were binned with.
    fp_rates : sequence of float, optional
        False positives per scan at which the FROC sensitivity is read (default 1/8 ... 8).
    volume_thresholds_mm3 : sequence of float, optional
        When given, ``patient_volume_sweep`` (:func:`volume_threshold_sweep`) is added.

    Returns
    -------
    dict
        ``lesion_sensitivity`` (overall, by size bin, early < 20 mm; each a proportion with its Wilson
        95 % interval), ``false_positives``, ``patient`` (sensitivity, specificity),
        ``segmentation`` (``<name>_per_case`` statistics of every metric of
        :data:`~tumorsyn.metrics.case_metrics.CASE_METRICS`, then the global Dice) and ``froc``
        (None unless every prediction carried probabilities); under the ``picai`` convention also
        ``picai`` (:func:`tumorsyn.metrics.picai.picai_summary`).
    """
    if not results:
        raise ValueError("no cases to summarise")
    lesions = [les for r in results for les in r.reference]
    labels = _size_convention(size_convention, bins_mm).labels()
    by_size = []
    for label in labels:
        in_bin = [les for les in lesions if les.size_bin == label]
        by_size.append({"bin": label, **proportion(sum(les.matched for les in in_bin), len(in_bin))})
    early = [les for les in lesions if is_early(les.max_diameter_mm)]

    positives = [r for r in results if r.has_tumour]
    negatives = [r for r in results if not r.has_tumour]
    total_fp = sum(r.n_false_positives for r in results)

    # Each metric over the cases it applies to, undefined values (None) left out.
    per_case = {f"{name}_per_case": _stats([r.metrics[name] for r in results
                                            if metric_applies(metric, r.has_tumour) and r.metrics.get(name) is not None])
                for name, metric in CASE_METRICS.items()}
    pooled = sum(r.ref_voxels + r.pred_voxels for r in positives)
    global_dice = 2.0 * sum(r.overlap_voxels for r in positives) / pooled if pooled else None

    froc = None
    if all(r.probabilistic for r in results):
        curve = froc_curve([les.score if les.matched else None for les in lesions],
                           [c.score for r in results for c in r.predicted if c.counted and not c.matched],
                           n_scans=len(results))
        froc = {**curve, "sensitivity_at_fp_per_scan": sensitivity_at_fp_rates(curve, fp_rates)}

    extra: dict = {}
    if all(r.case_score is not None for r in results):
        from tumorsyn.metrics.picai import picai_summary

        extra["picai"] = picai_summary(results, rates=fp_rates)
    if volume_thresholds_mm3 is not None:
        extra["patient_volume_sweep"] = volume_threshold_sweep(results, volume_thresholds_mm3)

    return {
        "n_cases": len(results),
        "n_tumour_positive": len(positives),
        "n_tumour_free": len(negatives),
        "n_lesions": len(lesions),
        "lesion_sensitivity": {
            "overall": proportion(sum(les.matched for les in lesions), len(lesions)),
            "by_size": by_size,
            "early_lt_20mm": proportion(sum(les.matched for les in early), len(early)),
        },
        "false_positives": {
            "total": int(total_fp),
            "per_scan": total_fp / len(results),
            "per_tumour_free_scan": (sum(r.n_false_positives for r in negatives) / len(negatives)) if negatives else None,
            "per_tumour_positive_scan": (sum(r.n_false_positives for r in positives) / len(positives)) if positives else None,
        },
        "patient": {
            "sensitivity": proportion(sum(r.n_detected > 0 for r in positives), len(positives)),
            "specificity": proportion(sum(not r.has_counted_prediction for r in negatives), len(negatives)),
        },
        "segmentation": {
            **per_case,
            "global_dice": global_dice,
        },
        "froc": froc,
        **extra,
    }
