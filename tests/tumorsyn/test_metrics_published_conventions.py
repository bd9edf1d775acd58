"""Published small-tumour conventions with hand-computed answers: volume sweep, fixed FP rates, size bins in reports."""
import numpy as np
import pytest

from tumorsyn.metrics import (FP_RATE_SETS, build_report, conventions, evaluate_case, froc_curve,
                              sensitivity_at_fp_rates, summarize, versions, volume_threshold_sweep)
from tumorsyn.metrics.report import render_markdown

SHAPE = (20, 20, 20)


def _cube(side, at=(2, 2, 2)):
    mask = np.zeros(SHAPE, bool)
    mask[tuple(slice(a, a + side) for a in at)] = True
    return mask


def _sweep_cases():
    # Spacing 1 x 1 x 2 mm: a voxel is 2 mm^3. Predicted volumes: 2*27 = 54, 2*8 = 16, 0 (positives);
    # 2*1 = 2 and 0 (tumour-free).
    empty = np.zeros(SHAPE, bool)
    cases = [(_cube(3), _cube(3)), (_cube(3), _cube(2)), (_cube(3), empty), (empty, _cube(1, (15, 15, 15))),
             (empty, empty)]
    return [evaluate_case(ref, pred, spacing_mm=(1, 1, 2), case_id=f"c{i}") for i, (ref, pred) in enumerate(cases)]


def test_volume_threshold_sweep_by_hand():
    sweep = volume_threshold_sweep(_sweep_cases(), (1, 2, 3, 16, 17, 54, 99_000))
    sens = [p["sensitivity"]["k"] for p in sweep["points"]]
    spec = [p["specificity"]["k"] for p in sweep["points"]]
    # Positives (54, 16, 0): >= 1, 2, 3, 16 -> 2; >= 17, 54 -> 1; >= 99000 -> 0.
    assert sens == [2, 2, 2, 2, 1, 1, 0] and all(p["sensitivity"]["n"] == 3 for p in sweep["points"])
    # Tumour-free (2, 0): negative when volume < T: T = 1, 2 -> 1 of 2; T >= 3 -> 2 of 2.
    assert spec == [1, 1, 2, 2, 2, 2, 2]
    # AUC of the volume: pairs (54|16|0) vs (2|0): 54 > both, 16 > both, 0 < 2 and 0 = 0 -> (2 + 2 + 0.5) / 6.
    assert sweep["auc"] == pytest.approx(4.5 / 6)
    assert sweep["points"][0]["sensitivity"]["ci95"][0] > 0  # Wilson intervals come with each point


def test_volume_sweep_is_reported_only_when_asked():
    results = _sweep_cases()
    assert "patient_volume_sweep" not in summarize(results)
    summary = summarize(results, volume_thresholds_mm3=(10, 100))
    conv = conventions(volume_thresholds_mm3=(10, 100))
    assert [p["threshold_mm3"] for p in summary["patient_volume_sweep"]["points"]] == [10, 100]
    assert conv["volume_sweep_mm3"] == [10.0, 100.0] and "volume_sweep_rule" in conv
    md = render_markdown(build_report(results, summary=summary, conventions=conv, versions=versions()))
    assert "## Patient level by predicted tumour volume" in md and "| 10 | 66.7 %" in md


def test_sensitivity_at_fixed_fp_rates_by_hand():
    # 4 lesions over 2 scans: detected at scores 0.9, 0.7, 0.3 (one missed); false positives 0.8, 0.6, 0.5, 0.2.
    curve = froc_curve([0.9, 0.7, 0.3, None], [0.8, 0.6, 0.5, 0.2], n_scans=2)
    # Points (FP/scan, sens): (0,0) (0,.25) (.5,.25) (.5,.5) (1,.5) (1.5,.5) (1.5,.75) (2,.75).
    luna = sensitivity_at_fp_rates(curve, FP_RATE_SETS["luna16"])
    assert luna["points"] == {"0.125": 0.25, "0.25": 0.25, "0.5": 0.5, "1": 0.5, "2": 0.75, "4": 0.75, "8": 0.75}
    assert luna["mean"] == pytest.approx((0.25 * 2 + 0.5 * 2 + 0.75 * 3) / 7)
    deep = sensitivity_at_fp_rates(curve, FP_RATE_SETS["deeplesion"])
    assert deep["points"] == {"0.5": 0.5, "1": 0.5, "2": 0.75, "4": 0.75, "8": 0.75, "16": 0.75}


def test_fp_rates_and_size_convention_are_recorded():
    conv = conventions(size_convention_name="radius", fp_rates=FP_RATE_SETS["deeplesion"], fp_rates_name="deeplesion")
    assert conv["size_convention"] == "radius" and conv["size_bins_mm"] == [5.0, 10.0, 15.0, 20.0]
    assert conv["size_bin_labels"][-1] == ">=20 mm" and "half-open" in conv["size_bin_rule"]
    assert conv["size_measure"] == "equivalent-sphere radius" and "SyntheticTumors" in conv["size_convention_rule"]
    assert conv["froc_fp_rates"] == "deeplesion" and conv["froc_fp_rates_per_scan"][-1] == 16.0
    default = conventions()
    assert default["size_convention"] == "max-diameter" and default["size_bin_labels"] == ["<10 mm", "10-20 mm", ">20 mm"]
    assert default["size_edge_tolerance_mm"] == 1e-6 and "picai_rule" not in default


def test_radius_bins_in_the_summary():
    # Lesions of 1, 125 and 1000 voxels at 1 mm: radii 0.62, 3.10, 6.20 mm -> <5, <5, 5-10.
    ref = _cube(1, (1, 1, 1)) | _cube(5, (4, 4, 4)) | _cube(10, (10, 10, 10))
    result = evaluate_case(ref, ref, spacing_mm=(1, 1, 1), size_convention="radius")
    rows = summarize([result], size_convention="radius")["lesion_sensitivity"]["by_size"]
    assert [(r["bin"], r["n"]) for r in rows] == [("<5 mm", 2), ("5-10 mm", 1), ("10-15 mm", 0), ("15-20 mm", 0),
                                                 (">=20 mm", 0)]


def test_reports_of_different_size_conventions_do_not_compare(tmp_path):
    from tumorsyn.errors import ConfigError
    from tumorsyn.metrics import compare_reports

    ref = _cube(5)
    reports = []
    for name, edges in (("max-diameter", (5, 10, 15, 20)), ("radius", None)):
        results = [evaluate_case(ref, ref, spacing_mm=(1, 1, 1), size_convention=name, bins_mm=edges)]
        conv = conventions(size_convention_name=name, bins_mm=edges)
        report = build_report(results, summary=summarize(results, size_convention=name, bins_mm=edges),
                              conventions=conv, versions=versions())
        reports.append({**report, "_path": str(tmp_path / name / "report.json")})
    assert reports[0]["conventions"]["size_bins_mm"] == reports[1]["conventions"]["size_bins_mm"]  # same edges ...
    with pytest.raises(ConfigError, match="size_convention: max-diameter vs radius"):  # ... different sizes
        compare_reports(*reports)
    old = {**reports[0], "conventions": {k: v for k, v in reports[0]["conventions"].items() if k != "size_convention"}}
    assert compare_reports(old, reports[0])  # a report from before the key compares as max-diameter
