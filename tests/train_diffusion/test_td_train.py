"""Both training stages on phantoms (and on real tumour crops): model folder, logs, resume, CLI errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.conftest import real_path
from tumorsyn.cli.main import main
from tumorsyn.generators.diffusion.model_folder import clear_cache, load_model
from train_diffusion.train import train

from diffusion_helpers import TINY, tiny_config


def test_tiny_run_writes_a_loadable_model_folder(trained_run):
    config, folder = trained_run
    run = folder.parent
    assert sorted(p.name for p in folder.iterdir()) == ["autoencoder.safetensors", "config.json",
                                                       "scheduler_config.json", "unet.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "tumorsyn-diffusion" and meta["organs"] == ["liver"]
    assert meta["data"]["spacing_mm"] == [2.0, 2.0, 2.0] and meta["data"]["hu_window"] == [-175.0, 250.0]
    assert meta["training"]["ldm_steps"] == 3 and meta["training"]["tumour_crops"] == 2
    assert meta["autoencoder"]["scale_factor"] > 0
    for name in ("steps_autoencoder.csv", "steps_ldm.csv", "config.yaml", "versions.json"):
        assert (run / name).is_file(), name
    rows = (run / "steps_ldm.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 4
    previews = sorted(p.name for p in (run / "previews").glob("*.png"))
    assert "autoencoder_step0000002.png" in previews and "ldm_step0000003.png" in previews
    assert (run / "curves_ldm.png").is_file() and (run / "curves_autoencoder.png").is_file()
    clear_cache()
    model = load_model(folder, device="cpu")
    assert model.crop_size == (16, 16, 16) and not model.unet.training
    assert not list(run.glob(".model.tmp-*"))


def _weights(folder):
    return {**{f"ae.{k}": v for k, v in load_file(str(folder / "autoencoder.safetensors")).items()},
            **{f"unet.{k}": v for k, v in load_file(str(folder / "unet.safetensors")).items()}}


def test_resume_gives_the_same_state(tmp_path, trained_run, phantom_sources):
    """Killed after AE step 2 and after LDM step 1, resumed: the same weights as the uninterrupted run."""
    _, reference = trained_run
    config = tiny_config(tmp_path / "run", phantom_sources)
    assert train(config, quiet=True, stop_at=("autoencoder", 2)) is None
    assert (tmp_path / "run" / "autoencoder" / "checkpoints" / "LAST").read_text() == "step_0000002"
    assert not (tmp_path / "run" / "model").exists()  # no partial output
    assert train(config, quiet=True, stop_at=("ldm", 1)) is None
    folder = train(config, quiet=True)
    ours, theirs = _weights(folder), _weights(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    a = json.loads((folder / "config.json").read_text())["autoencoder"]["scale_factor"]
    b = json.loads((reference / "config.json").read_text())["autoencoder"]["scale_factor"]
    assert a == b
    with pytest.raises(Exception, match="already holds checkpoints"):
        train(config, quiet=True, resume=False)


def test_another_seed_trains_other_weights(tmp_path, trained_run, phantom_sources):
    config = tiny_config(tmp_path / "run", phantom_sources, "seed=1", "train.stage=autoencoder", "train.preview_every=0")
    assert train(config, quiet=True) is None
    ours = load_file(str(tmp_path / "run" / "autoencoder" / "autoencoder.safetensors"))
    theirs = load_file(str(trained_run[1].parent / "autoencoder" / "autoencoder.safetensors"))
    assert any(not np.array_equal(ours[k], theirs[k]) for k in ours)


def test_threads_setting_applies_to_the_run_only(tmp_path, phantom_sources):
    import torch

    torch.set_num_threads(2)  # the caller's count (the autouse fixture restores its own after the test)
    config = tiny_config(tmp_path / "run", phantom_sources, "autoencoder.steps=1", "ldm.steps=1",
                         "train.preview_every=0")
    assert config["train"]["threads"] == 1
    train(config, quiet=True)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("extra", [["ldm.prediction_type=flow", "ldm.sampler=euler"],
                                   ["ldm.prediction_type=epsilon", "autoencoder.kind=vq", "autoencoder.num_embeddings=16"],
                                   ["ldm.prediction_type=v_prediction", "ldm.sampler=dpm_solver", "ldm.ema_decay=null",
                                    "train.grad_accum=2", "train.mixed_precision=bf16"]])
def test_command_line_variants(tmp_path, phantom_sources, extra, capsys):
    import yaml

    sets = [f"data.tumor_sources={yaml.safe_dump(phantom_sources, default_flow_style=True).strip()}",
            "autoencoder.steps=2", "ldm.steps=2", "train.preview_every=0", *extra]
    args = ["train-diffusion", str(TINY), "--out", str(tmp_path / "run"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    meta = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert meta["sampling"]["prediction_type"] == extra[0].split("=")[1]
    assert meta["autoencoder"]["class"] == ("VQVAE" if "autoencoder.kind=vq" in extra else "AutoencoderKL")
    assert capsys.readouterr().err == ""
    # the folder samples: a tumour written into a phantom through the generator
    import tumorsyn
    from tests.conftest import make_phantom

    ct, organ, spacing = make_phantom(shape=(48, 48, 32), radii_mm=(20.0, 18.0, 18.0), seed=1)
    spec = tumorsyn.sample_spec(organ, spacing, organ="liver", method="diffusion", size_mm=(8, 11), ct_hu=ct, rng=0,
                                model=str(tmp_path / "run" / "model"))
    out, _ = tumorsyn.synthesize(ct, organ, spacing, spec)
    assert np.isfinite(out).all() and not np.array_equal(out, ct)


def test_command_line_bad_config_is_one_line(tmp_path, capsys):
    assert main(["train-diffusion", str(TINY), "--set", "ldm.steps=0", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tumorsyn: error: ") and "ldm.steps must be a positive integer" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.real
def test_trains_on_real_tumour_crops_of_ircadb_patient_1(tmp_path):
    folder = real_path("3dircadb1", "3Dircadb1.1")
    sources = [{"ct": str(folder / "ct.nii.gz"), "labels": str(folder / "masks" / "liver.nii.gz"),
                "tumor": [str(p) for p in sorted((folder / "masks").glob("livertumor*.nii.gz"))]}]
    config = tiny_config(tmp_path / "run", sources, "autoencoder.steps=2", "ldm.steps=2", "train.preview_every=0",
                         "data.healthy_crops_per_case=1")
    model_dir = train(config, quiet=True)
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["training"]["tumour_crops"] >= 1
    assert {t["case"] for t in meta["training"]["tumours"]} == {"3Dircadb1.1"}
    clear_cache()
    assert load_model(model_dir, device="cpu").checksum


@pytest.mark.slow
def test_two_processes_train_data_parallel(tmp_path, phantom_sources):
    """The same command under torchrun (2 CPU processes, gloo): one model folder, rank 0 writes it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    sets = [f"data.tumor_sources={yaml.safe_dump(phantom_sources, default_flow_style=True).strip()}",
            "autoencoder.steps=2", "ldm.steps=2", "train.preview_every=0", "train.cpu=true"]
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "tumorsyn", "train-diffusion", str(TINY),
           "--out", str(tmp_path / "run")]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("model folder:") == 1  # logged by rank 0 only
    clear_cache()
    assert load_model(tmp_path / "run" / "model", device="cpu").crop_size == (16, 16, 16)
