"""Statistics of a reader study: accuracy, sensitivity, specificity, ROC AUC, binomial test, kappa.

"Positive" means synthetic. In the single-case design a rating is an answer (real / synthetic) and a
confidence 1-5; together they give a 10-point synthetic-likelihood score, 1 = "certainly real" (real,
confidence 5) to 10 = "certainly synthetic" (synthetic, confidence 5), the ordinal scale of the ROC
curve. In the 2AFC design a rating is correct when it picks the synthetic case of the pair;
proportion correct against 0.5 is the figure. A "not visible / cannot judge" answer is no judgement:
the figures here are computed on the judged answers, and the caller counts the others apart.

Intervals are exact (Clopper-Pearson) for proportions and DeLong's for the AUC; SciPy gives the
binomial test and the Clopper-Pearson bounds, scikit-learn the ROC curve, the AUC and Cohen's kappa.
Fleiss' kappa, which neither provides, is computed here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorsyn.metrics.stats import Z_95

__all__ = ["rating_score", "exact_proportion", "binary_figures", "binomial_test", "roc_curve", "roc_auc",
           "auc_interval", "cohen_kappa", "fleiss_kappa"]


def rating_score(answer: str, confidence: int) -> int:
    """10-point synthetic-likelihood score: "real" with confidence c -> ``6 - c``, "synthetic" -> ``5 + c``.

    Examples
    --------
    >>> [rating_score("real", c) for c in (5, 1)], [rating_score("synthetic", c) for c in (1, 5)]
    ([1, 5], [6, 10])
    """
    confidence = int(confidence)
    if not 1 <= confidence <= 5:
        raise ValueError(f"confidence must be 1-5, got {confidence}")
    return 5 + confidence if answer == "synthetic" else 6 - confidence


def exact_proportion(successes: int, total: int) -> dict:
    """``{'n', 'k', 'value', 'ci95'}``: a proportion with its exact (Clopper-Pearson) 95 % interval.

    ``value`` and ``ci95`` are None when ``total`` is 0.

    Examples
    --------
    >>> p = exact_proportion(8, 8)
    >>> round(p["ci95"][0], 4)  # 0.025 ** (1 / 8)
    0.6306
    """
    if total == 0:
        return {"n": 0, "k": 0, "value": None, "ci95": None}
    from scipy.stats import binomtest  # deferred: scipy.stats is slow to import

    ci = binomtest(int(successes), int(total)).proportion_ci(confidence_level=0.95, method="exact")
    return {"n": int(total), "k": int(successes), "value": successes / total,
            "ci95": [float(ci.low), float(ci.high)]}


def binomial_test(successes: int, total: int, p: float = 0.5) -> float | None:
    """Two-sided exact binomial test p-value of ``successes`` out of ``total`` against ``p`` (None if total = 0)."""
    if total == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(int(successes), int(total), p, alternative="two-sided").pvalue)


def binary_figures(truth_synthetic: Sequence[bool], said_synthetic: Sequence[bool]) -> dict:
    """Accuracy, sensitivity (synthetic called synthetic), specificity (real called real), exact 95 %.

    Parameters
    ----------
    truth_synthetic : sequence of bool
        True where the case is synthetic.
    said_synthetic : sequence of bool
        True where the reader answered "synthetic".

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity``, ``specificity`` (each as :func:`exact_proportion`), the
        confusion counts ``tp, fn, tn, fp`` and ``binomial_p`` (accuracy against 0.5, two-sided).

    Examples
    --------
    >>> f = binary_figures([True, True, False, False], [True, False, False, False])
    >>> f["accuracy"]["value"], f["sensitivity"]["value"], f["specificity"]["value"]
    (0.75, 0.5, 1.0)
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    said = np.asarray(said_synthetic, dtype=bool)
    if truth.shape != said.shape:
        raise ValueError(f"truth and answers differ in length ({truth.size} vs {said.size})")
    tp = int(np.sum(truth & said))
    fn = int(np.sum(truth & ~said))
    tn = int(np.sum(~truth & ~said))
    fp = int(np.sum(~truth & said))
    correct = tp + tn
    return {
        "accuracy": exact_proportion(correct, truth.size),
        "sensitivity": exact_proportion(tp, tp + fn),
        "specificity": exact_proportion(tn, tn + fp),
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "binomial_p": binomial_test(correct, truth.size),
    }


def roc_curve(truth_synthetic: Sequence[bool], score: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical ROC points (FPR, TPR) from (0, 0), one per distinct score (scikit-learn's ``roc_curve``).

    Empty lists' stand-in ``([0.0], [0.0])`` when either class is absent.
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    if truth.all() or not truth.any():
        return [0.0], [0.0]
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, _ = sk_roc_curve(truth, np.asarray(score, dtype=float), drop_intermediate=False)
    return [float(v) for v in fpr], [float(v) for v in tpr]


def roc_auc(truth_synthetic: Sequence[bool], score: Sequence[float]) -> float | None:
    """Area under the empirical ROC curve (scikit-learn): P(score of a synthetic > score of a real),
    ties counting 1/2. None when either class is absent.

    Examples
    --------
    >>> roc_auc([True, False], [8, 4])
    1.0
    >>> roc_auc([True, True, False, False], [3, 3, 3, 3])
    0.5
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    if truth.all() or not truth.any():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(truth, np.asarray(score, dtype=float)))


def auc_interval(truth_synthetic: Sequence[bool], score: Sequence[float]) -> list[float] | None:
    """DeLong's 95 % interval of the AUC (tumorsyn's one implementation), clipped to [0, 1].

    None when either class has fewer than two cases (the variance needs two of each).
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    score = np.asarray(score, dtype=float)
    if truth.sum() < 2 or (~truth).sum() < 2:
        return None
    from tumorsyn.metrics.realism.compare import delong_interval

    _, low, high = delong_interval(score[truth], score[~truth], z=Z_95)
    return [float(low), float(high)]


def cohen_kappa(first: Sequence[str], second: Sequence[str], categories: Sequence[str]) -> float | None:
    """Cohen's kappa of two readers' answers on the same items (scikit-learn); None where undefined
    (chance agreement 1: both always gave one and the same answer)."""
    if len(first) == 0:
        return None
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined is reported as None
        value = float(cohen_kappa_score(list(first), list(second), labels=list(categories)))
    return None if not np.isfinite(value) else value


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a table ``counts[i, j]`` = raters who put subject ``i`` in category ``j``.

    Subjects may have different numbers of raters (each at least 2): the per-subject agreement uses
    the subject's own count, and the chance agreement uses all ratings pooled. With the same number
    of raters for every subject this is Fleiss' (1971) kappa exactly.

    Returns
    -------
    float or None
        None when fewer than one subject has two ratings, or when every rating falls in one category
        (agreement is then perfect but chance agreement is 1, and kappa is undefined).

    Examples
    --------
    >>> fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0], [0, 2]]))
    1.0
    >>> fleiss_kappa(np.array([[1, 1], [1, 1]]))
    -1.0
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError("counts must be a 2D table (subjects x categories)")
    raters = table.sum(axis=1)
    table = table[raters >= 2]
    raters = raters[raters >= 2]
    if table.shape[0] == 0:
        return None
    per_subject = ((table * (table - 1)).sum(axis=1)) / (raters * (raters - 1))
    observed = float(per_subject.mean())
    shares = table.sum(axis=0) / table.sum()
    chance = float((shares ** 2).sum())
    if chance >= 1.0 - 1e-12:
        return None
    return (observed - chance) / (1.0 - chance)
