"""Held-out evaluation: MAE inside/outside tumours, inpainted tumour statistics, held-out sources kept apart."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from diffusion_helpers import one_torch_thread, tiny_config  # noqa: F401 (autouse)
from tests.conftest import REAL
from tumorsyn.errors import ConfigError

IRCAD_P1 = REAL / "3dircadb1" / "3Dircadb1.1" / "ct.nii.gz"


def _flow(sources) -> str:
    return yaml.safe_dump(sources, default_flow_style=True).strip()


def test_masked_mae_and_rim_by_hand():
    from train_diffusion.evaluate import masked_mae, rim_mask

    a = np.zeros((4, 4, 4))
    b = np.zeros((4, 4, 4))
    b[0] = 3.0
    inside = np.zeros((4, 4, 4), bool)
    inside[:2] = True
    assert masked_mae(a, b, inside) == pytest.approx(1.5)  # half the voxels differ by 3
    assert masked_mae(a, b, ~inside) == 0.0
    assert masked_mae(a, b, np.zeros_like(inside)) is None
    region = np.zeros((21, 21, 21), bool)
    region[10, 10, 10] = True
    rim = rim_mask(region, (1.0, 1.0, 2.0), inner_mm=2.0, outer_mm=4.0)
    assert rim[10, 10, 12] and rim[10, 10, 11]  # 2 mm and 4 mm away along the 2 mm axis
    assert not rim[10, 10, 13] and not rim[10, 10, 10] and not rim[10, 11, 10]  # 6 mm, inside, 1 mm


class _ShiftAutoencoder(torch.nn.Module):
    """encode = identity, decode adds ``shift`` inside the region ``where`` (unit scale)."""

    def __init__(self, shift: float, where: torch.Tensor):
        super().__init__()
        self.shift, self.where = shift, where

    def encode(self, x):
        return x, None

    def decode(self, z):
        return z + self.shift * self.where


def test_reconstruction_error_inside_and_outside_tumours():
    from train_diffusion.data import CropBank
    from train_diffusion.evaluate import evaluate_bank

    rng = np.random.default_rng(0)
    image = rng.uniform(-0.5, 0.5, (8, 8, 8)).astype(np.float32)
    core = np.zeros((8, 8, 8), bool)
    core[2:5, 2:5, 2:5] = True
    bank = CropBank(crop_size=(8, 8, 8), jitter_vox=(0, 0, 0), tumor_images=[image], tumor_masks=[core],
                    tumor_cores=[core], tumors=[{"case": "c", "max_diameter_mm": 3.0}])
    window = (-100.0, 100.0)  # 1 unit = 100 HU
    model = SimpleNamespace(hu_window=window, spacing_mm=(1.0, 1.0, 1.0), device=torch.device("cpu"),
                            config={"data": {"blank_value": 0.0}, "sampling": {"steps": 1, "sampler": "ddim"}},
                            autoencoder=_ShiftAutoencoder(0.2, torch.from_numpy(core.astype(np.float32))))
    result = evaluate_bank(model, bank, samples=0)
    assert result["reconstruction"]["mae_inside_hu"] == pytest.approx(20.0, abs=0.01)
    assert result["reconstruction"]["mae_outside_hu"] == pytest.approx(0.0, abs=0.01)
    assert result["reconstruction"]["voxels_inside"] == 27
    assert "inpainting" not in result


def test_holdout_evaluation_of_a_tiny_run(tmp_path, phantom_sources, capsys):
    """Trained on phantom 0, evaluated on phantom 1's tumour: figures, JSON, PNG, the command line."""
    from train_diffusion.evaluate import summary_line
    from train_diffusion.evaluate import masked_mae, reconstruct
    from train_diffusion.train import train
    from tumorsyn.cli.main import main
    from tumorsyn.generators.diffusion.model_folder import load_model
    from tumorsyn.generators.diffusion.sampler import unit_to_hu
    from train_diffusion.data import load_holdout

    config = tiny_config(tmp_path / "run", phantom_sources[:1], f"data.holdout_sources={_flow(phantom_sources[1:])}")
    folder = train(config, quiet=True)
    result = json.loads((tmp_path / "run" / "heldout" / "heldout.json").read_text())  # written by the run itself
    assert (tmp_path / "run" / "heldout" / "heldout.png").stat().st_size > 0
    assert result["crops"] == 1 and result["inpainting"]["samples_per_crop"] == 2
    # The pooled figure is what an independent computation gives.
    bank = load_holdout(config)
    images, _, cores = bank.centred()
    model = load_model(folder, device="cpu")
    # each crop back to HU with its own window (relative intensity, the default: its host's parenchyma)
    assert model.intensity == "relative" and bank.tumor_windows[0] != model.hu_window
    real = np.stack([unit_to_hu(im, w) for im, w in zip(images, bank.tumor_windows)])
    recon = np.stack([unit_to_hu(im, w) for im, w in zip(reconstruct(model, images), bank.tumor_windows)])
    assert result["reconstruction"]["mae_inside_hu"] == pytest.approx(masked_mae(real, recon, cores), abs=0.01)
    assert result["reconstruction"]["mae_outside_hu"] == pytest.approx(masked_mae(real, recon, ~cores), abs=0.01)
    sample = result["inpainting"]["per_crop"][0]["samples"][0]
    assert set(sample) == {"tumour_mean_hu", "tumour_median_hu", "tumour_std_hu", "rim_median_hu", "contrast_hu"}
    assert sample["contrast_hu"] == pytest.approx(sample["tumour_median_hu"] - sample["rim_median_hu"], abs=0.11)
    assert result["inpainting"]["per_crop"][0]["real"]["contrast_hu"] < 0  # the phantom's tumours are hypodense

    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    assert main(["train-diffusion", str(cfg_path), "--evaluate", "--samples", "1", "--steps", "2", "--device", "cpu",
                 "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    again = json.loads((tmp_path / "run" / "heldout" / "heldout.json").read_text())
    assert line == summary_line(again) and again["inpainting"]["steps"] == 2
    assert again["reconstruction"] == result["reconstruction"]  # the autoencoder part is deterministic


def test_holdout_errors(tmp_path, phantom_sources, trained_run, capsys):
    from train_diffusion.evaluate import evaluate_model
    from tumorsyn.cli.main import main

    with pytest.raises(ConfigError, match=r"holdout_sources\[0\] is also in data.tumor_sources"):
        tiny_config(tmp_path / "a", phantom_sources, f"data.holdout_sources={_flow(phantom_sources[1:])}")
    with pytest.raises(ConfigError, match="holdout_sources is empty"):
        evaluate_model(tiny_config(tmp_path / "b", phantom_sources), model_dir=trained_run[1], device="cpu")
    other = tiny_config(tmp_path / "c", phantom_sources[:1], "data.spacing_mm=[1.5, 1.5, 1.5]",
                        f"data.holdout_sources={_flow(phantom_sources[1:])}")
    with pytest.raises(ConfigError, match="differ from the model's"):
        evaluate_model(other, model_dir=trained_run[1], device="cpu")
    with pytest.raises(ConfigError, match="healthy_crops must be an integer"):
        tiny_config(tmp_path / "d", [{**phantom_sources[0], "healthy_crops": -1}])
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tmp_path / "e", phantom_sources)))
    assert main(["train-diffusion", str(cfg_path), "--model", str(trained_run[1])]) != 0
    assert "--model, --steps and --on belong to --evaluate" in capsys.readouterr().err


