"""The fold experiment of issue 17: fold rules, design checks, arms x seeds x folds, report, resume, configs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segment.config import load_config
from segment.experiment import run_experiment
from segment.fold_experiment import plan_runs
from segment.folds import Fold, build_folds, check_design, load_folds, slab_lesion_folds
from segment_helpers import tiny_config, write_case
from tests.conftest import REAL, REPO

SPACING = (1.5, 1.5, 1.5)
# Tumour boxes along z (first, last slice) of the slab phantom, and their folds for the gap 29-31.
TUMOURS_Z = {(5, 8): "A", (20, 24): "A", (28, 31): "untested", (45, 49): "B", (52, 54): "B"}
GAP = [29, 31]


def _slab_phantom(folder: Path) -> dict:
    """A 40 x 40 x 60 scan: organ everywhere inside a box (40 HU in air), five 4-voxel-wide tumours at TUMOURS_Z."""
    rng = np.random.default_rng(0)
    shape = (40, 40, 60)
    ct = np.full(shape, -900.0) + 10 * rng.standard_normal(shape)  # air around a soft-tissue box
    labels = np.zeros(shape, np.uint8)
    labels[4:36, 4:36, 2:58] = 1
    ct[labels == 1] += 940.0
    ct = ct.astype(np.int16)
    for i, (z0, z1) in enumerate(TUMOURS_Z):
        x = 8 + 6 * i
        labels[x:x + 4, 10:14, z0:z1 + 1] = 2
        ct[x:x + 4, 10:14, z0:z1 + 1] -= 50
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [5.0, -7.0, 11.0]
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, affine), str(folder / "scan_ct.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / "scan_labels.nii.gz"))
    return {"id": "scan", "ct": str(folder / "scan_ct.nii.gz"), "labels": str(folder / "scan_labels.nii.gz")}


def _slab_config(tmp_path: Path, **experiment) -> dict:
    data = tiny_config(tmp_path, steps=1)
    data["data"]["real"] = {"weight": 1.0, "label_preset": "decathlon"}
    data["experiment"] = {"folds": {"kind": "slabs", "scan": _slab_phantom(tmp_path / "slab"), "axis": 2, "gap": GAP,
                                    "exclude_margin_voxels": 2},
                          "arms": {"real_only": {"overrides": {"synthesis": {"enabled": False}}},
                                   "synthetic_only": {"overrides": {"data": {"real": {"weight": 0.0}}}},
                                   "organ_only": {"baseline": "organ_only"}},
                          "seeds": [0], "comparisons": [["real_only", "synthetic_only"]],
                          "claim": {"real": "real_only", "synthetic": "synthetic_only"},
                          "caveats": ["a phantom"], **experiment}
    return data


def _read(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_slab_rule_assigns_each_tumour_by_its_z_extent():
    mask = np.zeros((40, 40, 60), bool)
    for i, (z0, z1) in enumerate(TUMOURS_Z):
        mask[8 + 6 * i:12 + 6 * i, 10:14, z0:z1 + 1] = True
    _, count, folds = slab_lesion_folds(mask, axis=2, gap=GAP)
    assert count == 5
    assert folds == list(TUMOURS_Z.values())


def test_slab_folds_keep_test_tumours_out_of_training_and_score_each_once(tmp_path):
    config = load_config(None, data=_slab_config(tmp_path))
    out = Path(config["output_dir"])
    folds = build_folds(config, out)
    assert [f.name for f in folds] == ["A", "B"] and [f.tested_lesions for f in folds] == [2, 2]
    rules = check_design(folds)
    assert rules["folds_disjoint"] and rules["no_test_tumour_in_training"] and rules["each_lesion_tested_once"]
    assert rules["tested_tumours_inside_evaluation_mask"] and rules["tested_lesions_per_fold"] == {"A": 2, "B": 2}

    fold_b = folds[1]  # tested on slab B (z 32-59), trained on slab A (z 0-28)
    train = nib.load(fold_b.train_cases[0]["labels"])
    assert train.shape == (40, 40, GAP[0])
    assert np.allclose(train.affine[:3, 3], [5.0, -7.0, 11.0])  # slab A starts at z 0
    train_labels = np.asanyarray(train.dataobj)
    # Tumours of slab A and the part of the gap-crossing one before the gap: nothing of slab B.
    assert (train_labels == 2).sum() == 16 * 4 + 16 * 5 + 16 * 1

    test = fold_b.test[0]
    evaluation, reference = _read(test.evaluation_mask) != 0, _read(test.reference) != 0
    assert not evaluation[:, :, :GAP[1] + 1].any()  # the gap and slab A are never scored in fold B
    assert reference.sum() == 16 * 5 + 16 * 3 and not reference[:, :, :45].any()
    # The untested tumour (z 28-31) grown by 2 voxels is left out of fold A's evaluation mask too.
    evaluation_a = _read(folds[0].test[0].evaluation_mask) != 0
    assert not evaluation_a[8 + 12 - 2:8 + 12 + 4 + 2, 10 - 2:14 + 2, 26:29].any()
    assert evaluation_a[20:30, 20:30, 10:20].all()
    assert load_folds(out)[1].test[0] == test


def test_design_check_catches_a_training_copy_holding_a_test_tumour(tmp_path):
    config = load_config(None, data=_slab_config(tmp_path))
    folds = build_folds(config, Path(config["output_dir"]))
    whole_scan = {**folds[1].train_cases[0], "ct": config["experiment"]["folds"]["scan"]["ct"],
                  "labels": config["experiment"]["folds"]["scan"]["labels"]}
    leaky = [folds[0], Fold(name="B", train_cases=[whole_scan], test=folds[1].test, tested_lesions=2,
                            facts=folds[1].facts)]
    rules = check_design(leaky)
    assert rules["no_test_tumour_in_training"] is False and rules["training_copies_holding_a_test_tumour"] == 1
    overlapping = [folds[0], Fold(name="B", train_cases=folds[1].train_cases, test=folds[0].test, tested_lesions=2,
                                  facts=folds[1].facts)]
    assert check_design(overlapping)["each_lesion_tested_once"] is False


def test_fold_experiment_end_to_end_report_and_resume(tmp_path):
    """The CI-sized run of the design: arms x seeds x folds, every rule recorded, each lesion tested once per arm."""
    config = load_config(None, data=_slab_config(tmp_path))
    runs = plan_runs(config, build_folds(config, Path(config["output_dir"])))
    # real_only trains per fold (it sees real data); synthetic_only once per seed, scored on both folds.
    assert [(r["arm"], r["key"]) for r in runs] == [("real_only", "A"), ("real_only", "B"), ("synthetic_only", "shared")]
    assert runs[0]["config"]["data"]["real"]["cases"][0]["id"] == "scan_slabB"
    assert runs[2]["config"]["data"]["real"]["cases"] == []

    out = run_experiment(config, quiet=True)
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "tumorsyn.segment.experiment/2"
    assert all(report["design"][rule] for rule in ("folds_disjoint", "no_test_tumour_in_training",
                                                    "each_lesion_tested_once", "tested_tumours_inside_evaluation_mask"))
    assert set(report["arms"]) == {f"{a}|{s}|{c}" for a, s in (("real_only", 0), ("synthetic_only", 0), ("organ_only", "-"))
                                   for c in ("max-diameter", "diameter")}
    for summary in (v["summary"] for v in report["arms"].values()):
        assert summary["n_lesions"] == 4 and summary["n_cases"] == 2  # each tested tumour exactly once
    assert report["arms"]["organ_only|-|max-diameter"]["summary"]["lesion_sensitivity"]["overall"]["k"] == 4
    assert set(report["comparisons"]) == {"real_only|synthetic_only|0"}
    assert report["fixed"]["select_on"] == "sensitivity" and report["fixed"]["seeds"] == [0]
    text = (out / "report.md").read_text()
    for heading in ("## The published claim, as measured here", "## Per arm and seed, sizes by max-diameter",
                    "## Per arm and seed, sizes by diameter", "## Seed spread", "## Paired comparisons"):
        assert heading in text
    assert "- a phantom" in text and "Departures from the pre-registered design: none." in text
    for name in ("sensitivity_by_size_max-diameter.png", "sensitivity_by_size_diameter.png", "preview_real_only.png",
                 "preview_synthetic_only.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    lesions = list(csv.DictReader(line for line in (out / "arms" / "real_only" / "seed0" / "report_max-diameter" /
                                                    "lesions.csv").open() if not line.startswith("#")))
    assert sorted(r["case_id"] for r in lesions if r["kind"] == "reference") == ["scan_A"] * 2 + ["scan_B"] * 2

    # Resumed: nothing is trained or predicted again; the reports are rebuilt alike.
    timings = (out / "timings.json").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "arms").rglob("pred/*_tumor.nii.gz")}
    run_experiment(config, quiet=True)
    assert (out / "timings.json").read_text() == timings
    assert {p: p.stat().st_mtime_ns for p in (out / "arms").rglob("pred/*_tumor.nii.gz")} == stamps
    assert json.loads((out / "report.json").read_text())["arms"].keys() == report["arms"].keys()


def test_bad_fold_settings_are_one_line_errors(tmp_path):
    from tumorsyn.errors import ConfigError

    data = _slab_config(tmp_path)
    data["experiment"]["folds"]["gap"] = [40, 30]
    with pytest.raises(ConfigError, match=r"experiment.folds.gap must be \[first, last\]"):
        load_config(None, data=data)
    data = _slab_config(tmp_path)
    data["experiment"]["comparisons"] = [["real_only", "nope"]]
    with pytest.raises(ConfigError, match="experiment.comparisons entry .* must name two arms"):
        load_config(None, data=data)
    data = _slab_config(tmp_path)
    data["experiment"]["folds"]["gap"] = [29, 59]
    with pytest.raises(ConfigError, match="must lie inside the scan's 60 slices"):
        build_folds(load_config(None, data=data), tmp_path / "out")


def _stand_in_dataset(folder: Path, n: int, *, label_values=(1, 2)) -> str:
    """A CSV dataset of ``n`` phantom scans with one tumour each (a stand-in for a user's real dataset)."""
    rows = [write_case(folder, f"p{i}", seed=30 + i, tumor=True, label_values=label_values) for i in range(n)]
    path = folder / "dataset.csv"
    path.write_text("ct,labels,case_id\n" + "".join(f"{r['ct']},{r['labels']},p{i}\n" for i, r in enumerate(rows)))
    return str(path)


def _healthy_dataset(folder: Path) -> str:
    rows = [write_case(folder, f"h{i}", seed=50 + i) for i in range(2)]
    path = folder / "healthy.csv"
    path.write_text("ct,labels\n" + "".join(f"{r['ct']},{r['labels']}\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("name,preset", [("experiment_msd_task03_liver", "decathlon"),
                                         ("experiment_msd_task07_pancreas", "decathlon"),
                                         ("experiment_kidney_tumour", "kits")])
def test_gpu_experiment_configs_fold_a_stand_in_dataset_by_patient(tmp_path, name, preset):
    """The GPU configs as shipped, given a tiny stand-in dataset: patient folds, each scan tested once."""
    path = REPO / "configs" / "segment" / f"{name}.yaml"
    config = load_config(path, [f"output_dir={tmp_path / 'run'}", f"data.real.dataset={_stand_in_dataset(tmp_path / 'real', 6)}",
                                f"data.healthy.dataset={_healthy_dataset(tmp_path / 'healthy')}",
                                "data.healthy.label_preset=binary", "experiment.folds.k=3"])
    assert config["data"]["real"]["label_preset"] == preset and config["experiment"]["folds"]["kind"] == "patients"
    assert config["train"]["select_on"] == "last" and config["experiment"]["seeds"] == [0, 1, 2]
    folds = build_folds(config, tmp_path / "run")
    tested = sorted(t.case_id for f in folds for t in f.test)
    assert tested == [f"p{i}" for i in range(6)] and all(len(f.test) == 2 for f in folds)
    for fold in folds:
        assert not {c["id"] for c in fold.train_cases} & {t.case_id for t in fold.test}
    assert all(v for k, v in check_design(folds).items() if isinstance(v, bool))
    runs = plan_runs(config, folds)
    # real_only and mixed: 3 folds x 3 seeds each; synthetic_only and untrained: once per seed.
    assert len(runs) == 2 * 9 + 2 * 3


def test_gpu_liver_config_runs_end_to_end_on_a_stand_in_dataset(tmp_path):
    """The MSD liver experiment config, shrunk for the CPU (network size, patch, steps, one seed), runs to its report."""
    path = REPO / "configs" / "segment" / "experiment_msd_task03_liver.yaml"
    config = load_config(path, [
        f"output_dir={tmp_path / 'run'}", f"data.real.dataset={_stand_in_dataset(tmp_path / 'real', 4)}",
        f"data.healthy.dataset={_healthy_dataset(tmp_path / 'healthy')}", "data.healthy.label_preset=binary",
        "experiment.folds.k=2", "experiment.seeds=[0]", "data.spacing_mm=[3.0, 3.0, 3.0]", "data.roi_size=[64, 64, 64]",
        "data.workers=0", "data.batch_size=1", "network.kwargs={feature_size: 12, depths: [1, 1, 1, 1], num_heads: [1, 1, 1, 1]}",
        "train.epochs=1", "train.steps_per_epoch=1", "train.mixed_precision=no", "train.warmup_steps=0",
        "train.progress=false", "predict.sw_batch_size=1"])
    out = run_experiment(config, quiet=True)
    report = json.loads((out / "report.json").read_text())
    assert report["folds"]["fold0"]["kind"] == "patients"
    assert report["arms"]["real_only|0|max-diameter"]["summary"]["n_lesions"] == 4
    assert "## The published claim, as measured here" in (out / "report.md").read_text()


@pytest.mark.real
def test_real_small_tumours_folds_match_the_preregistered_design(tmp_path):
    """The LiTS-117 slab split gives the counts docs/experiment.md states: 37 + 27 tested, 6 untested."""
    if not (REAL / "lits117" / "label.nii.gz").exists():
        pytest.skip(f"real data not present: {REAL / 'lits117'} (see ../shared/data/README.md)")
    config = load_config(REPO / "configs" / "segment" / "real_small_tumours_cpu.yaml", [f"output_dir={tmp_path / 'run'}"])
    folds = build_folds(config, tmp_path / "run")
    assert [(f.name, f.tested_lesions) for f in folds] == [("A", 37), ("B", 27)]
    lesions = json.loads((tmp_path / "run" / "folds" / "lesions.json").read_text())["lesions"]
    assert len(lesions) == 70 and sum(les["fold"] == "untested" for les in lesions) == 6
    small = [les for les in lesions if les["fold"] != "untested" and les["max_diameter_mm"] < 20]
    assert len(small) == 55
    by_bin = [sum(lo <= les["max_diameter_mm"] < hi for les in lesions if les["fold"] != "untested")
              for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 1e9))]
    assert by_bin == [4, 22, 29, 9]
    rules = check_design(folds)
    assert all(rules[k] for k in ("folds_disjoint", "no_test_tumour_in_training", "each_lesion_tested_once",
                                  "tested_tumours_inside_evaluation_mask"))
    runs = plan_runs(config, folds)
    assert len(runs) == 15 + 3  # 6 real-only, 6 mixed, 3 synthetic-only, 3 untrained (no training steps)


