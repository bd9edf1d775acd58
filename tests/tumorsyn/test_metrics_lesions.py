"""Lesion matching on hand-built phantoms with known answers."""
import numpy as np
import pytest

from tumorsyn.metrics import evaluate_case, match_lesions, summarize

SP = (1.0, 1.0, 1.0)


def _box(mask, lo, hi, value=True):
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return mask


def _empty(shape=(40, 40, 30)):
    return np.zeros(shape, dtype=bool)


def test_touching_lesions_diagonal_is_one_lesion_gap_is_two():
    ref = _empty()
    _box(ref, (5, 5, 5), (10, 10, 10))
    _box(ref, (10, 10, 10), (14, 14, 14))  # touches the first only at a corner: 26-connected
    assert len(match_lesions(ref, ref, spacing_mm=SP).reference) == 1
    ref = _empty()
    _box(ref, (5, 5, 5), (10, 10, 10))
    _box(ref, (11, 5, 5), (15, 10, 10))  # one background voxel between them
    assert len(match_lesions(ref, ref, spacing_mm=SP).reference) == 2


def test_one_prediction_covering_two_lesions():
    ref = _empty()
    _box(ref, (5, 5, 5), (10, 10, 10))
    _box(ref, (12, 5, 5), (17, 10, 10))
    pred = _box(_empty(), (4, 4, 4), (18, 11, 11))
    anyhit = match_lesions(ref, pred, spacing_mm=SP, match="any")
    assert [les.matched for les in anyhit.reference] == [True, True]
    assert anyhit.n_false_positives == 0 and anyhit.predicted[0].partners == [1, 2]
    # IoU of each 125-voxel lesion with the 1078-voxel component is far below 0.5.
    strict = match_lesions(ref, pred, spacing_mm=SP, match="iou0.5")
    assert [les.matched for les in strict.reference] == [False, False]
    assert strict.n_false_positives == 1
    assert strict.reference[0].best_iou == pytest.approx(125 / (14 * 7 * 7))
    # Dice 2*125/(125+686) = 0.308 > 0.1: detected under dice0.1.
    assert all(les.matched for les in match_lesions(ref, pred, spacing_mm=SP, match="dice0.1").reference)
    # The component's centre (10.5, 7, 7) -> voxel (10 or 11, 7, 7) falls in the gap: no centroid hit.
    assert not any(les.matched for les in match_lesions(ref, pred, spacing_mm=SP, match="centroid").reference)


def test_iou_threshold_is_strict():
    ref = _box(_empty(), (5, 5, 5), (9, 9, 9))  # 64 voxels
    half = _box(_empty(), (5, 5, 5), (9, 9, 7))  # 32 voxels inside: IoU exactly 0.5
    assert not match_lesions(ref, half, spacing_mm=SP, match="iou0.5").reference[0].matched
    more = _box(_empty(), (5, 5, 5), (9, 9, 8))  # IoU 0.75
    assert match_lesions(ref, more, spacing_mm=SP, match="iou0.5").reference[0].matched


def test_centroid_criterion_hits_inside():
    ref = _box(_empty(), (5, 5, 5), (15, 15, 15))
    pred = _box(_empty(), (8, 8, 8), (20, 12, 12))  # centre (13.5, 9.5, 9.5): inside the lesion
    assert match_lesions(ref, pred, spacing_mm=SP, match="centroid").reference[0].matched


def test_empty_reference_and_empty_prediction():
    ref = _box(_empty(), (5, 5, 5), (10, 10, 10))
    empty = _empty()
    missed = evaluate_case(ref, empty, spacing_mm=SP)
    assert missed.n_detected == 0 and missed.dice == 0.0 and missed.surface_dice == 0.0
    free = evaluate_case(empty, _box(_empty(), (1, 1, 1), (3, 3, 3)), spacing_mm=SP)
    assert not free.has_tumour and free.dice is None and free.n_false_positives == 1
    clean = evaluate_case(empty, empty, spacing_mm=SP)
    assert clean.reference == [] and clean.predicted == [] and clean.dice is None
    summary = summarize([missed, free, clean])
    assert summary["patient"]["sensitivity"]["value"] == 0.0
    assert summary["patient"]["specificity"]["k"] == 1 and summary["patient"]["specificity"]["n"] == 2
    assert summary["false_positives"]["per_scan"] == pytest.approx(1 / 3)
    # Tumour-free cases never enter Dice: only the missed case counts.
    assert summary["segmentation"]["dice_per_case"]["n"] == 1
    assert summary["segmentation"]["global_dice"] == 0.0


