"""The diffusion model folder: what makes it valid, clear errors for bad folders, loading without network, cache."""
from __future__ import annotations

import json
import shutil
import socket

import pytest

pytest.importorskip("torch", reason="the diffusion generator needs torch (the diffusion extra)")
pytest.importorskip("diffusers", reason="the diffusion generator needs diffusers (the diffusion extra)")

from tumorsyn.errors import ModelError  # noqa: E402
from tumorsyn.generators.diffusion.model_folder import (clear_cache, load_model, model_checksum,  # noqa: E402
                                                        read_model_config)

from tests.train_diffusion.diffusion_helpers import untrained_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return untrained_model(tmp_path_factory.mktemp("models") / "model")


def _copy(model_dir, tmp_path):
    return shutil.copytree(model_dir, tmp_path / "copy")


def test_no_model_given_says_what_to_do():
    with pytest.raises(ModelError, match="needs a trained model: pass model=MODEL_DIR"):
        read_model_config(None)


@pytest.mark.parametrize("damage, needle", [
    (lambda d: shutil.rmtree(d), "model folder not found"),
    (lambda d: (shutil.rmtree(d), d.write_text("x")), "is a file, not a model folder"),
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text("{oops"), "config.json is not valid JSON"),
    (lambda d: (d / "config.json").write_text('{"format": "segment"}'), "is not a tumorsyn-diffusion model"),
    (lambda d: (d / "unet.safetensors").unlink(), "missing unet.safetensors"),
    (lambda d: (d / "scheduler_config.json").unlink(), "missing scheduler_config.json"),
    (lambda d: (d / "unet.safetensors").write_bytes(b"\x00" * 64), "unet.safetensors is not a readable safetensors file"),
])
def test_bad_folders_give_one_line_naming_the_folder(model_dir, tmp_path, damage, needle):
    folder = _copy(model_dir, tmp_path)
    damage(folder)
    clear_cache()
    with pytest.raises(ModelError) as info:
        load_model(folder, device="cpu")
    message = str(info.value)
    assert needle in message and str(folder) in message and "\n" not in message


def test_weights_of_another_architecture_are_refused(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path)
    other = untrained_model(tmp_path / "other", "ldm.channels=[8, 8]")
    shutil.copy(other / "unet.safetensors", folder / "unet.safetensors")
    clear_cache()
    with pytest.raises(ModelError, match="unet.safetensors does not fit the DiffusionModelUNet"):
        load_model(folder, device="cpu")


def test_loads_without_network_and_caches(model_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("loading a model must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    clear_cache()
    first = load_model(model_dir, device="cpu")
    assert load_model(model_dir, device="cpu") is first  # cached per process
    assert first.checksum == model_checksum(model_dir) and len(first.checksum) == 64
    assert first.crop_size == (16, 16, 16) and first.spacing_mm == (2.0, 2.0, 2.0)
    assert not first.unet.training and not any(p.requires_grad for p in first.unet.parameters())


def test_a_changed_folder_is_refused_when_a_checksum_is_expected(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path)
    expected = model_checksum(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["training"]["note"] = "edited"
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="differs from the one recorded in the spec"):
        load_model(folder, device="cpu", checksum=expected)
