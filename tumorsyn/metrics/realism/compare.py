"""Real versus synthetic descriptors, per organ and size class, and the AI-reader AUC.

For each group (organ x size class, plus every organ with all sizes together) and each descriptor:
the median and interquartile range of real and synthetic lesions, the share of synthetic lesions
inside the real 5-95 % range (Wilson 95 % interval), the two-sample Kolmogorov-Smirnov statistic
and p-value, and the single-descriptor AUC (Mann-Whitney U / (n_real n_synthetic); 0.5 = same
distribution). NaN values are left out per descriptor.

The **AI reader** is a classifier that tries to tell real from synthetic lesions from the
descriptors: median imputation of missing values, standardisation and a logistic regression
(scikit-learn), scored by stratified k-fold cross-validation (k = min(5, lesions of the smaller
kind), shuffled with a recorded seed). Its figure is the ROC AUC of the out-of-fold probabilities
(positive = synthetic, as in reader studies; 0.5 = indistinguishable, 1 = always told apart) with a
DeLong 95 % interval. Size descriptors are left out by default (sizes are chosen by the user, not a
matter of realism), and so are the host descriptors (they describe the scan, not the lesion).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from tumorsyn.metrics.realism.descriptors import DESCRIPTORS, descriptor_names
from tumorsyn.metrics.stats import Z_95, proportion

__all__ = ["ALL_SIZES", "CLASSIFIER_EXCLUDED_GROUPS", "classifier_features", "compare_descriptors", "delong_interval",
           "ai_reader"]

ALL_SIZES = "all"
# Sizes are chosen by whoever made the tumours, host descriptors describe the scan, and the "scanner"
# group (HU-unit intensity) tracks the scanner's noise and kernel: a reader given those tells two REAL
# collections apart by scanner alone, so by default it reads only the noise-normalised intensity.
CLASSIFIER_EXCLUDED_GROUPS: tuple[str, ...] = ("size", "host", "scanner")
_MAX_FOLDS = 5


def classifier_features(*, include_size: bool = False, include_host: bool = False,
                        include_scanner: bool = False) -> list[str]:
    """Descriptor names the AI reader uses (groups of :data:`CLASSIFIER_EXCLUDED_GROUPS` only when asked)."""
    keep = {"size": include_size, "host": include_host, "scanner": include_scanner}
    excluded = {g for g in CLASSIFIER_EXCLUDED_GROUPS if not keep[g]}
    return [n for n, (g, _, _) in DESCRIPTORS.items() if g not in excluded]


def delong_interval(scores_pos: np.ndarray, scores_neg: np.ndarray, *, z: float = Z_95) -> tuple[float, float, float]:
    """ROC AUC of positive vs negative scores with its DeLong normal interval.

    Returns
    -------
    (auc, low, high) : tuple of float
        Bounds clipped to [0, 1].

    References
    ----------
    E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, Biometrics 44 (1988) 837-845; the midrank
    formulation of X. Sun and W. Xu, IEEE Signal Processing Letters 21 (2014) 1389-1393.
    """
    from scipy.stats import rankdata

    x, y = np.asarray(scores_pos, dtype=np.float64), np.asarray(scores_neg, dtype=np.float64)
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        raise ValueError("need at least one positive and one negative score")
    combined = rankdata(np.concatenate([x, y]))
    # Per-lesion placement values: the share of the other kind each score beats (ties count half).
    v10 = (combined[:m] - rankdata(x)) / n
    v01 = 1.0 - (combined[m:] - rankdata(y)) / m
    auc = float(v10.mean())
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    half = z * math.sqrt(max(float(var), 0.0))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def ai_reader(real: np.ndarray, synthetic: np.ndarray, *, features: Sequence[str], seed: int = 0) -> dict:
    """Cross-validated AUC of a classifier telling synthetic (positive) from real lesions.

    Parameters
    ----------
    real, synthetic : ndarray of float, shape (n, len(features))
        Descriptor values (NaN allowed: imputed by the training folds' medians).
    features : sequence of str
        Column names.
    seed : int
        Seed of the fold shuffle and the classifier.

    Returns
    -------
    dict
        ``auc``, ``ci95`` (DeLong), ``n_real``, ``n_synthetic``, ``folds``, ``features`` (those with
        at least one value), ``coefficients`` (standardised logistic coefficients of a fit on all
        lesions, largest first; positive = pushes towards synthetic) and ``reason`` when no AUC can
        be computed (then ``auc`` is None).
    """
    n_real, n_syn = len(real), len(synthetic)
    out = {"auc": None, "ci95": None, "n_real": n_real, "n_synthetic": n_syn, "folds": None,
           "features": [], "coefficients": [], "seed": int(seed), "reason": None}
    if min(n_real, n_syn) < 2:
        out["reason"] = "needs at least 2 real and 2 synthetic lesions"
        return out
    x = np.vstack([real, synthetic]).astype(np.float64)
    y = np.concatenate([np.zeros(n_real, int), np.ones(n_syn, int)])
    usable = ~np.all(np.isnan(x), axis=0)
    names = [f for f, keep in zip(features, usable) if keep]
    if not names:
        out["reason"] = "no descriptor has a value"
        return out
    x = x[:, usable]
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                             LogisticRegression(max_iter=2000, random_state=seed))

    folds = min(_MAX_FOLDS, n_real, n_syn)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A fold where a descriptor has no value, or a separable fold, only warns; the AUC stays valid.
        warnings.simplefilter("ignore")
        proba = cross_val_predict(model(), x, y, cv=cv, method="predict_proba")[:, 1]
        full = model().fit(x, y)
    auc, low, high = delong_interval(proba[y == 1], proba[y == 0])
    coefs = full[-1].coef_[0]
    order = np.argsort(-np.abs(coefs))
    out.update(auc=auc, ci95=[low, high], folds=folds, features=names,
               coefficients=[{"descriptor": names[i], "coefficient": float(coefs[i])} for i in order])
    return out


def _describe_pair(real: np.ndarray, syn: np.ndarray) -> dict:
    real, syn = real[~np.isnan(real)], syn[~np.isnan(syn)]
    out: dict = {"n_real": int(real.size), "n_synthetic": int(syn.size)}
    for key, values in (("real", real), ("synthetic", syn)):
        if values.size:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            out[f"{key}_median"], out[f"{key}_iqr"] = float(q50), [float(q25), float(q75)]
        else:
            out[f"{key}_median"], out[f"{key}_iqr"] = None, None
    out["real_p5_p95"] = None
    out["in_real_range"] = None
    out["ks_statistic"] = out["ks_p"] = out["auc_single"] = None
    if real.size >= 2:
        p5, p95 = np.percentile(real, [5, 95])
        out["real_p5_p95"] = [float(p5), float(p95)]
        if syn.size:
            out["in_real_range"] = proportion(int(np.count_nonzero((syn >= p5) & (syn <= p95))), int(syn.size))
    if real.size and syn.size:
        from scipy.stats import ks_2samp, mannwhitneyu

        ks = ks_2samp(syn, real)
        out["ks_statistic"], out["ks_p"] = float(ks.statistic), float(ks.pvalue)
        u = mannwhitneyu(syn, real, alternative="two-sided").statistic
        out["auc_single"] = float(u) / (syn.size * real.size)
    return out


def _matrix(rows: Sequence[dict], names: Sequence[str]) -> np.ndarray:
    def value(row, name):
        v = row.get(name)
        return math.nan if v is None or v == "" else float(v)

    return np.array([[value(r, n) for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))


def _group_order(rows: Sequence[dict]) -> list[tuple[str, str]]:
    organs = sorted({str(r.get("organ")) for r in rows})
    classes = sorted({str(r.get("size_class")) for r in rows}, key=_size_key)
    groups = []
    for organ in organs:
        groups += [(organ, c) for c in classes]
        groups.append((organ, ALL_SIZES))
    if len(organs) > 1:
        groups.append((ALL_SIZES, ALL_SIZES))
    return groups


def _size_key(label: str) -> float:
    """Sort '<10 mm' before '10-20 mm' before '>=20 mm'."""
    text = label.replace("mm", "").strip()
    digits = text.lstrip("<>=").split("-")[0]
    try:
        edge = float(digits)
    except ValueError:
        return math.inf
    return edge - 0.5 if text.startswith("<") else edge + (0.5 if text.startswith(">") else 0.0)


def compare_descriptors(real_rows: Sequence[dict], synthetic_rows: Sequence[dict], *,
                        descriptors: Sequence[str] | None = None, include_size: bool = False,
                        include_host: bool = False, include_scanner: bool = False, seed: int = 0) -> dict:
    """Compare real and synthetic descriptor rows per organ and size class.

    Parameters
    ----------
    real_rows, synthetic_rows : sequence of dict
        Rows from :func:`tumorsyn.metrics.realism.describe_case` (``organ``, ``size_class`` and the
        descriptors; rows with ``described`` False are skipped).
    descriptors : sequence of str, optional
        Descriptors to compare (default: all of :data:`DESCRIPTORS`).
    include_size, include_host, include_scanner : bool
        Let the AI reader use the size (host, scanner) descriptors too.
    seed : int
        Seed of the AI reader's folds.

    Returns
    -------
    dict
        ``groups``: one entry per (organ, size class) with ``n_real``, ``n_synthetic``,
        ``descriptors`` (name -> medians, IQRs, ``in_real_range``, ``ks_statistic``, ``ks_p``,
        ``auc_single``) and ``ai_reader`` (see :func:`ai_reader`); ``settings``: what was chosen.

    Examples
    --------
    >>> rows = [{"organ": "liver", "size_class": "<20 mm", "sphericity": s} for s in (0.7, 0.8, 0.9, 0.75)]
    >>> out = compare_descriptors(rows, rows, descriptors=["sphericity"])
    >>> out["groups"][0]["descriptors"]["sphericity"]["auc_single"]
    0.5
    """
    names = list(descriptors) if descriptors is not None else descriptor_names()
    unknown = [n for n in names if n not in DESCRIPTORS]
    if unknown:
        raise ValueError(f"unknown descriptor(s) {unknown}; choose among {', '.join(DESCRIPTORS)}")
    features = [f for f in classifier_features(include_size=include_size, include_host=include_host,
                                               include_scanner=include_scanner) if f in names]
    real = [r for r in real_rows if r.get("described", True)]
    syn = [r for r in synthetic_rows if r.get("described", True)]
    groups = []
    for organ, size in _group_order([*real, *syn]):
        def pick(rows):
            return [r for r in rows if organ in (ALL_SIZES, str(r.get("organ")))
                    and size in (ALL_SIZES, str(r.get("size_class")))]

        g_real, g_syn = pick(real), pick(syn)
        m_real, m_syn = _matrix(g_real, names), _matrix(g_syn, names)
        entry = {"organ": organ, "size_class": size, "n_real": len(g_real), "n_synthetic": len(g_syn),
                 "descriptors": {n: _describe_pair(m_real[:, i], m_syn[:, i]) for i, n in enumerate(names)}}
        cols = [names.index(f) for f in features]
        entry["ai_reader"] = ai_reader(m_real[:, cols], m_syn[:, cols], features=features, seed=seed)
        groups.append(entry)
    return {"groups": groups, "settings": {
        "descriptors": names, "classifier_features": features, "include_size": bool(include_size),
        "include_host": bool(include_host), "include_scanner": bool(include_scanner), "seed": int(seed), "positive": "synthetic",
        "classifier": "median imputation + standardisation + logistic regression (scikit-learn, L2, C=1)",
        "cross_validation": f"stratified k-fold, k = min({_MAX_FOLDS}, lesions of the smaller kind), shuffled with the seed",
        "auc_interval": f"DeLong, 95 % (z = {Z_95:.6f})",
        "range_rule": "share of synthetic lesions with a value inside the real 5th-95th percentile (linear "
                      "interpolation), Wilson 95 % interval",
        "two_sample_test": "Kolmogorov-Smirnov two-sample (scipy.stats.ks_2samp, two-sided); auc_single = "
                           "Mann-Whitney U / (n_real n_synthetic)",
        "nan_rule": "NaN values are left out per descriptor; the classifier imputes them with the training folds' medians",
    }}
