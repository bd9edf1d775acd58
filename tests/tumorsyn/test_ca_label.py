"""Early CA tumours are labelled at 0.7 of their contrast, as early rules tumours are; older specs replay."""
from __future__ import annotations

import numpy as np
import pytest

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.blend import LABEL_AT, LABEL_AT_TIGHT
from tumorsyn.generators.ca.generator import edge_mm_for_sharpness


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(56, 56, 40), spacing=(1.0, 1.0, 1.5), radii_mm=(24.0, 24.0, 24.0), noise_hu=6.0)


def _spec(phantom, size_mm, seed=2):
    ct, organ, sp = phantom
    return tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=size_mm, ct_hu=ct, rng=seed,
                                device="cpu", mass_effect=False, capsule=False)


def test_early_tumours_are_labelled_tight_and_large_ones_at_half_maximum(phantom):
    assert _spec(phantom, (10.0, 14.0)).params["label_at"] == LABEL_AT_TIGHT
    assert _spec(phantom, (21.0, 24.0)).params["label_at"] == LABEL_AT


def test_specs_without_label_at_replay_at_half_maximum(phantom):
    ct, organ, sp = phantom
    spec = _spec(phantom, (10.0, 14.0))
    old = spec.with_params(params={k: v for k, v in spec.params.items() if k != "label_at"})
    half = spec.with_params(params={**spec.params, "label_at": LABEL_AT})
    _, label_old = tumorsyn.synthesize(ct, organ, sp, old, device="cpu")
    _, label_half = tumorsyn.synthesize(ct, organ, sp, half, device="cpu")
    _, label_new = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
    assert np.array_equal(label_old, label_half)
    assert not (label_new & ~label_half).any() and np.count_nonzero(label_new) < np.count_nonzero(label_half)
    with pytest.raises(tumorsyn.errors.ConfigError, match="label_at must lie between 0 and 1"):
        tumorsyn.synthesize(ct, organ, sp, spec.with_params(params={**spec.params, "label_at": 0.0}), device="cpu")


def test_edge_tables_per_label_share():
    sharpness = np.linspace(0.4, 0.75, 8)
    tight = [edge_mm_for_sharpness(s, LABEL_AT_TIGHT) for s in sharpness]
    assert np.all(np.diff(tight) < 0)  # a sharper edge is a narrower blur
    assert edge_mm_for_sharpness(0.565, LABEL_AT_TIGHT) < edge_mm_for_sharpness(0.565)
    with pytest.raises(ValueError, match="no CA edge table for label_at 0.6"):
        edge_mm_for_sharpness(0.5, 0.6)
