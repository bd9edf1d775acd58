"""The per-case metric registry: one entry reaches the case rows, the summary, the conventions and report.md."""
import json
import math

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.cli.main import main
from tumorsyn.errors import ConfigError
from tumorsyn.metrics import (CASE_METRICS, CaseMetric, build_report, compare_reports, conventions, evaluate_case,
                              register_case_metric, render_markdown, summarize, unregister_case_metric, versions)
from tumorsyn.metrics.case_metrics import case_metric_values, metric_parameters

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
VOXEL_MM3 = 0.8 * 0.8 * 2.0


def _ref_volume(reference, prediction, spacing_mm, params):
    return params["scale"] * float(np.count_nonzero(reference)) * float(np.prod(spacing_mm))


TOY = CaseMetric(name="ref_voxels_mm3", column="reference volume (mm³)", compute=_ref_volume,
                 definition="reference tumour volume in mm^3 (voxel count x voxel volume), times scale",
                 tumour_positive_only=False, parameters={"scale": 1.0})


@pytest.fixture
def toy_metric():
    register_case_metric(TOY)
    try:
        yield TOY
    finally:
        unregister_case_metric(TOY.name)


def _box(shape, lo, hi):
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return mask


def _dataset(tmp_path):
    """Two cases: a tumour of 10x10x5 voxels found in full, and a tumour-free scan."""
    shape = (32, 32, 12)
    masks = {"a": _box(shape, (5, 5, 3), (15, 15, 8)), "b": np.zeros(shape, np.uint8)}
    for sub in ("ref", "pred"):
        (tmp_path / sub).mkdir()
        for cid, mask in masks.items():
            nib.save(nib.Nifti1Image(mask, AFFINE), str(tmp_path / sub / f"{cid}.nii.gz"))
    return tmp_path / "ref", tmp_path / "pred"


def test_builtin_metrics_are_dice_and_surface_dice():
    assert list(CASE_METRICS) == ["dice", "surface_dice"]
    assert metric_parameters() == {"dice": {}, "surface_dice": {"tolerance_mm": 2.0}}


def test_registered_metric_reaches_cases_summary_conventions_and_markdown(tmp_path, toy_metric):
    ref, pred = _dataset(tmp_path)
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1",
                 "--no-plots", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    volume = 10 * 10 * 5 * VOXEL_MM3
    cases = {c["case_id"]: c for c in report["cases"]}
    # After the built-in metrics, in registry order; not tumour-positive-only, so the free scan has a value.
    keys = list(cases["a"])
    assert keys[keys.index("dice"):keys.index("dice") + 3] == ["dice", "surface_dice", "ref_voxels_mm3"]
    assert cases["a"]["ref_voxels_mm3"] == pytest.approx(volume) and cases["b"]["ref_voxels_mm3"] == 0.0
    assert cases["b"]["dice"] is None
    seg = report["summary"]["segmentation"]
    assert list(seg) == ["dice_per_case", "surface_dice_per_case", "ref_voxels_mm3_per_case", "global_dice"]
    assert seg["ref_voxels_mm3_per_case"]["n"] == 2 and seg["dice_per_case"]["n"] == 1
    assert seg["ref_voxels_mm3_per_case"]["mean"] == pytest.approx(volume / 2)
    conv = report["conventions"]
    keys = list(conv)
    assert keys[keys.index("surface_dice_rule") + 1:keys.index("surface_dice_rule") + 3] == [
        "ref_voxels_mm3_scale", "ref_voxels_mm3_rule"]
    assert conv["ref_voxels_mm3_rule"] == TOY.definition
    md = (out / "report.md").read_text()
    assert (f"- reference volume (mm³) per case: mean {volume / 2:.3f}, median {volume / 2:.3f} "
            "(n = 2, tumour-free scans included)") in md
    assert "| case | lesions | detected | FP | Dice | surface Dice | reference volume (mm³) |" in md
    assert f"| a | 1 | 1 | 0 | 1.000 | 1.000 | {volume:.3f} |" in md
    assert "| b | 0 | 0 | 0 | n/a | n/a | 0.000 |" in md