def test_prediction_outside_the_organ_is_not_a_false_positive():
    organ = _box(_empty(), (0, 0, 0), (20, 40, 30))
    ref = _box(_empty(), (5, 5, 5), (10, 10, 10))
    pred = ref.copy()
    _box(pred, (28, 28, 20), (32, 32, 24))  # outside the organ
    straddling = _box(_empty(), (18, 20, 20), (24, 24, 24))  # half inside
    pred |= straddling
    without = evaluate_case(ref, pred, spacing_mm=SP)
    assert without.n_false_positives == 2
    within = evaluate_case(ref, pred, spacing_mm=SP, organ_mask=organ)
    assert within.n_false_positives == 1  # only the inside part of the straddling component remains
    assert within.pred_voxels_outside_organ == 4 * 4 * 4 + 4 * 4 * 4
    assert within.predicted[-1].voxels == 2 * 4 * 4
    assert within.dice == 2 * 125 / (125 + 125 + 32)
    # A reference lesion outside the organ vanishes too.
    ref_out = _box(ref.copy(), (30, 5, 5), (34, 9, 9))
    assert len(evaluate_case(ref_out, ref, spacing_mm=SP, organ_mask=organ).reference) == 1


def test_min_volume_ignores_small_components():
    ref = _box(_empty(), (5, 5, 5), (10, 10, 10))
    pred = ref.copy()
    _box(pred, (30, 30, 20), (32, 32, 22))  # 8 voxels at 0.5^3 mm^3 = 1 mm^3
    sp = (0.5, 0.5, 0.5)
    assert match_lesions(ref, pred, spacing_mm=sp, min_volume_mm3=0).n_false_positives == 1
    assert match_lesions(ref, pred, spacing_mm=sp, min_volume_mm3=1.0).n_false_positives == 1  # >= V counts
    res = match_lesions(ref, pred, spacing_mm=sp, min_volume_mm3=1.5)
    assert res.n_false_positives == 0 and not res.predicted[1].counted
    # A tumour-free scan with only a sub-threshold component stays specific.
    free = evaluate_case(_empty(), pred & ~ref, spacing_mm=sp, min_volume_mm3=1.5)
    assert summarize([free])["patient"]["specificity"]["value"] == 1.0
    # A lesion hit only by an ignored component is missed.
    tiny_hit = _box(_empty(), (5, 5, 5), (6, 6, 6))
    assert not match_lesions(ref, tiny_hit, spacing_mm=sp, min_volume_mm3=1.0).reference[0].matched


def test_probability_scores_and_froc():
    ref = _empty()
    _box(ref, (2, 2, 2), (6, 6, 6))
    _box(ref, (12, 2, 2), (16, 6, 6))
    _box(ref, (22, 2, 2), (26, 6, 6))
    prob = np.zeros(ref.shape, dtype=np.float32)
    _box(prob, (2, 2, 2), (6, 6, 6), 0.9)
    prob[3, 3, 3] = 0.95                      # component max, not mean
    _box(prob, (12, 2, 2), (16, 6, 6), 0.6)
    _box(prob, (22, 2, 2), (26, 6, 6), 0.4)   # below 0.5: not predicted
    _box(prob, (30, 30, 20), (33, 33, 23), 0.7)  # false positive
    result = evaluate_case(ref, None, probability=prob, spacing_mm=SP)
    assert [les.score for les in result.reference] == pytest.approx([0.95, 0.6, None])
    assert [c.score for c in result.predicted] == pytest.approx([0.95, 0.6, 0.7])
    froc = summarize([result])["froc"]
    assert froc["thresholds"][1:] == pytest.approx([0.95, 0.7, 0.6])
    assert froc["sensitivity"] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3])
    assert froc["fp_per_scan"] == [0, 0, 1, 1]
    assert froc["sensitivity_at_fp_per_scan"]["points"]["0.5"] == pytest.approx(1 / 3)
    assert froc["sensitivity_at_fp_per_scan"]["points"]["1"] == pytest.approx(2 / 3)
    # Binary predictions give no FROC.
    assert summarize([evaluate_case(ref, ref, spacing_mm=SP)])["froc"] is None


def test_lesions_by_size_bin_in_summary():
    ref = _empty((60, 20, 20))
    ref[2, 2, 2:7] = True     # 5 mm rod
    ref[10, 2, 2:17] = True   # 15 mm rod
    ref[20:45, 10, 10] = True  # 25 mm rod
    pred = np.zeros_like(ref)
    pred[10, 2, 5] = True
    pred[30, 10, 10] = True
    s = summarize([evaluate_case(ref, pred, spacing_mm=SP)])
    rows = {row["bin"]: (row["k"], row["n"]) for row in s["lesion_sensitivity"]["by_size"]}
    assert rows == {"<10 mm": (0, 1), "10-20 mm": (1, 1), ">20 mm": (1, 1)}
    assert (s["lesion_sensitivity"]["early_lt_20mm"]["k"], s["lesion_sensitivity"]["early_lt_20mm"]["n"]) == (1, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="match criterion"):
        match_lesions(_empty(), _empty(), spacing_mm=SP, match="overlap")
    with pytest.raises(ValueError):
        evaluate_case(_empty(), _empty((5, 5, 5)), spacing_mm=SP)
