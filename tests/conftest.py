"""Shared fixtures: where the real scans are, and small CT phantoms with known anatomy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tumorsyn.configfile import real_data_dir

REPO = Path(__file__).resolve().parents[1]
# The real scans: $TUMORSYN_REAL_DATA when set, else ../shared/data/real (the rule configs use for ${REAL}).
REAL = real_data_dir()[0]
EXAMPLE_CT = REPO / "tumorsyn" / "data" / "example_ct.nii.gz"
EXAMPLE_LABELS = REPO / "tumorsyn" / "data" / "example_labels.nii.gz"


def real_path(*parts: str) -> Path:
    """Path under ../shared/data/real, or skip the test with the reason."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{'/'.join(parts)} not in {REAL}; see ../shared/data/README.md (or set TUMORSYN_REAL_DATA)")
    return path


def make_phantom(shape=(64, 64, 40), spacing=(1.0, 1.0, 1.5), *, organ_hu=100.0, noise_hu=10.0,
                 radii_mm=(24.0, 22.0, 20.0), vessel=False, seed=0):
    """A body of soft tissue in air holding an ellipsoidal organ; optionally one bright vessel.

    Returns (ct_hu float32, organ bool, spacing).
    """
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(np.float32)
    center = [(n - 1) / 2 for n in shape]
    r2 = sum(((idx[a] - center[a]) * spacing[a] / radii_mm[a]) ** 2 for a in range(3))
    body = sum(((idx[a] - center[a]) * spacing[a] / (0.5 * shape[a] * spacing[a] - 1)) ** 2 for a in range(2)) <= 1
    ct = np.full(shape, -1000.0, np.float32)
    ct[body] = 30.0
    organ = r2 <= 1.0
    ct[organ] = organ_hu
    ct += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    if vessel:
        # A 6 mm tube along Z through the organ's centre, 150 HU brighter than parenchyma.
        tube = ((idx[0] - center[0]) * spacing[0]) ** 2 + ((idx[1] - center[1]) * spacing[1]) ** 2 <= 9.0
        ct[tube & organ] += 150.0
    return ct, organ, tuple(spacing)


@pytest.fixture
def phantom():
    return make_phantom()


def register_batching_rules(name: str) -> list:
    """Register the rules generator as ``name`` with one batch key for every spec; return the list
    that records the number of jobs of each ``apply_batch`` call."""
    from tumorsyn.generators import register_generator
    from tumorsyn.generators.rules import RulesGenerator

    calls: list = []

    class BatchingRules(RulesGenerator):
        def batch_key(self, spec):
            return "one-batch"

        def apply_batch(self, jobs):
            calls.append(len(jobs))
            return super().apply_batch(jobs)

    BatchingRules.name = name
    register_generator(BatchingRules)
    return calls


@pytest.fixture(autouse=True)
def _generator_registry_restored():
    """Generators a test registers (register_batching_rules, plug-in tests) leave with it: error messages
    that list generators must not depend on which tests ran before."""
    from tumorsyn.generators import registry

    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


@pytest.fixture
def drawn_text(monkeypatch):
    """Every string drawn through PIL's ``ImageDraw.text``, in order (figure label tests)."""
    from PIL import ImageDraw

    seen: list[str] = []
    original = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):
        seen.append(text)
        return original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    return seen