@pytest.mark.real
@pytest.mark.slow
def test_real_small_tumours_ci_version_runs_the_design(tmp_path):
    """The small version of the pre-registered design (3 steps, one seed) on the real scans: structure and rules."""
    if not (REAL / "lits117" / "label.nii.gz").exists() or not (REAL / "3dircadb1").exists():
        pytest.skip(f"real data not present: {REAL} (see ../shared/data/README.md)")
    config = load_config(REPO / "configs" / "segment" / "real_small_tumours_cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", "train.epochs=1", "train.steps_per_epoch=3", "train.checkpoint_every=3",
        "experiment.seeds=[0]", "train.progress=false"])
    out = run_experiment(config, quiet=True)
    report = json.loads((out / "report.json").read_text())
    assert report["design"]["tested_lesions_per_fold"] == {"A": 37, "B": 27}
    assert all(report["design"][k] for k in ("folds_disjoint", "no_test_tumour_in_training", "each_lesion_tested_once"))
    for arm in ("real_only", "synthetic_only", "mixed", "untrained"):
        assert report["arms"][f"{arm}|0|max-diameter"]["summary"]["n_lesions"] == 64
        assert {k.split("|")[2] for k in report["further"] if k.startswith(f"{arm}|")} <= {"A", "B", "shared"}
    assert report["arms"]["organ_only|-|max-diameter"]["summary"]["lesion_sensitivity"]["overall"]["k"] == 64
    assert len(report["comparisons"]) == 3
    text = (out / "report.md").read_text()
    assert "One small-tumour scan" in text and "docs/experiment.md" in text


