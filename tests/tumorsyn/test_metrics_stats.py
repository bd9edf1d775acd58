"""Wilson intervals, proportions and McNemar's test against published and scipy values."""
import math

import pytest
from scipy.stats import binomtest, chi2

from tumorsyn.metrics.stats import mcnemar_test, proportion, wilson_interval


def test_wilson_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553-0.3662.
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)
    # 15/148 -> 0.0624-0.1605 (same table).
    low, high = wilson_interval(15, 148)
    assert low == pytest.approx(0.0624, abs=5e-5) and high == pytest.approx(0.1605, abs=5e-5)


def test_wilson_extremes_and_empty():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=5e-5)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=5e-5)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_proportion_record():
    assert proportion(3, 4)["value"] == 0.75 and proportion(3, 4)["k"] == 3
    assert proportion(0, 0) == {"n": 0, "k": 0, "value": None, "ci95": None}


@pytest.mark.parametrize("b, c", [(0, 6), (1, 9), (5, 5), (12, 3), (0, 1)])
def test_mcnemar_exact_equals_binomial_test(b, c):
    result = mcnemar_test(b, c)
    assert result["exact_p"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    expected_stat = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    assert result["chi2_cc"] == pytest.approx(expected_stat)
    assert result["chi2_cc_p"] == pytest.approx(chi2.sf(expected_stat, 1))


def test_mcnemar_no_discordant_pairs():
    assert mcnemar_test(0, 0)["exact_p"] == 1.0
    assert mcnemar_test(0, 6)["exact_p"] == pytest.approx(2 * 0.5 ** 6)
    with pytest.raises(ValueError):
        mcnemar_test(-1, 2)
