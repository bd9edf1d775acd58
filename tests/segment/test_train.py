"""Training loop: fixed seed reproducible, kill -> resume gives the uninterrupted run, outputs written."""
from __future__ import annotations

import csv
import json

import torch

from segment.config import load_config
from segment.predict import load_model
from segment.train import train
from segment_helpers import tiny_config


def _weights(run):
    return load_model(run / "model_last")[0].state_dict()


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fixed_seed_reproducible_and_outputs(tmp_path):
    a = train(load_config(None, data=tiny_config(tmp_path / "a", steps=2, validation=True)), quiet=True)
    b = train(load_config(None, data=tiny_config(tmp_path / "b", steps=2, validation=True)), quiet=True)
    assert _same(_weights(a), _weights(b))
    assert (a / "steps.csv").read_text() .splitlines()[1:] and \
        [r.split(",")[2] for r in (a / "steps.csv").read_text().splitlines()] == \
        [r.split(",")[2] for r in (b / "steps.csv").read_text().splitlines()]
    for name in ("config.yaml", "versions.json", "metrics.csv", "curves.png", "model/config.json", "model/model.safetensors"):
        assert (a / name).is_file(), name
    rows = list(csv.DictReader((a / "metrics.csv").open()))
    assert rows[0]["val_sensitivity"] != ""  # validation ran on the phantom with a real tumour
    assert json.loads((a / "versions.json").read_text())["torch"] == torch.__version__


def test_kill_and_resume_gives_identical_state(tmp_path):
    """Stopped after step 2 of 4 (as if killed) and started again == never stopped."""
    full = train(load_config(None, data=tiny_config(tmp_path / "full", epochs=2, steps=2)), quiet=True)
    config = load_config(None, data=tiny_config(tmp_path / "cut", epochs=2, steps=2))
    cut = train(config, quiet=True, stop_at_step=1)
    assert not (cut / "model_last").exists()
    last = (cut / "checkpoints" / (cut / "checkpoints" / "LAST").read_text().strip())
    state = torch.load(last / "custom_checkpoint_1.pkl", weights_only=False)  # TrainState (scheduler is 0)
    assert state["step"] == 1
    train(config, quiet=True)  # resumes from checkpoints/LAST
    assert _same(_weights(full), _weights(cut))
    full_opt = torch.load(sorted((full / "checkpoints").glob("step_*"))[-1] / "optimizer.bin", weights_only=False)
    cut_opt = torch.load(sorted((cut / "checkpoints").glob("step_*"))[-1] / "optimizer.bin", weights_only=False)
    assert all(torch.equal(full_opt["state"][k]["exp_avg"], cut_opt["state"][k]["exp_avg"]) for k in full_opt["state"])
    assert (full / "steps.csv").read_text().splitlines()[1:][-1].split(",")[:4] == \
        (cut / "steps.csv").read_text().splitlines()[1:][-1].split(",")[:4]


def test_grad_accumulation_and_bf16_run(tmp_path):
    data = tiny_config(tmp_path, steps=1)
    data["train"].update({"grad_accum": 2, "mixed_precision": "bf16"})
    run = train(load_config(None, data=data), quiet=True)
    rows = (run / "steps.csv").read_text().splitlines()
    assert len(rows) == 2  # one optimizer step from two micro-batches


