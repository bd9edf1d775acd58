"""Reader-study statistics against values computed by hand on small rating tables."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reader_study.stats import (auc_interval, binary_figures, binomial_test, cohen_kappa, exact_proportion,
                                fleiss_kappa, rating_score, roc_auc, roc_curve)

TRUTH = [True] * 4 + [False] * 4  # 4 synthetic, then 4 real


def test_perfect_reader():
    figures = binary_figures(TRUTH, TRUTH)
    assert figures["accuracy"]["value"] == 1.0
    assert (figures["tp"], figures["fn"], figures["tn"], figures["fp"]) == (4, 0, 4, 0)
    assert figures["sensitivity"]["value"] == 1.0 and figures["specificity"]["value"] == 1.0
    # Clopper-Pearson lower bound for 8/8: the p with p**8 = 0.025, i.e. 0.025 ** (1/8) = 0.63058
    assert figures["accuracy"]["ci95"][0] == pytest.approx(0.025 ** (1 / 8))
    assert figures["accuracy"]["ci95"][1] == 1.0
    # Two-sided exact binomial p of 8/8 at 0.5: 2 * 0.5**8
    assert figures["binomial_p"] == pytest.approx(2 * 0.5 ** 8)
    scores = [rating_score("synthetic", 4)] * 4 + [rating_score("real", 2)] * 4
    assert roc_auc(TRUTH, scores) == 1.0


def test_always_real_reader():
    figures = binary_figures(TRUTH, [False] * 8)
    assert figures["accuracy"]["value"] == 0.5
    assert figures["sensitivity"]["value"] == 0.0
    assert figures["specificity"]["value"] == 1.0
    assert figures["binomial_p"] == pytest.approx(1.0)
    # Every score is 3 (real, confidence 3): the ROC is the diagonal, AUC exactly 0.5.
    assert roc_auc(TRUTH, [3] * 8) == 0.5
    assert roc_curve(TRUTH, [3] * 8) == ([0.0, 1.0], [0.0, 1.0])
    # Clopper-Pearson of 0/4 (sensitivity): upper bound 1 - 0.025 ** (1/4) = 0.60236.
    assert figures["sensitivity"]["ci95"] == pytest.approx([0.0, 1 - 0.025 ** 0.25])


def test_chance_reader():
    said = [True, False, True, False, True, False, False, True]  # TP 2, FN 2, FP 2, TN 2
    figures = binary_figures(TRUTH, said)
    assert (figures["tp"], figures["fn"], figures["tn"], figures["fp"]) == (2, 2, 2, 2)
    assert figures["accuracy"]["value"] == 0.5 and figures["binomial_p"] == pytest.approx(1.0)
    # Synthetic scores 3, -2, 1, -4 vs real 2, -1, -3, 4: synthetic wins 3 + 1 + 2 + 0 = 6 of 16 pairs.
    scores = [3, -2, 1, -4, 2, -1, -3, 4]
    assert roc_auc(TRUTH, scores) == pytest.approx(6 / 16)
    fpr, tpr = roc_curve(TRUTH, scores)
    # Trapezoids under the empirical curve give the same area as the pair count.
    assert np.trapezoid(tpr, fpr) == pytest.approx(6 / 16)


def test_inverted_reader_and_ties():
    assert roc_auc(TRUTH, [-5] * 4 + [5] * 4) == 0.0
    # One tie among 4 pairs (2 vs 2) counts one half: (1 + 1 + 0.5 + 1) / 4 with pos [3, 2] vs neg [2, 1].
    assert roc_auc([True, True, False, False], [3, 2, 2, 1]) == pytest.approx(3.5 / 4)
    assert roc_auc([True, True], [1, 2]) is None


def test_binomial_test_hand_values():
    # P(X <= 1) for n = 5: (1 + 5) / 32; two-sided doubles it.
    assert binomial_test(1, 5) == pytest.approx(2 * 6 / 32)
    assert binomial_test(0, 0) is None
    assert exact_proportion(0, 0) == {"n": 0, "k": 0, "value": None, "ci95": None}


def test_auc_interval_delong():
    # Synthetic 3, 1 vs real 2, 0: placement values V10 = 1, 1/2 and V01 = 1/2, 0; AUC 3/4.
    # var = var(V10) / 2 + var(V01) / 2 = (1/8) / 2 + (1/8) / 2 = 1/8 (sample variances, ddof 1).
    low, high = auc_interval([True, True, False, False], [3, 1, 2, 0])
    half = 1.959963984540054 * math.sqrt(1 / 8)
    assert low == pytest.approx(0.75 - half) and high == 1.0
    assert auc_interval([True, False, False], [3, 1, 2]) is None  # one synthetic case: no variance


def test_rating_score_ten_points():
    assert [rating_score("real", c) for c in (5, 4, 3, 2, 1)] == [1, 2, 3, 4, 5]
    assert [rating_score("synthetic", c) for c in (1, 2, 3, 4, 5)] == [6, 7, 8, 9, 10]
    with pytest.raises(ValueError, match="confidence must be 1-5"):
        rating_score("real", 0)


def test_cohen_kappa_hand_values():
    # Observed agreement 3/4; marginals real 2/4 and 2/4 -> chance 1/2; kappa = (3/4 - 1/2) / (1/2) = 1/2.
    first, second = ["real", "real", "synthetic", "synthetic"], ["real", "synthetic", "synthetic", "synthetic"]
    assert cohen_kappa(first, ["real", "real", "synthetic", "real"], ["real", "synthetic"]) == pytest.approx(0.5)
    # Marginals 2/2 vs 1/3: chance (2*1 + 2*3) / 16 = 1/2; observed 3/4 -> 1/2 as well.
    assert cohen_kappa(first, second, ["real", "synthetic", "not_visible"]) == pytest.approx(0.5)
    assert cohen_kappa(["real"] * 3, ["real"] * 3, ["real", "synthetic"]) is None


def test_fleiss_kappa_hand_values():
    # 3 raters, 4 items: P_i = 1, 1, 1/3, 1/3 -> mean 2/3; shares 0.5/0.5 -> chance 0.5; kappa = 1/3.
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [2, 1], [1, 2]])) == pytest.approx(1 / 3)
    # Two readers who always disagree: observed agreement 0, chance 0.5 -> kappa -1.
    assert fleiss_kappa(np.array([[1, 1]] * 4)) == pytest.approx(-1.0)
    # Two readers who always agree, both answers used: kappa 1.
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0]])) == pytest.approx(1.0)
    # Everyone always says "real": chance agreement is 1, kappa undefined.
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None
    # Items with a single rating are left out (the 3rd row); the rest is the 3-rater table above.
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [1, 0], [2, 1], [1, 2]])) == pytest.approx(1 / 3)


def test_fleiss_kappa_unequal_raters():
    # Item 1: 3 raters agree (P=1); item 2: 2 raters split (P=0). Observed 0.5; shares 4/5, 1/5 -> chance 0.68.
    expected = (0.5 - 0.68) / (1 - 0.68)
    assert fleiss_kappa(np.array([[3, 0], [1, 1]])) == pytest.approx(expected)


def test_binary_figures_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        binary_figures([True, False], [True])
