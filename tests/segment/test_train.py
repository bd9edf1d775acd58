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

    data = tiny_config(tmp_path / "killed", epochs=4, steps=10)
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

    full = train(load_config(None, data=tiny_config(tmp_path / "full", epochs=4, steps=10)), quiet=True)
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