def test_evaluate_on_training_tumours(tmp_path, phantom_sources, trained_run, capsys):
    """--on training: the same figures against the model's own tumours, in training_fit/, without the held-out set."""
    from train_diffusion.data import load_training_tumours
    from train_diffusion.evaluate import evaluate_model
    from tumorsyn.cli.main import main

    config, model = trained_run
    config = {**config, "output_dir": str(tmp_path / "run")}        # no data.holdout_sources in the tiny run
    bank = load_training_tumours(config)
    assert len(bank.tumor_images) >= 1 and not bank.healthy_images and bank.grain_images  # tumours and grain only
    result = evaluate_model(config, model_dir=model, samples=1, steps=2, device="cpu", on="training")
    assert result["tumours"] == "training" and result["crops"] == len(bank.tumor_images)
    written = json.loads((tmp_path / "run" / "training_fit" / "heldout.json").read_text())
    assert written["reconstruction"] == result["reconstruction"] and "hosts" not in written
    assert not (tmp_path / "run" / "heldout").exists()
    with pytest.raises(ConfigError, match="evaluate on must be one of"):
        evaluate_model(config, model_dir=model, samples=0, device="cpu", on="test")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    assert main(["train-diffusion", str(cfg_path), "--evaluate", "--on", "training", "--model", str(model),
                 "--samples", "0", "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"training {len(bank.tumor_images)} tumour crop(s)")
    assert main(["train-diffusion", str(cfg_path), "--on", "training"]) != 0       # --on without --evaluate
    assert "belong to --evaluate" in capsys.readouterr().err


def test_per_source_healthy_crops(tmp_path, phantom_sources):
    from train_diffusion.data import load_crops

    none = load_crops(tiny_config(tmp_path / "a", [{**phantom_sources[0], "healthy_crops": 0}]))
    some = load_crops(tiny_config(tmp_path / "b", [{**phantom_sources[0], "healthy_crops": 3}]))
    assert len(none.healthy_images) == 0 and len(some.healthy_images) == 3
    assert len(none.tumor_images) == len(some.tumor_images) == 1


@pytest.mark.skipif(not IRCAD_P1.is_file(), reason="3D-IRCADb patient 1 not in ../shared/data/real (see its README)")
def test_ircadb_config_keeps_held_out_tumours_apart(tmp_path):
    """The real-run config: tumours 04 and 07 of patient 1 held out, the others trained on."""
    from tests.conftest import REPO
    from train_diffusion.config import load_config
    from train_diffusion.data import load_holdout

    config = load_config(REPO / "configs" / "diffusion" / "liver_early_heldout.yaml", [f"output_dir={tmp_path}"])
    held = load_holdout(config)
    assert len(held.tumor_images) == 2
    assert all(10.0 < t["max_diameter_mm"] < 30.0 for t in held.tumors)
    images, masks, cores = held.centred()
    assert images.shape == (2, 48, 48, 48) and cores.sum() > 0 and (masks >= cores).all()
    trained = {t for s in config["data"]["tumor_sources"] for t in s["tumor"]}
    assert not trained & {t for s in config["data"]["holdout_sources"] for t in s["tumor"]}
