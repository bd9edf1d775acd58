"""Statistics of a reader study: accuracy figures, ROC AUC, binomial test, Fleiss' kappa.

"Positive" means synthetic. In the single-case design a rating is an answer (real / synthetic) and a
confidence 1-5; together they give a 10-step score from "certainly real" (-5) to "certainly
synthetic" (+5), the ordinal scale of the ROC curve. In the 2AFC design a rating is correct when it
picks the synthetic case of the pair; proportion correct against 0.5 is the figure.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tumorsyn.metrics.stats import Z_95, proportion

__all__ = ["rating_score", "binary_figures", "binomial_test", "roc_curve", "roc_auc", "auc_interval",
           "fleiss_kappa"]


def rating_score(answer: str, confidence: int) -> int:
    """Ordinal score: ``+confidence`` for "synthetic", ``-confidence`` for "real"."""
    return int(confidence) if answer == "synthetic" else -int(confidence)


def binomial_test(successes: int, total: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test p-value of ``successes`` out of ``total`` against ``p`` (1 if total = 0)."""
    if total == 0:
        return 1.0
    from scipy.stats import binomtest  # deferred: scipy.stats is slow to import

    return float(binomtest(int(successes), int(total), p, alternative="two-sided").pvalue)


def binary_figures(truth_synthetic: Sequence[bool], said_synthetic: Sequence[bool]) -> dict:
    """Accuracy, sensitivity (synthetic called synthetic), specificity (real called real), Wilson 95 %.

    Parameters
    ----------
    truth_synthetic : sequence of bool
        True where the case is synthetic.
    said_synthetic : sequence of bool
        True where the reader answered "synthetic".

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity``, ``specificity`` (each ``{'n', 'k', 'value', 'ci95'}``), the
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
        "accuracy": proportion(correct, truth.size),
        "sensitivity": proportion(tp, tp + fn),
        "specificity": proportion(tn, tn + fp),
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
        "binomial_p": binomial_test(correct, truth.size),
    }


def roc_curve(truth_synthetic: Sequence[bool], score: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical ROC points (FPR, TPR), from the strictest threshold to the loosest, starting at (0, 0).

    A case counts as called synthetic when its score is at least the threshold; thresholds are the
    distinct scores, so tied scores move the curve diagonally.
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    score = np.asarray(score, dtype=float)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    fpr, tpr = [0.0], [0.0]
    if positives == 0 or negatives == 0:
        return fpr, tpr
    for threshold in np.unique(score)[::-1]:
        called = score >= threshold
        tpr.append(float(np.sum(called & truth)) / positives)
        fpr.append(float(np.sum(called & ~truth)) / negatives)
    return fpr, tpr


def roc_auc(truth_synthetic: Sequence[bool], score: Sequence[float]) -> float | None:
    """Area under the empirical ROC curve: P(score of a synthetic > score of a real), ties counting 1/2.

    This is the Mann-Whitney statistic divided by ``n_synthetic * n_real`` and equals the trapezoid
    area under :func:`roc_curve`. None when either class is absent.

    Examples
    --------
    >>> roc_auc([True, False], [3, -2])
    1.0
    >>> roc_auc([True, True, False, False], [1, 1, 1, 1])
    0.5
    """
    truth = np.asarray(truth_synthetic, dtype=bool)
    score = np.asarray(score, dtype=float)
    pos, neg = score[truth], score[~truth]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def auc_interval(auc: float | None, n_synthetic: int, n_real: int) -> list[float] | None:
    """95 % interval of an AUC from Hanley & McNeil's (1982) standard error, clipped to [0, 1].

    References
    ----------
    J. A. Hanley, B. J. McNeil, "The meaning and use of the area under a ROC curve", Radiology 143 (1982) 29-36.
    """
    if auc is None or n_synthetic == 0 or n_real == 0:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_synthetic - 1) * (q1 - auc * auc) + (n_real - 1) * (q2 - auc * auc)) / (
        n_synthetic * n_real)
    half = Z_95 * math.sqrt(max(variance, 0.0))
    return [max(0.0, auc - half), min(1.0, auc + half)]


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