@pytest.mark.slow
def test_fold_experiment_killed_mid_run_resumes_to_the_same_report(tmp_path):
    """kill -9 during the second training run, then the same command: the report equals an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    data = _slab_config(tmp_path)
    data["train"].update(steps_per_epoch=6, checkpoint_every=1)
    data.pop("output_dir")
    config_path = tmp_path / "experiment.yaml"
    config_path.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "tumorsyn", "segment", "experiment", str(config_path), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second = killed / "arms" / "real_only" / "seed0" / "B" / "run" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (second.is_dir() and any(second.glob("step_*"))) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "report.json").exists()
    for out in (killed, tmp_path / "whole"):
        done = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-1000:]

    def summaries(out: Path) -> dict:
        report = json.loads((out / "report.json").read_text())
        return {key: value["summary"] for key, value in report["arms"].items()}
    assert summaries(killed) == summaries(tmp_path / "whole")
    # The interrupted training run itself ended with the same weights as the uninterrupted one.
    weights = [sorted((out / "arms" / "real_only" / "seed0" / "B" / "run" / "model").glob("*.safetensors"))
               for out in (killed, tmp_path / "whole")]
    assert weights[0] and [p.read_bytes() for p in weights[0]] == [p.read_bytes() for p in weights[1]]


@pytest.mark.slow
def test_fold_experiment_under_two_processes_writes_one_report(tmp_path):
    """Data-parallel launch (torch.distributed.run, as accelerate launch does; gloo on the CPU): every process
    trains, the main process alone writes folds, predictions and the report, which equals a one-process run's."""
    import os
    import subprocess
    import sys

    import yaml

    data = _slab_config(tmp_path)
    data.pop("output_dir")
    config_path = tmp_path / "experiment.yaml"
    config_path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
              "-m", "tumorsyn", "segment", "experiment", str(config_path), "--quiet", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.count("# Real-vs-synthetic experiment") == 1  # the main process prints the report once
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert all(report["design"][k] for k in ("folds_disjoint", "no_test_tumour_in_training", "each_lesion_tested_once"))
    assert {k: v["summary"]["n_lesions"] for k, v in report["arms"].items()} == {k: 4 for k in report["arms"]}
