"""`tumorsyn evaluate` end to end on small NIfTI phantoms written to tmp_path."""
import csv
import json

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.cli.main import main

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def _save(path, array, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _box(mask, lo, hi, value=1):
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return mask


def _dataset(tmp_path, *, probabilities=False):
    """Three cases: two tumours (one found), one tumour (found, plus a false positive), tumour-free."""
    shape = (48, 48, 16)
    ref, pred = {}, {}
    ref["c1"] = _box(_box(np.zeros(shape, np.uint8), (5, 5, 5), (15, 15, 10)), (30, 30, 5), (34, 34, 7))
    pred["c1"] = _box(np.zeros(shape, np.float32), (6, 6, 5), (15, 15, 10), 0.9)
    ref["c2"] = _box(np.zeros(shape, np.uint8), (10, 10, 4), (20, 20, 8))
    pred["c2"] = _box(_box(np.zeros(shape, np.float32), (10, 10, 4), (20, 20, 8), 0.8), (40, 40, 2), (44, 44, 4), 0.6)
    ref["c3"] = np.zeros(shape, np.uint8)
    pred["c3"] = np.zeros(shape, np.float32)
    for cid in ref:
        _save(tmp_path / "ref" / f"{cid}.nii.gz", ref[cid])
        p = pred[cid] if probabilities else (pred[cid] >= 0.5).astype(np.uint8)
        _save(tmp_path / "pred" / f"{cid}_0000.nii.gz", p)
    return tmp_path / "ref", tmp_path / "pred"


def _run(*args):
    return main(["evaluate", *map(str, args)])


def test_report_files_and_figures(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    out = tmp_path / "report"
    assert _run("--pred", pred, "--ref", ref, "--out", out, "--workers", 1) == 0
    assert "3 scans, 3 lesions" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "lesions.csv", "sensitivity_by_size.png"}
    report = json.loads((out / "report.json").read_text())
    s = report["summary"]
    assert (s["lesion_sensitivity"]["overall"]["k"], s["lesion_sensitivity"]["overall"]["n"]) == (2, 3)
    assert s["false_positives"]["total"] == 1 and s["false_positives"]["per_scan"] == pytest.approx(1 / 3)
    assert s["patient"]["sensitivity"]["value"] == 1.0 and s["patient"]["specificity"]["value"] == 1.0
    assert s["n_tumour_free"] == 1 and s["segmentation"]["dice_per_case"]["n"] == 2
    assert s["froc"] is None
    c1 = next(c for c in report["cases"] if c["case_id"] == "c1")
    assert c1["dice"] == pytest.approx(2 * 405 / (500 + 32 + 405))
    # Conventions, versions and checksums are recorded.
    conv = report["conventions"]
    assert conv["connectivity"] == 26 and conv["size_bins_mm"] == [10, 20] and conv["match"] == "any"
    assert conv["surface_dice_tolerance_mm"] == 2.0 and conv["min_volume_mm3"] == 0.0
    assert report["versions"]["numpy"] == np.__version__
    case_inputs = report["inputs"]["cases"][0]
    assert len(case_inputs["reference"]["sha256"]) == 64 and case_inputs["prediction"]["path"].endswith("c1_0000.nii.gz")
    # lesions.csv: conventions as comments, then one row per reference lesion and predicted component.
    lines = (out / "lesions.csv").read_text().splitlines()
    assert lines[0].startswith("# ") and json.loads(lines[1][len("# conventions: "):])["connectivity"] == 26
    rows = list(csv.DictReader(lines[2:]))
    assert sorted((r["case_id"], r["kind"], r["status"]) for r in rows) == [
        ("c1", "predicted", "true_positive"), ("c1", "reference", "detected"), ("c1", "reference", "missed"),
        ("c2", "predicted", "false_positive"), ("c2", "predicted", "true_positive"), ("c2", "reference", "detected")]
    # Sizes in mm use the file's spacing (0.8 x 0.8 x 2 mm).
    big = next(r for r in rows if r["case_id"] == "c2" and r["kind"] == "reference")
    assert float(big["volume_mm3"]) == pytest.approx(400 * 0.8 * 0.8 * 2.0)
    md = (out / "report.md").read_text()
    assert "| 10-20 mm |" in md and "## Conventions" in md and "26-connected" in md


def test_probability_maps_give_froc_and_parallel_workers_agree(tmp_path):
    ref, pred = _dataset(tmp_path, probabilities=True)
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r1", "--workers", 1, "--quiet") == 0
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r2", "--workers", 2, "--quiet", "--no-plots") == 0
    r1 = json.loads((tmp_path / "r1" / "report.json").read_text())
    r2 = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert (tmp_path / "r1" / "froc.png").is_file() and not (tmp_path / "r2" / "froc.png").exists()
    froc = r1["summary"]["froc"]
    assert froc["thresholds"][1:] == pytest.approx([0.9, 0.8, 0.6])
    assert froc["sensitivity"] == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3])
    assert froc["fp_per_scan"] == pytest.approx([0, 0, 0, 1 / 3])
    assert r1["summary"] == r2["summary"] and r1["lesions"] == r2["lesions"]


