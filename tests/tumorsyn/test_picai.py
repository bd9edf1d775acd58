"""The ``picai`` convention against picai_eval itself, on the same detection maps (agreement to 1e-6)."""
import contextlib
import io

import numpy as np
import pytest

from tumorsyn.metrics import evaluate_case, summarize
from tumorsyn.metrics.picai import average_precision, case_auroc, detection_map, picai_froc, picai_summary

with contextlib.redirect_stdout(io.StringIO()):  # picai_eval prints a notice on import
    picai_eval = pytest.importorskip("picai_eval", reason="picai_eval is not installed (pip install tumorsyn[picai])")
    from picai_eval.metrics import Metrics

SHAPE = (24, 20, 16)
RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _box(mask_or_map, lo, hi, value=True):
    mask_or_map[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return mask_or_map


def _cases():
    """(reference, detection map) pairs covering the conventions' differences."""
    cases = []
    # Two lesions under one candidate (IoU 64/192 each): one is matched, the other missed; plus an FP.
    ref = _box(_box(np.zeros(SHAPE, bool), (2, 2, 2), (6, 6, 6)), (10, 2, 2), (14, 6, 6))
    det = _box(_box(np.zeros(SHAPE, np.float32), (2, 2, 2), (14, 6, 6), 0.7), (18, 14, 10), (21, 17, 13), 0.3)
    cases.append((ref, det))
    # A lesion split in two candidates: IoU 0.6 (confidence 0.4) and 0.4 (confidence 0.9).
    ref = _box(np.zeros(SHAPE, bool), (2, 2, 2), (12, 6, 6))
    det = _box(_box(np.zeros(SHAPE, np.float32), (2, 2, 2), (8, 6, 6), 0.4), (9, 2, 2), (12, 6, 6), 0.9)
    cases.append((ref, det))
    # IoU exactly 0.1 (3 shared voxels, union 30: a hit) and just below (union 31: a miss and an FP).
    ref = _box(_box(np.zeros(SHAPE, bool), (2, 2, 2), (5, 3, 3)), (12, 2, 2), (15, 3, 3))
    det = _box(_box(np.zeros(SHAPE, np.float32), (2, 2, 2), (5, 3, 3), 0.55), (2, 3, 3), (5, 6, 6), 0.55)
    det = _box(_box(det, (12, 2, 2), (16, 3, 3), 0.2), (12, 3, 3), (15, 6, 6), 0.2)
    cases.append((ref, det))
    # IoU exactly 0.5 (64 of 128), high confidence.
    ref = _box(np.zeros(SHAPE, bool), (4, 4, 4), (8, 8, 8))
    det = _box(np.zeros(SHAPE, np.float32), (4, 4, 4), (8, 8, 12), 0.8)
    cases.append((ref, det))
    # Several lesions, several candidates, candidates below 0.5 kept.
    ref = _box(_box(_box(np.zeros(SHAPE, bool), (1, 1, 1), (4, 4, 4)), (10, 10, 10), (15, 15, 15)), (18, 2, 2), (20, 4, 4))
    det = _box(_box(np.zeros(SHAPE, np.float32), (1, 1, 1), (4, 4, 3), 0.15), (10, 10, 10), (15, 15, 14), 0.95)
    det = _box(det, (1, 15, 1), (3, 17, 3), 0.6)
    cases.append((ref, det))
    # Tumour-free scans: candidates are all false positives; one scan with nothing.
    det = _box(_box(np.zeros(SHAPE, np.float32), (3, 3, 3), (5, 5, 5), 0.45), (15, 15, 10), (17, 17, 12), 0.6)
    cases.append((np.zeros(SHAPE, bool), det))
    cases.append((np.zeros(SHAPE, bool), np.zeros(SHAPE, np.float32)))
    det = _box(np.zeros(SHAPE, np.float32), (8, 8, 8), (9, 9, 9), 0.15)
    cases.append((np.zeros(SHAPE, bool), det))
    return cases


def _ours(cases, **kwargs):
    return [evaluate_case(ref, None, probability=det, spacing_mm=(1.0, 1.0, 1.0), match="picai", case_id=f"c{i}",
                          **kwargs) for i, (ref, det) in enumerate(cases)]


def _theirs(cases, **kwargs):
    return picai_eval.evaluate(y_det=[det for _, det in cases], y_true=[ref.astype(np.int32) for ref, _ in cases],
                               num_parallel_calls=1, **kwargs)


def _assert_same(ours: dict, theirs) -> None:
    assert ours["AP"] == pytest.approx(theirs.AP, abs=1e-6)
    assert ours["AUROC"] == pytest.approx(theirs.auroc, abs=1e-6)
    assert ours["score"] == pytest.approx(theirs.score, abs=1e-6)
    assert ours["num_lesions"] == theirs.num_lesions
    froc = ours["froc"]
    assert np.allclose(froc["sensitivity"], theirs.lesion_TPR, atol=1e-6, rtol=0)
    fpr = np.array([np.inf if v is None else v for v in froc["fp_per_case"]])
    assert np.array_equal(np.isinf(fpr), np.isinf(theirs.lesion_FPR))
    assert np.allclose(fpr[np.isfinite(fpr)], theirs.lesion_FPR[np.isfinite(theirs.lesion_FPR)], atol=1e-6, rtol=0)
    for rate in RATES:
        assert froc["sensitivity_at_fp_per_case"]["points"][f"{rate:g}"] == pytest.approx(
            theirs.lesion_TPR_at_FPR(rate), abs=1e-6)


def test_picai_eval_agrees_on_detection_maps():
    cases = _cases()
    results = _ours(cases)
    theirs = _theirs(cases)
    # Case by case, the same (is_lesion, confidence) entries.
    for i, result in enumerate(results):
        ours = sorted((1, les.score if les.matched else 0.0) for les in result.reference)
        ours += sorted((0, c.score) for c in result.predicted if c.counted and not c.matched)
        assert sorted(ours) == sorted((a, b) for a, b, _ in theirs.lesion_results[i])  # float32 values, exactly
        assert result.case_score == pytest.approx(theirs.case_pred[i], abs=1e-7)
    summary = summarize(results)
    _assert_same(summary["picai"], theirs)
    assert 0 < theirs.AP < 1 and 0 < theirs.auroc < 1  # the cases are not degenerate


def test_the_differences_on_the_same_maps():
    """One component over two lesions, the split lesion's score, IoU exactly 0.1 and 0.5, the 0.5 cut."""
    cases = _cases()
    picai = _ours(cases)
    anyov = [evaluate_case(ref, None, probability=det, spacing_mm=(1, 1, 1)) for ref, det in cases]
    # One component over two lesions: picai credits one, 'any' both.
    assert [les.matched for les in picai[0].reference] == [True, False]
    assert [les.matched for les in anyov[0].reference] == [True, True]
    # Split lesion: picai's score is that of the assigned (larger-IoU) candidate; 'any' takes the best score.
    assert picai[1].reference[0].score == pytest.approx(0.4) and anyov[1].reference[0].score == pytest.approx(0.9)
    assert [c.ignored for c in picai[1].predicted] == [None, "unassigned_overlap"]
    # IoU exactly 0.1 is a hit under picai (>=); the 0.55 candidate detects the first lesion.
    assert picai[2].reference[0].matched and picai[2].reference[0].score == pytest.approx(0.55)
    # IoU exactly 0.5 is a hit under picai, not under iou0.5 (strictly greater).
    strict = evaluate_case(cases[3][0], None, probability=cases[3][1], spacing_mm=(1, 1, 1), match="iou0.5")
    assert picai[3].reference[0].matched and not strict.reference[0].matched
    # Candidates below 0.5 are kept: the 0.15 candidate detects its lesion under picai only.
    assert picai[4].reference[0].matched and not anyov[4].reference[0].matched


@pytest.mark.parametrize("min_iou", [0.1, 0.5])
def test_picai_eval_agrees_at_min_overlap(min_iou):
    cases = _cases()
    _assert_same(summarize(_ours(cases, min_iou=min_iou))["picai"], _theirs(cases, min_overlap=min_iou))


def test_binary_masks_are_detection_maps_of_ones():
    cases = [(ref, det > 0) for ref, det in _cases()]
    results = [evaluate_case(ref, pred, spacing_mm=(1, 1, 1), match="picai") for ref, pred in cases]
    _assert_same(picai_summary(results), _theirs([(ref, pred.astype(np.float32)) for ref, pred in cases]))


def test_softmax_maps_are_refused_or_extracted_as_picai_does():
    rng = np.random.default_rng(3)
    ref = _box(np.zeros(SHAPE, bool), (6, 6, 4), (12, 12, 10))
    soft = np.zeros(SHAPE, np.float32)
    soft[5:13, 5:13, 3:11] = rng.uniform(0.2, 0.9, size=(8, 8, 8))
    with pytest.raises(ValueError, match="softmax/probability map, not a detection map .*picai_eval refuses it too"):
        evaluate_case(ref, None, probability=soft, spacing_mm=(1, 1, 1), match="picai")
    pytest.importorskip("report_guided_annotation", reason="report_guided_annotation comes with picai_eval")
    with contextlib.redirect_stdout(io.StringIO()):
        from report_guided_annotation import extract_lesion_candidates
    other = np.zeros(SHAPE, np.float32)
    other[16:22, 14:19, 2:8] = rng.uniform(0.05, 0.6, size=(6, 5, 6))
    cases = [(ref, soft), (np.zeros(SHAPE, bool), other), (ref, other)]
    ours = [evaluate_case(r, None, probability=p, spacing_mm=(1, 1, 1), match="picai", picai_extract=True)
            for r, p in cases]
    theirs = _theirs(cases, y_det_postprocess_func=lambda p: extract_lesion_candidates(p)[0])
    _assert_same(picai_summary(ours), theirs)


def test_thinned_thresholds_match_picai_metrics():
    """Above 10 000 distinct confidences picai_eval thins the thresholds; the FROC follows it."""
    rng = np.random.default_rng(0)
    entries = [(int(rng.random() < 0.3), float(s)) for s in rng.random(12_000)] + [(1, 0.0)] * 5
    theirs = Metrics(lesion_results={0: [(a, b, 0.0) for a, b in entries]}, case_target={0: 1}, case_pred={0: 1.0})
    ours = picai_froc(entries, n_cases=1)
    assert len(ours["thresholds"]) < 12_000 and np.allclose(ours["sensitivity"], theirs.lesion_TPR, atol=1e-6)
    assert average_precision(entries) == pytest.approx(theirs.AP, abs=1e-6)


def test_hand_computed_ap_and_auroc():
    # Entries: TP 0.9, FP 0.8, TP 0.6, missed lesion. Precision 1 at recall 1/3, 2/3 at 2/3; AP = 1/3 + 2/9.
    assert average_precision([(1, 0.9), (0, 0.8), (1, 0.6), (1, 0.0)]) == pytest.approx(1 / 3 + 2 / 9)
    # Cases: positives 0.9, 0.5; negatives 0.5, 0.1 -> pairs won 3 + one tie of 4.
    assert case_auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(3.5 / 4)
    assert case_auroc([1, 1], [0.2, 0.3]) is None and average_precision([(0, 0.3)]) is None


def test_negative_detection_maps_are_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        detection_map(np.full((2, 2, 2), -0.5, np.float32))
