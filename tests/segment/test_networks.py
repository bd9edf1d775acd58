"""Networks by name, one training step each, and initialisation from a local checkpoint."""
from __future__ import annotations

import pytest
import torch

from tumorsyn.errors import ConfigError, ModelError

from segment.networks import build_network, init_from_checkpoint, save_model
from segment_helpers import tiny_config



@pytest.mark.parametrize("name", ["unet", "segresnet", "dynunet", "swinunetr"])
def test_one_training_step_each_network(tmp_path, name):
    """One optimizer step on phantom data changes the weights and gives a finite loss."""
    from segment.config import load_config
    from segment.train import train

    if name == "swinunetr":
        pytest.importorskip("einops", reason="MONAI's SwinUNETR needs einops (pip install einops)")
    config = load_config(None, data=tiny_config(tmp_path, network=name, steps=1, workers=0))
    run = train(config, quiet=True)
    rows = (run / "steps.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and torch.isfinite(torch.tensor(float(rows[1].split(",")[2])))
    from segment.predict import load_model
    from accelerate.utils import set_seed

    trained = load_model(run)[0].state_dict()
    set_seed(config["seed"])  # the initial weights of the run
    fresh = build_network(name, roi_size=config["data"]["roi_size"], **config["network"]["kwargs"]).state_dict()
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh if fresh[k].is_floating_point())


def test_unknown_network():
    with pytest.raises(ConfigError, match="unknown network"):
        build_network("vnet3000")


def test_init_from_checkpoint_report(tmp_path):
    kwargs = {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}
    source = build_network("unet", out_channels=2, **kwargs)  # different head: last layer mismatches
    save_model(source, tmp_path / "pre", {"note": "pretrained"})
    target = build_network("unet", out_channels=3, **kwargs)
    report = init_from_checkpoint(target, tmp_path / "pre" / "model.safetensors")
    assert report["counts"]["matched"] > 0 and report["counts"]["shape_mismatch"] >= 1
    name = report["matched"][0]
    assert torch.equal(target.state_dict()[name], source.state_dict()[name])
    # a torch file wrapping the weights under "state_dict" with a "module." prefix works too
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "pre.pt")
    assert init_from_checkpoint(build_network("unet", out_channels=3, **kwargs), tmp_path / "pre.pt")["counts"]["matched"] \
        == report["counts"]["matched"]


def test_init_from_unrelated_checkpoint_fails(tmp_path):
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="no weight"):
        init_from_checkpoint(build_network("unet", channels=[4, 8], strides=[2]), tmp_path / "other.pt")
