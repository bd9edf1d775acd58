"""Comparison of real and synthetic descriptor rows: the AI reader and the per-descriptor figures."""
import math

import numpy as np
import pytest

from tumorsyn.metrics.realism.compare import classifier_features, compare_descriptors, delong_interval


def rows(n, shift, rng, *, organ="liver", size_class="<20 mm", volume=500.0):
    return [{"organ": organ, "size_class": size_class, "volume_mm3": volume,
             **{f: float(rng.normal(shift)) for f in classifier_features()}} for _ in range(n)]


def group(result, organ="liver", size="<20 mm"):
    return next(g for g in result["groups"] if g["organ"] == organ and g["size_class"] == size)


def test_identical_sets_give_auc_near_half():
    rng = np.random.default_rng(1)
    reader = group(compare_descriptors(rows(120, 0.0, rng), rows(120, 0.0, rng)))["ai_reader"]
    low, high = reader["ci95"]
    assert low <= 0.5 <= high
    assert reader["n_real"] == reader["n_synthetic"] == 120 and reader["folds"] == 5


def test_disjoint_sets_give_auc_near_one():
    rng = np.random.default_rng(2)
    reader = group(compare_descriptors(rows(40, 0.0, rng), rows(30, 6.0, rng)))["ai_reader"]
    assert reader["auc"] > 0.98


def test_size_left_out_of_the_classifier_unless_asked():
    rng = np.random.default_rng(3)
    real, syn = rows(60, 0.0, rng, volume=100.0), rows(60, 0.0, rng, volume=5000.0)
    default = group(compare_descriptors(real, syn))["ai_reader"]
    assert "volume_mm3" not in default["features"] and default["auc"] < 0.75
    with_size = group(compare_descriptors(real, syn, include_size=True))["ai_reader"]
    assert "volume_mm3" in with_size["features"] and with_size["auc"] > 0.98


def test_per_descriptor_figures_and_groups():
    rng = np.random.default_rng(4)
    real = rows(50, 0.0, rng) + rows(20, 0.0, rng, size_class=">=20 mm")
    syn = rows(40, 0.0, rng) + rows(3, 0.0, rng, size_class=">=20 mm")
    result = compare_descriptors(real, syn)
    assert [(g["organ"], g["size_class"]) for g in result["groups"]] == [
        ("liver", "<20 mm"), ("liver", ">=20 mm"), ("liver", "all")]
    same = compare_descriptors(real, real)
    d = group(same)["descriptors"]["sphericity"]
    assert d["auc_single"] == 0.5 and d["ks_statistic"] == 0.0
    assert d["real_median"] == d["synthetic_median"]
    assert d["in_real_range"]["value"] == pytest.approx(0.9, abs=0.05)  # 5-95 % of itself
    # A descriptor with no value at all: counted as n = 0, not an error.
    assert group(result)["descriptors"]["depth_mm"]["n_real"] == 50
    assert group(result)["descriptors"]["lesion_median_hu"]["n_real"] == 0
    assert group(result)["descriptors"]["lesion_median_hu"]["real_median"] is None


def test_too_few_lesions_gives_no_auc_with_reason():
    rng = np.random.default_rng(5)
    reader = group(compare_descriptors(rows(10, 0.0, rng), rows(1, 0.0, rng)))["ai_reader"]
    assert reader["auc"] is None and "at least 2" in reader["reason"]


def test_rows_not_described_and_nan_are_skipped():
    rng = np.random.default_rng(6)
    real = rows(20, 0.0, rng)
    for row in real[:5]:
        row["sphericity"] = math.nan
    skipped = rows(3, 0.0, rng)
    for row in skipped:
        row["described"] = False
    result = compare_descriptors(real + skipped, rows(20, 0.0, rng))
    assert group(result)["n_real"] == 20
    assert group(result)["descriptors"]["sphericity"]["n_real"] == 15


def test_delong_matches_sklearn_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    pos, neg = rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 50)
    auc, low, high = delong_interval(pos, neg)
    assert auc == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(50)], np.r_[pos, neg]))
    assert low < auc < high
    # Hanley-McNeil's approximation of the standard error is close to DeLong's.
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    se = math.sqrt((auc * (1 - auc) + 39 * (q1 - auc ** 2) + 49 * (q2 - auc ** 2)) / (40 * 50))
    assert (high - low) / 2 == pytest.approx(1.96 * se, rel=0.25)


def test_unknown_descriptor_refused():
    with pytest.raises(ValueError, match="unknown descriptor"):
        compare_descriptors([], [], descriptors=["roundness"])


def test_scanner_descriptors_left_out_of_the_classifier_unless_asked():
    default = classifier_features()
    assert "glcm_contrast" not in default and "contrast_hu" not in default
    assert {"glcm_contrast_noise", "contrast_noise"} <= set(default)
    assert "glcm_contrast" in classifier_features(include_scanner=True)