def test_unregistered_metric_leaves_no_trace(toy_metric):
    ref = _box((20, 20, 10), (4, 4, 2), (9, 9, 6)) > 0
    with_toy = evaluate_case(ref, ref, spacing_mm=(1, 1, 1))
    assert with_toy.metrics["ref_voxels_mm3"] == 100.0
    unregister_case_metric(TOY.name)
    try:
        result = evaluate_case(ref, ref, spacing_mm=(1, 1, 1))
        assert list(result.metrics) == ["dice", "surface_dice"] and result.dice == 1.0
        summary = summarize([result])
        assert "ref_voxels_mm3_per_case" not in summary["segmentation"]
        conv = conventions()
        assert not any(k.startswith("ref_voxels_mm3") for k in conv)
        md = render_markdown(build_report([result], summary=summary, conventions=conv, versions=versions()))
        assert "reference volume" not in md
        # A report written while the metric was registered still renders (its extra figures unprinted).
        old = build_report([with_toy], summary=summarize([result]), conventions=conv, versions=versions())
        assert "| 1 | 1 | 0 | 1.000 | 1.000 |" in render_markdown(old)
    finally:
        register_case_metric(TOY)


def test_parameters_override_and_undefined_values(toy_metric):
    ref = _box((20, 20, 10), (4, 4, 2), (9, 9, 6)) > 0
    values = case_metric_values(ref, ref, spacing_mm=(1, 1, 2), has_tumour=True,
                                overrides={"ref_voxels_mm3_scale": 0.5, "surface_dice_tolerance_mm": 1.0})
    assert values == {"dice": 1.0, "surface_dice": 1.0, "ref_voxels_mm3": 100.0}
    assert conventions(tolerance_mm=3.0)["surface_dice_tolerance_mm"] == 3.0
    with pytest.raises(ValueError, match="unknown case metric parameter 'ref_voxels_mm3_scal'"):
        case_metric_values(ref, ref, spacing_mm=(1, 1, 1), has_tumour=True, overrides={"ref_voxels_mm3_scal": 2})
    with pytest.raises(ValueError, match="already registered"):
        register_case_metric(TOY)
    with pytest.raises(ValueError, match="no case metric named 'hd95'"):
        unregister_case_metric("hd95")
    with pytest.raises(ValueError, match="Python identifier"):
        CaseMetric(name="ref volume", column="x", compute=_ref_volume, definition="x")


def test_nan_is_undefined_and_left_out_of_the_summary():
    nan_metric = CaseMetric(name="always_nan", column="NaN", compute=lambda *_: math.nan, definition="never defined")
    register_case_metric(nan_metric)
    try:
        ref = _box((20, 20, 10), (4, 4, 2), (9, 9, 6)) > 0
        result = evaluate_case(ref, ref, spacing_mm=(1, 1, 1))
        assert result.metrics["always_nan"] is None
        assert summarize([result])["segmentation"]["always_nan_per_case"] == {
            "n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
    finally:
        unregister_case_metric("always_nan")


def test_compare_refuses_reports_with_different_metric_parameters(tmp_path, toy_metric):
    ref = _box((20, 20, 10), (4, 4, 2), (9, 9, 6)) > 0
    result = evaluate_case(ref, ref, spacing_mm=(1, 1, 1))
    reports = []
    for scale in (1.0, 2.0):
        conv = conventions()
        conv["ref_voxels_mm3_scale"] = scale
        report = build_report([result], summary=summarize([result]), conventions=conv, versions=versions())
        reports.append({**report, "_path": str(tmp_path / f"r{scale}.json")})
    with pytest.raises(ConfigError, match="ref_voxels_mm3_scale: 1.0 vs 2.0"):
        compare_reports(*reports)
