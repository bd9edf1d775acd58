"""A refiner ensemble: members trained from their own seeds, saved side by side, their corrections averaged."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tumorsyn.errors import ConfigError, ModelError
from tumorsyn.generators.diffusion.ensemble import RefinerEnsemble
from tumorsyn.generators.diffusion.model_folder import clear_cache, load_model, read_model_config
from train_diffusion.train import train
from train_diffusion.train_refiner import load_refiner, member_config, refiner_done_path

from diffusion_helpers import tiny_config, torch_threads

REFINER = ("refiner.steps=3", "refiner.channels=[4,8]", "refiner.batch_size=2", "train.preview_every=0")


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, phantom_sources):
    """A tiny run with an ensemble of two refiners: ``(config, model folder)``."""
    config = tiny_config(tmp_path_factory.mktemp("ensemble") / "run", phantom_sources, *REFINER, "refiner.members=2")
    with torch_threads(1):
        return config, train(config, quiet=True)


def test_ensemble_run_writes_every_member(ensemble_run):
    config, folder = ensemble_run
    run = folder.parent
    meta = json.loads((folder / "config.json").read_text())
    assert meta["refiner"]["members"] == 2 and meta["training"]["refiner_members"] == 2
    assert (run / "refiner" / "member_1" / "refiner.safetensors").is_file() and (run / "steps_refiner_1.csv").is_file()
    first, second = (load_file(str(folder / name)) for name in ("refiner.safetensors", "refiner_1.safetensors"))
    assert first.keys() == second.keys()
    assert any(not np.array_equal(first[k], second[k]) for k in first)  # another seed, other weights
    for k, name in enumerate(("refiner.safetensors", "refiner_1.safetensors")):
        trained = load_file(str(refiner_done_path(run, k)))
        saved = load_file(str(folder / name))
        assert all(np.array_equal(trained[key], saved[key]) for key in trained)


def test_first_member_is_the_single_refiner_of_the_same_seed(tmp_path, ensemble_run, phantom_sources):
    """members=1 trains exactly the ensemble's first refiner: old recipes keep their refiner."""
    _, folder = ensemble_run
    config = tiny_config(tmp_path / "run", phantom_sources, *REFINER, "train.stage=refiner")
    shutil.copytree(folder.parent / "autoencoder", tmp_path / "run" / "autoencoder")
    with torch_threads(1):
        assert train(config, quiet=True) is None
    single = load_file(str(refiner_done_path(tmp_path / "run")))
    first = load_file(str(folder / "refiner.safetensors"))
    for key in single:
        np.testing.assert_array_equal(single[key], first[key], err_msg=key)


def test_loaded_ensemble_adds_the_mean_of_its_members_corrections(ensemble_run):
    config, folder = ensemble_run
    clear_cache()
    model = load_model(folder, device="cpu")
    assert isinstance(model.refiner, RefinerEnsemble) and not model.refiner.training
    members = [load_refiner(config, refiner_done_path(folder.parent, k), "cpu") for k in range(2)]
    x = torch.randn(2, 3, *config["data"]["crop_size"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = 0.5 * (members[0](x) + members[1](x))
        np.testing.assert_allclose(model.refiner(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(members[0](x), members[1](x))


def test_killed_in_the_second_member_resumes_to_the_same_weights(tmp_path, ensemble_run, phantom_sources):
    _, reference = ensemble_run
    config = tiny_config(tmp_path / "run", phantom_sources, *REFINER, "refiner.members=2")
    with torch_threads(1):
        assert train(config, quiet=True, stop_at=("refiner_1", 1)) is None
        assert (tmp_path / "run" / "refiner" / "member_1" / "checkpoints" / "LAST").read_text() == "step_0000001"
        assert not (tmp_path / "run" / "model").exists()
        folder = train(config, quiet=True)
    for name in ("refiner.safetensors", "refiner_1.safetensors"):
        ours, theirs = load_file(str(folder / name)), load_file(str(reference / name))
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name}: {key}")


def test_member_seeds_are_their_own():
    config = {"seed": 0}
    assert member_config(config, 0) is config
    seeds = {member_config({"seed": s}, k)["seed"] for s in (0, 1) for k in (1, 2)}
    # Four distinct members, none another run's first refiner (seed + 1 would be run 1's).
    assert len(seeds) == 4 and not seeds & {0, 1, 2, 3}
    assert member_config(config, 1)["seed"] == member_config({"seed": 0}, 1)["seed"]


def test_bad_member_counts_are_refused(tmp_path, ensemble_run, phantom_sources):
    with pytest.raises(ConfigError, match="refiner.members must be a positive integer, got 0"):
        tiny_config(tmp_path / "a", phantom_sources, *REFINER, "refiner.members=0")
    with pytest.raises(ValueError, match="at least two"):
        RefinerEnsemble([torch.nn.Identity()])
    _, folder = ensemble_run
    broken = tmp_path / "model"
    shutil.copytree(folder, broken)
    (broken / "refiner_1.safetensors").unlink()
    with pytest.raises(ModelError, match="missing refiner_1.safetensors"):
        read_model_config(broken)
    meta = json.loads((folder / "config.json").read_text())
    meta["refiner"]["members"] = "two"
    shutil.copy(folder / "refiner_1.safetensors", broken / "refiner_1.safetensors")
    (broken / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="refiner members must be a positive integer, got 'two'"):
        read_model_config(broken)
