"""Learning-rate schedules and the refiner's EMA weights: what they do, their config checks, and resume."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tumorsyn.errors import ConfigError
from train_diffusion.runtime import ema_copy, ema_model, lr_schedule
from train_diffusion.train import train

from diffusion_helpers import tiny_config, torch_threads

SMOOTHED = ("refiner.steps=3", "refiner.channels=[4,8]", "refiner.batch_size=2", "train.preview_every=0",
            "refiner.lr_schedule=cosine", "refiner.ema_decay=0.5", "ldm.lr_schedule=cosine")


def _rates(name: str, total: int) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    schedule = lr_schedule(optimizer, name, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates + [optimizer.param_groups[0]["lr"]]


def test_cosine_falls_from_lr_to_zero_and_constant_stays():
    cosine = _rates("cosine", 10)
    assert cosine[0] == pytest.approx(0.1) and cosine[5] == pytest.approx(0.05) and cosine[-1] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    assert _rates("constant", 10) == pytest.approx([0.1] * 11)
    with pytest.raises(ConfigError, match="unknown learning-rate schedule 'linear'"):
        _rates("linear", 3)


def test_ema_copy_holds_the_average_and_leaves_the_model_alone():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ema_model(model, 0.5, "cpu")
    for value in (3.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.step(model.parameters())
    copy = ema_copy(model, ema, lambda: torch.nn.Linear(2, 1, bias=False))
    # The average lags the last weights: between the two values the model held (diffusers warms its decay up).
    held = copy.weight.detach().numpy()
    assert np.all((held > 3.0) & (held < 5.0)), held
    np.testing.assert_array_equal(held, ema.shadow_params[0].numpy())
    assert float(model.weight[0, 0]) == 5.0 and not copy.training
    assert ema_copy(model, None, lambda: None) is model and ema_model(model, None, "cpu") is None


def test_schedule_and_ema_settings_are_checked(tmp_path, phantom_sources):
    with pytest.raises(ConfigError, match="refiner.lr_schedule must be constant or cosine, got 'linear'"):
        tiny_config(tmp_path / "a", phantom_sources, "refiner.lr_schedule=linear")
    with pytest.raises(ConfigError, match=r"ldm.lr_schedule must be constant or cosine"):
        tiny_config(tmp_path / "b", phantom_sources, "ldm.lr_schedule=step")
    with pytest.raises(ConfigError, match=r"refiner.ema_decay must be null or in \[0, 1\], got 2"):
        tiny_config(tmp_path / "c", phantom_sources, "refiner.ema_decay=2")


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory, phantom_sources):
    """A tiny run whose refiner and LDM use the cosine schedule, and whose refiner saves EMA weights."""
    config = tiny_config(tmp_path_factory.mktemp("smoothed") / "run", phantom_sources, *SMOOTHED)
    with torch_threads(1):
        return config, train(config, quiet=True)


def test_resumed_scheduled_run_gives_the_same_weights(tmp_path, smoothed_run, phantom_sources):
    """Killed in the refiner and in the LDM, resumed: the schedules and the EMA go on where they were."""
    _, reference = smoothed_run
    config = tiny_config(tmp_path / "run", phantom_sources, *SMOOTHED)
    with torch_threads(1):
        assert train(config, quiet=True, stop_at=("refiner", 1)) is None
        assert train(config, quiet=True, stop_at=("ldm", 1)) is None
        folder = train(config, quiet=True)
    for name in ("refiner.safetensors", "unet.safetensors"):
        ours, theirs = load_file(str(folder / name)), load_file(str(reference / name))
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name}: {key}")


def test_refiner_ema_changes_the_saved_weights(tmp_path, smoothed_run, phantom_sources):
    _, smoothed = smoothed_run
    plain = [s for s in SMOOTHED if not s.startswith("refiner.ema_decay")]
    config = tiny_config(tmp_path / "run", phantom_sources, *plain, "train.stage=refiner")
    # The same autoencoder as the smoothed run's (same seed and data): only the refiner's EMA differs.
    shutil.copytree(smoothed.parent / "autoencoder", tmp_path / "run" / "autoencoder")
    with torch_threads(1):
        assert train(config, quiet=True) is None
    ours = load_file(str(tmp_path / "run" / "refiner" / "refiner.safetensors"))
    theirs = load_file(str(smoothed / "refiner.safetensors"))
    assert any(not np.array_equal(ours[k], theirs[k]) for k in ours)
