"""The CPU demo on real scans, end to end: `tumorsyn segment experiment configs/segment/demo_cpu.yaml`.

Training sees only synthetic tumours in healthy livers (3D-IRCADb patient 7, the bundled
TotalSegmentator example); the test scan is 3D-IRCADb patient 1 with its seven real manual tumours.
The 3D-IRCADb scans are read from ../shared/data/real (skipped where absent) and every output goes
to ``tmp_path``, never into the repository. The test checks the pipeline and the report's content,
not the accuracy of a model trained for a few CPU steps.
"""
from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import REPO, real_path

DEMO = REPO / "configs" / "segment" / "demo_cpu.yaml"
ARMS = ["organ_only", "untrained", "synthetic_only"]
BINS = ["<10 mm", "10-20 mm", ">20 mm"]


@pytest.mark.real
@pytest.mark.slow
def test_cpu_demo_end_to_end(tmp_path):
    """One test (not a shared fixture) so that `pytest -n 2` never runs the experiment twice."""
    for patient in ("3Dircadb1.1", "3Dircadb1.7"):
        real_path("3dircadb1", patient, "ct.nii.gz")
    from tumorsyn.cli.main import main

    out = tmp_path / "demo"
    # The shipped settings but fewer steps (the full demo trains 300): the report is checked, not the accuracy.
    short = ["--set", "train.epochs=2", "--set", "train.steps_per_epoch=15", "--set", "train.checkpoint_every=10"]
    assert main(["segment", "experiment", str(DEMO), "--out", str(out), "--quiet", *short]) == 0
    report = json.loads((out / "report.json").read_text())
    _check_report(out, report)
    _check_training_saw_only_synthetic_tumours(out, report)


def _check_report(out, report) -> None:
    """Every arm, per-size-bin sensitivity and Dice on the seven real tumours, the baselines."""
    assert list(report["arms"]) == ARMS
    table = (out / "report.md").read_text()
    for name in ARMS:
        summary = report["arms"][name]["summary"]
        sens = summary["lesion_sensitivity"]
        assert sens["overall"]["n"] == 7, name  # patient 1's seven real tumours, nothing else
        assert [row["bin"] for row in sens["by_size"]] == BINS
        assert sum(row["n"] for row in sens["by_size"]) == 7
        for row in sens["by_size"]:
            assert 0 <= row["k"] <= row["n"]
            assert (row["value"] is None) == (row["n"] == 0)
        dice = summary["segmentation"]["dice_per_case"]
        assert dice["n"] == 1 and 0.0 <= dice["mean"] <= 1.0
        assert f"| {name} |" in table
        lesions = [r for r in csv.DictReader(line for line in (out / "arms" / name / "report" / "lesions.csv").open()
                                             if not line.startswith("#")) if r["kind"] == "reference"]
        assert len(lesions) == 7 and {r["size_bin"] for r in lesions} <= set(BINS)
    # The organ-only baseline covers every lesion; its Dice is the tumours' share of the liver.
    baseline = report["arms"]["organ_only"]["summary"]
    assert baseline["lesion_sensitivity"]["overall"]["k"] == 7
    assert 0.0 < baseline["segmentation"]["dice_per_case"]["mean"] < 0.5
    assert (out / "compare" / "organ_only_vs_synthetic_only" / "compare.json").is_file()


def _check_training_saw_only_synthetic_tumours(out, report) -> None:
    config = report["arms"]["synthetic_only"]["config"]
    assert config["data"]["real"]["weight"] == 0.0 and not config["data"]["real"]["cases"]
    assert config["synthesis"]["enabled"] and config["synthesis"]["apply_to"] == ["healthy"]
    run = out / "arms" / "synthetic_only" / "run"
    steps = (run / "steps.csv").read_text().splitlines()[1:]
    assert len(steps) == config["train"]["epochs"] * config["train"]["steps_per_epoch"] > 0
    assert report["arms"]["untrained"]["config"]["train"]["epochs"] == 0
    assert (run / "model" / "model.safetensors").is_file()
    assert not str(out.resolve()).startswith(str(REPO.resolve()))  # 3D-IRCADb-derived files stay outside