def test_organ_mask_and_strict_match(tmp_path):
    ref, pred = _dataset(tmp_path)
    organ = tmp_path / "organ"
    for cid in ("c1", "c2", "c3"):
        _save(organ / f"{cid}.nii.gz", _box(np.zeros((48, 48, 16), np.uint8), (0, 0, 0), (36, 36, 16), 5))
    out = tmp_path / "r"
    assert _run("--pred", pred, "--ref", ref, "--organ-mask", organ, "--organ-label", "5", "--out", out,
                "--match", "iou0.5", "--quiet", "--workers", 1) == 0
    report = json.loads((out / "report.json").read_text())
    # The false positive at (40..44) lies outside the organ: gone.
    assert report["summary"]["false_positives"]["total"] == 0
    assert report["conventions"]["organ_restricted"] and report["conventions"]["match"] == "iou0.5"
    assert report["conventions"]["organ_labels"] == [5]
    # c1: big lesion IoU 405/500 = 0.81 > 0.5, small one missed; c2: IoU 1.
    assert report["summary"]["lesion_sensitivity"]["overall"]["k"] == 2


def test_tumour_label_and_csv_inputs(tmp_path):
    shape = (30, 30, 10)
    labels = _box(_box(np.zeros(shape, np.uint8), (2, 2, 2), (28, 28, 9), 1), (5, 5, 3), (12, 12, 6), 2)
    _save(tmp_path / "a" / "liver_1.nii.gz", labels)
    _save(tmp_path / "b" / "whatever.nii.gz", labels)
    (tmp_path / "pred.csv").write_text("case_id,path\nliver_1,b/whatever.nii.gz\n")
    out = tmp_path / "r"
    assert _run("--pred", tmp_path / "pred.csv", "--ref", tmp_path / "a", "--labels", "decathlon", "--out", out,
                "--quiet", "--no-plots") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["conventions"]["tumour_labels"] == [2]
    lesion = next(row for row in report["lesions"] if row["kind"] == "reference")
    assert lesion["voxels"] == 7 * 7 * 3 and report["cases"][0]["dice"] == 1.0
    # --tumor-label 1 makes the organ label the "tumour": one big lesion (label 2 is not tumour).
    assert _run("--pred", tmp_path / "pred.csv", "--ref", tmp_path / "a", "--tumor-label", "1", "--out", out,
                "--quiet", "--no-plots") == 0
    lesion = next(row for row in json.loads((out / "report.json").read_text())["lesions"] if row["kind"] == "reference")
    assert lesion["voxels"] == 26 * 26 * 7 - 7 * 7 * 3


def _error(capsys):
    return capsys.readouterr().err.strip()


