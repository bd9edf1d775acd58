"""Proportions with Wilson 95 % intervals, and McNemar's test for paired detections."""
from __future__ import annotations

import math

__all__ = ["Z_95", "wilson_interval", "proportion", "mcnemar_test"]

# Two-sided 95 % normal quantile.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, total: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes : int
        Number of successes, 0 <= successes <= total.
    total : int
        Number of trials.
    z : float, optional
        Normal quantile (default: two-sided 95 %).

    Returns
    -------
    (low, high) : tuple of float
        Bounds in [0, 1]; ``(nan, nan)`` when ``total`` is 0.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22 (1927) 209-212.

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    successes, total = int(successes), int(total)
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes} of {total}")
    if total == 0:
        return math.nan, math.nan
    p = successes / total
    z2 = z * z
    denom = 1.0 + z2 / total
    centre = (p + z2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denom
    # The bounds are exactly 0 / 1 at the extremes; clipping removes rounding noise there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high


def proportion(successes: int, total: int) -> dict:
    """``{'n', 'k', 'value', 'ci95'}``: a proportion with its Wilson 95 % interval (``None`` if n = 0)."""
    low, high = wilson_interval(successes, total)
    return {
        "n": int(total),
        "k": int(successes),
        "value": successes / total if total else None,
        "ci95": [low, high] if total else None,
    }


def mcnemar_test(only_a: int, only_b: int) -> dict:
    """McNemar's test on paired binary outcomes (e.g. one lesion detected by model A and/or B).

    Parameters
    ----------
    only_a : int
        Discordant pairs where only A succeeded.
    only_b : int
        Discordant pairs where only B succeeded.

    Returns
    -------
    dict
        ``exact_p`` (two-sided binomial test of the discordant pairs against 1/2, the default for
        small counts), ``chi2_cc`` and ``chi2_cc_p`` (Edwards' continuity-corrected chi-square, 1 dof).
        Both p-values are 1 when there is no discordant pair.
    """
    b, c = int(only_a), int(only_b)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return {"only_a": b, "only_b": c, "exact_p": 1.0, "chi2_cc": 0.0, "chi2_cc_p": 1.0}
    from scipy.stats import binom, chi2  # deferred: scipy.stats is slow to import

    exact = min(1.0, 2.0 * float(binom.cdf(min(b, c), n, 0.5)))
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return {"only_a": b, "only_b": c, "exact_p": exact, "chi2_cc": float(statistic),
            "chi2_cc_p": float(chi2.sf(statistic, 1))}