def test_sigkill_then_resume_gives_identical_state(tmp_path):
    """A `tumorsyn segment train` process killed with SIGKILL after a checkpoint, started again, ends
    with the weights, optimizer state and step log of a run that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.conftest import REPO

    # One thread in both runs: float sums follow the thread count, and other tests in this process may
    # have changed torch's default (the last CI run differed in the weights' last bits).
    data = tiny_config(tmp_path / "killed", epochs=4, steps=10)
    data["train"]["threads"] = 1
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(data))
    run = tmp_path / "killed" / "run"
    command = [sys.executable, "-m", "tumorsyn", "segment", "train", str(path), "--quiet"]
    log = tmp_path / "killed.log"
    with log.open("wb") as err:  # a file, not a pipe: a full pipe would stall the child
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "LAST").is_file():  # killed right after its first checkpoint
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert not (run / "model_last").exists()
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    full_data = tiny_config(tmp_path / "full", epochs=4, steps=10)
    full_data["train"]["threads"] = 1
    full = train(load_config(None, data=full_data), quiet=True)
    assert _same(_weights(full), _weights(run))
    full_opt = torch.load(sorted((full / "checkpoints").glob("step_*"))[-1] / "optimizer.bin", weights_only=False)
    cut_opt = torch.load(sorted((run / "checkpoints").glob("step_*"))[-1] / "optimizer.bin", weights_only=False)
    assert all(torch.equal(full_opt["state"][k]["exp_avg"], cut_opt["state"][k]["exp_avg"]) for k in full_opt["state"])
    full_rows = [r.split(",")[:4] for r in (full / "steps.csv").read_text().splitlines()]
    cut_rows = [r.split(",")[:4] for r in (run / "steps.csv").read_text().splitlines()]
    assert full_rows == cut_rows and len(full_rows) == 41


def test_threads_setting_applies_to_the_run_only(tmp_path, monkeypatch):
    import segment.train as train_module

    seen = []
    real_train = train_module._train
    monkeypatch.setattr(train_module, "_train", lambda *a, **k: (seen.append(torch.get_num_threads()), real_train(*a, **k))[1])
    before = torch.get_num_threads()
    data = tiny_config(tmp_path, steps=1)
    data["train"]["threads"] = 1
    train(load_config(None, data=data), quiet=True)
    assert seen == [1] and torch.get_num_threads() == before


def test_batched_on_device_synthesis_trains_and_repeats(tmp_path):
    """Synthesis in the training process (a batch at once): runs, logs it, same seed -> same weights."""
    extra = {"synthesis__batched_on_device": True, "workers": 2}
    a = train(load_config(None, data=tiny_config(tmp_path / "a", steps=2, **extra)), quiet=True)
    b = train(load_config(None, data=tiny_config(tmp_path / "b", steps=2, **extra)), quiet=True)
    assert _same(_weights(a), _weights(b))
    rows = list(csv.DictReader((a / "steps.csv").open()))
    assert len(rows) == 2


def test_two_runs_with_workers_give_identical_weights_and_metrics(tmp_path):
    """The demo's setting (DataLoader workers, one torch thread, validation): a fixed seed reproduces a run bit
    for bit on the CPU (the segment docs quote the demo's figures from one seed)."""
    runs = []
    for name in ("a", "b"):
        data = tiny_config(tmp_path / name, epochs=2, steps=2, workers=2, validation=True)
        data["train"]["threads"] = 1
        runs.append(train(load_config(None, data=data), quiet=True))
    a, b = runs
    assert _same(_weights(a), _weights(b))
    assert _same(load_model(a / "model")[0].state_dict(), load_model(b / "model")[0].state_dict())
    drop_seconds = lambda run, name: [r.rsplit(",", 1)[0] for r in (run / name).read_text().splitlines()]  # noqa: E731
    assert drop_seconds(a, "metrics.csv") == drop_seconds(b, "metrics.csv")
    assert [r.split(",")[:4] for r in (a / "steps.csv").read_text().splitlines()] == \
        [r.split(",")[:4] for r in (b / "steps.csv").read_text().splitlines()]
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is the run's only


def test_resume_refuses_a_folder_made_with_other_settings(tmp_path):
    """Resuming used to continue whatever run the folder held; now other settings are refused, naming them."""
    import pytest

    from tumorsyn.errors import ConfigError

    data = tiny_config(tmp_path, epochs=2, steps=1)
    train(load_config(None, data=data), quiet=True, stop_at_step=1)
    changed = load_config(None, data={**data, "seed": 4, "train": {**data["train"], "lr": 0.01}})
    with pytest.raises(ConfigError, match=r"this folder holds a training run made with other settings \(seed, "
                                          r"train\.lr\); use another output folder \(--out\), or the same config"):
        train(changed, quiet=True)
    # The folder is untouched by the refusal, and the same settings (other workers) resume it.
    same = load_config(None, data={**data, "data": {**data["data"], "workers": 1}})
    run = train(same, quiet=True)
    assert len((run / "steps.csv").read_text().splitlines()[1:]) == 2


def test_log_and_curves_say_why_there_is_no_validation(tmp_path, capsys, monkeypatch):
    """Without validation cases the log used to print "val sensitivity n/a, Dice n/a (best)" and the curves an
    empty panel; now both say that nothing was validated and which model is kept."""
    from matplotlib.axes import Axes

    from segment.train import NOT_VALIDATED

    drawn = []
    original = Axes.text
    monkeypatch.setattr(Axes, "text", lambda self, x, y, s, *a, **k: (drawn.append(s), original(self, x, y, s, *a, **k))[1])
    data = tiny_config(tmp_path, epochs=1, steps=1)
    data["train"]["progress"] = False
    train(load_config(None, data=data))
    err = capsys.readouterr().err
    assert "epoch 0 step 1: loss " in err and NOT_VALIDATED in err
    assert "n/a" not in err and "(best)" not in err
    assert NOT_VALIDATED in drawn  # the empty validation panel of curves.png


def test_epoch_line_with_validation_names_the_reason_of_n_a():
    from segment.train import TrainState, _epoch_line

    row = {"train_loss": "0.5", "val_sensitivity": "", "val_dice": ""}
    line = _epoch_line(TrainState(step=4, epoch=1), row, validated=True, selected=True, select_on="sensitivity")
    assert line == ("epoch 1 step 4: loss 0.5, val sensitivity n/a (no tumour in the validation scans), Dice n/a "
                    "(no tumour in the validation scans) (best so far by sensitivity: kept as model/)")