def test_grid_mismatch_names_the_case(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    _save(pred / "c2_0000.nii.gz", np.zeros((48, 48, 15), np.uint8))
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", "--workers", 1) == 1
    err = _error(capsys)
    assert err.count("\n") == 0 and "case c2" in err and "c2_0000.nii.gz" in err and "resample" in err
    assert not (tmp_path / "r" / "report.json").exists()
    _save(pred / "c2_0000.nii.gz", np.zeros((48, 48, 16), np.uint8), affine=np.diag([0.8, 0.8, 2.5, 1.0]))
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", "--workers", 1) == 1
    assert "case c2" in _error(capsys)


def test_missing_partner_and_unreadable_file(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    (pred / "c3_0000.nii.gz").unlink()
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r") == 1
    err = _error(capsys)
    assert "case c3" in err and "no prediction" in err
    (pred / "c3_0000.nii.gz").write_bytes(b"not a nifti at all")
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", "--workers", 2) == 1
    err = _error(capsys)
    assert "case c3" in err and "c3_0000.nii.gz" in err and err.count("\n") == 0
    _save(pred / "c3_0000.nii.gz", np.zeros((48, 48, 16), np.uint8))
    _save(pred / "extra.nii.gz", np.zeros((48, 48, 16), np.uint8))
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r") == 1
    assert "case extra" in _error(capsys)


def test_bad_prediction_values(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    _save(pred / "c3_0000.nii.gz", np.full((48, 48, 16), 1.5, np.float32) + np.linspace(0, 0.1, 16, dtype=np.float32))
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", "--workers", 1) == 1
    assert "probability map in [0, 1]" in _error(capsys)


def test_usage_errors_exit_2(tmp_path, capsys):
    for args in (["--pred", "x"], ["--bins", "20,10"], ["--match", "overlap"], ["--min-volume-mm3", "-1"],
                 ["--compare", "a", "b", "--pred", "x"], ["--labels", "decathlon", "--tumor-label", "2"]):
        with pytest.raises(SystemExit) as exc:
            _run(*args)
        assert exc.value.code == 2
    capsys.readouterr()


def test_compare_two_reports(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "model_a", "--quiet", "--workers", 1) == 0
    # Model B also finds c1's small lesion.
    better = tmp_path / "pred_b"
    for file in pred.iterdir():
        img = nib.load(str(file))
        data = np.asarray(img.dataobj).copy()
        if file.name.startswith("c1"):
            _box(data, (30, 30, 5), (34, 34, 7))
        _save(better / file.name, data)
    assert _run("--pred", better, "--ref", ref, "--out", tmp_path / "model_b", "--quiet", "--workers", 1) == 0
    capsys.readouterr()
    assert _run("--compare", tmp_path / "model_a", tmp_path / "model_b" / "report.json", "--out", tmp_path / "cmp") == 0
    printed = capsys.readouterr().out
    assert "model_a" in printed and "McNemar" in printed
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["overall"]["mcnemar"]["only_a"] == 0 and cmp["overall"]["mcnemar"]["only_b"] == 1
    assert cmp["overall"]["difference_b_minus_a"] == pytest.approx(1 / 3)
    small = next(row for row in cmp["by_size"] if row["bin"] == "<10 mm")
    assert (small["a"]["k"], small["b"]["k"], small["a"]["n"]) == (0, 1, 1)
    assert (tmp_path / "cmp" / "compare_sensitivity.png").is_file()
    # Different conventions cannot be compared.
    assert _run("--pred", better, "--ref", ref, "--out", tmp_path / "model_c", "--match", "iou0.5", "--quiet",
                "--workers", 1) == 0
    assert _run("--compare", tmp_path / "model_a", tmp_path / "model_c") == 1
    assert "different conventions" in _error(capsys)
    assert _run("--compare", tmp_path / "model_a", tmp_path / "nowhere") == 1
    assert "report not found" in _error(capsys)
    # A different reference cannot be paired lesion by lesion.
    other_ref = tmp_path / "ref_other"
    for file in ref.iterdir():
        data = np.asarray(nib.load(str(file)).dataobj).copy()
        if file.name.startswith("c3"):
            _box(data, (2, 2, 2), (5, 5, 5))
        _save(other_ref / file.name, data)
    assert _run("--pred", better, "--ref", other_ref, "--out", tmp_path / "model_d", "--quiet", "--workers", 1) == 0
    assert _run("--compare", tmp_path / "model_a", tmp_path / "model_d") == 1
    assert "case c3: the reference files differ" in _error(capsys)


def test_probability_a_float32_step_above_one_is_a_probability(tmp_path, capsys):
    """Regression: 1.0000001 was refused as 'non-integer values in 0..1', hiding the real maximum."""
    ref, pred = _dataset(tmp_path, probabilities=True)
    prob = np.zeros((48, 48, 16), np.float32)
    prob[10:20, 10:20, 4:8] = np.float32(1.0000001)  # float32 rounding of a softmax: 1 + 2**-23
    _save(pred / "c2_0000.nii.gz", prob)
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", "--workers", 1, "--no-plots") == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    c2 = [row for row in report["lesions"] if row["case_id"] == "c2" and row["kind"] == "predicted"]
    assert [row["score"] for row in c2] == [1.0]  # clipped to 1
    capsys.readouterr()
    prob[0, 0, 0] = 1.001  # a real overshoot is refused, and the message says how far
    _save(pred / "c2_0000.nii.gz", prob)
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r2", "--workers", 1) == 1
    err = _error(capsys)
    assert "from 0 to 1.00100005" in err and "at most 1.00000024" in err and "c2_0000.nii.gz" in err


def test_picai_convention_end_to_end(tmp_path, capsys):
    pytest.importorskip("picai_eval", reason="picai_eval is not installed (pip install tumorsyn[picai])")
    ref, pred = _dataset(tmp_path, probabilities=True)  # each component one value: detection maps
    out = tmp_path / "picai"
    assert _run("--pred", pred, "--ref", ref, "--out", out, "--workers", 1, "--match", "picai", "--no-plots") == 0
    assert "picai: AP " in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    picai = report["summary"]["picai"]
    # Entries: c1 (1, 0.9), (1, 0) missed; c2 (1, 0.8), (0, 0.6) -> precision 1, 1, 2/3 at recall 1/3, 2/3, 2/3: AP 2/3.
    assert picai["AP"] == pytest.approx(2 / 3) and picai["num_lesions"] == 3
    # Case scores 0.9, 0.8 (tumour) vs 0 (tumour-free): AUROC 1.
    assert picai["AUROC"] == 1.0 and picai["score"] == pytest.approx(5 / 6)
    assert report["conventions"]["match"] == "picai" and "picai_rule" in report["conventions"]
    assert {c["case_id"]: c["case_score"] for c in report["cases"]} == pytest.approx({"c1": 0.9, "c2": 0.8, "c3": 0.0})
    assert "## picai_eval figures" in (out / "report.md").read_text()
    # A softmax map is refused (one line, the file named) unless --picai-extract.
    soft = np.zeros((48, 48, 16), np.float32)
    soft[10:20, 10:20, 4:8] = np.linspace(0.3, 0.9, 4, dtype=np.float32)
    _save(pred / "c2_0000.nii.gz", soft)
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "p2", "--workers", 1, "--match", "picai") == 1
    err = _error(capsys)
    assert "case c2" in err and "c2_0000.nii.gz" in err and "not a detection map" in err and err.count("\n") == 0
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "p3", "--workers", 1, "--match", "picai",
                "--picai-extract", "--no-plots") == 0


def test_published_conventions_from_the_command_line(tmp_path, capsys):
    ref, pred = _dataset(tmp_path)
    out = tmp_path / "small"
    assert _run("--pred", pred, "--ref", ref, "--out", out, "--workers", 1, "--size-convention", "radius",
                "--fp-rates", "deeplesion", "--volume-sweep", "--no-plots") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["conventions"]["size_convention"] == "radius" and report["conventions"]["froc_fp_rates"] == "deeplesion"
    assert [r["bin"] for r in report["summary"]["lesion_sensitivity"]["by_size"]][-1] == ">=20 mm"
    assert report["conventions"]["volume_sweep_mm3"][0] == 1.0 and report["conventions"]["volume_sweep_mm3"][-1] == 99000.0
    assert "| size (equivalent-sphere radius) |" in (out / "report.md").read_text()
    assert _run("--pred", pred, "--ref", ref, "--out", tmp_path / "v", "--workers", 1, "--volume-sweep", "5,50",
                "--fp-rates", "1,2", "--no-plots") == 0
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert [p["threshold_mm3"] for p in report["summary"]["patient_volume_sweep"]["points"]] == [5.0, 50.0]
    assert report["conventions"]["froc_fp_rates_per_scan"] == [1.0, 2.0]


@pytest.mark.parametrize("args, message", [
    (["--picai-extract"], "--picai-extract goes with --match picai"),
    (["--match", "picai", "--min-volume-mm3", "5"], "--min-volume-mm3 does not go with --match picai"),
    (["--fp-rates", "luna"], "is neither luna16 nor deeplesion nor a list"),
    (["--size-convention", "volume"], "invalid choice"),
])
def test_new_usage_errors(tmp_path, capsys, args, message):
    ref, pred = _dataset(tmp_path)
    with pytest.raises(SystemExit) as exc:
        _run("--pred", pred, "--ref", ref, "--out", tmp_path / "r", *args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_docs_name_every_option_of_help():
    """docs/evaluate.md's synopsis keeps step with `tumorsyn evaluate --help`."""
    import argparse
    from pathlib import Path

    from tumorsyn.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    text = (Path(__file__).resolve().parents[2] / "docs" / "evaluate.md").read_text()
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert not sorted(o for o in options if o not in text)
