"""Large CA tumours grow lobes: a smooth field on the tissue level, with the hard level nearly a barrier."""
from __future__ import annotations

import numpy as np
import pytest

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.generators.ca.generator import _LOBE_HARD_LEVEL, lobulation_for_solidity
from tumorsyn.generators.ca.model import HIGH, LOW, MID, SURFACE, VESSEL, tissue_classes
from tumorsyn.metrics.realism import lesion_descriptors


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(56, 56, 40), spacing=(1.5, 1.5, 1.5), radii_mm=(40.0, 38.0, 28.0), noise_hu=8.0,
                        vessel=True)


def _classes(ct, organ, sp, bias=None):
    return tissue_classes(organ, spacing_mm=sp, organ="liver", organ_mean_hu=100.0, organ_std_hu=10.0, ct_box=ct,
                          exophytic=False, level_bias=bias)


def test_the_bias_moves_levels_and_leaves_vessels(phantom):
    ct, organ, sp = phantom
    plain = _classes(ct, organ, sp)
    assert np.array_equal(_classes(ct, organ, sp, np.zeros(ct.shape, np.float32)), plain)
    up = _classes(ct, organ, sp, np.full(ct.shape, 3.0, np.float32))
    inside = (plain >= LOW) & (plain <= HIGH)
    assert (up[inside] == HIGH).all()  # three std up: every parenchyma voxel is hard
    assert np.array_equal(up == VESSEL, plain == VESSEL) and (plain == VESSEL).any()
    # Without a CT the organ is MID, and the bias still makes regions.
    half = np.where(np.indices(ct.shape)[0] < 28, 2.0, 0.0)
    homogeneous = tissue_classes(organ, spacing_mm=sp, organ="liver", organ_mean_hu=100.0, organ_std_hu=10.0,
                                 ct_box=None, exophytic=False, level_bias=half)
    inner = homogeneous[1:-1, 1:-1, 1:-1][organ]
    assert set(np.unique(inner)) == {SURFACE, MID, HIGH}  # the capsule's shell stays


def test_amplitude_follows_the_solidity_table():
    assert lobulation_for_solidity(0.95) == 0.0 and lobulation_for_solidity(0.90) == 0.0
    assert lobulation_for_solidity(0.837) == pytest.approx(2.0) and lobulation_for_solidity(0.5) == pytest.approx(2.0)
    values = [lobulation_for_solidity(s) for s in np.linspace(0.95, 0.7, 11)]
    assert values == sorted(values)  # less solid, more lobulated


def test_only_large_tumours_are_lobulated(phantom):
    ct, organ, sp = phantom
    early = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=3,
                                 device="cpu")
    assert "lobulation" not in early.params  # an early tumour's draws are what they were
    large = [tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(24.0, 30.0), ct_hu=ct, rng=seed,
                                  device="cpu") for seed in range(4)]
    lobed = [s for s in large if s.params["lobulation"]]
    assert lobed, [s.params["lobulation"] for s in large]
    for spec in lobed:
        lobes = spec.params["lobulation"]
        assert 0.0 < lobes["amplitude"] <= 2.0 and 2.0 < lobes["scale_mm"] < 5.0
        assert spec.params["invasion"]["high"] == pytest.approx(_LOBE_HARD_LEVEL * spec.params["invasion"]["mid"])


def test_lobes_make_large_tumours_less_solid(phantom):
    ct, organ, sp = phantom
    with_lobes, without = [], []
    for seed in range(3):
        spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(24.0, 30.0), ct_hu=ct, rng=seed,
                                    device="cpu", lobulation={"amplitude": 2.0, "scale_mm": 3.3})
        p = dict(spec.params)
        p["invasion"] = {**p["invasion"], "high": _LOBE_HARD_LEVEL * p["invasion"]["mid"]}
        spec = spec.with_params(params=p)
        plain = spec.with_params(params={**p, "lobulation": None})
        for target, s in ((with_lobes, spec), (without, plain)):
            out, tumour = tumorsyn.synthesize(ct, organ, sp, s, device="cpu")
            target.append(lesion_descriptors(out, tumour > 0, organ, sp)["solidity"])
        # Same spec, same bytes: the field comes from the spec's seed.
        again, _ = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
        assert np.array_equal(again, tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")[0])
    assert np.median(with_lobes) < np.median(without) - 0.04, (with_lobes, without)


def test_a_bad_lobulation_is_refused(phantom):
    ct, organ, sp = phantom
    spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=1,
                                device="cpu")
    bad = spec.with_params(params={**spec.params, "lobulation": {"amplitude": 2.0, "scale_mm": 0.0}})
    with pytest.raises(tumorsyn.errors.ConfigError, match="lobulation must be null"):
        tumorsyn.synthesize(ct, organ, sp, bad, device="cpu")
