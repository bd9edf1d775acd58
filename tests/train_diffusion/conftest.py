"""Fixtures of the diffusion-training tests: phantom scans with tumours, one tiny trained model."""
from __future__ import annotations

import pytest

from diffusion_helpers import one_torch_thread, tiny_config, torch_threads, write_phantom_case  # noqa: F401 (autouse)


@pytest.fixture(scope="session")
def phantom_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    return [write_phantom_case(root / f"case{i}", seed=i) for i in range(2)]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, phantom_sources):
    """One tiny run (3 + 3 steps) on the phantoms: ``(config, model folder)``."""
    from train_diffusion.train import train

    config = tiny_config(tmp_path_factory.mktemp("run") / "run", phantom_sources)
    with torch_threads(1):
        return config, train(config, quiet=True)
