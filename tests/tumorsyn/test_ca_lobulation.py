"""CA tumours grow lobes: a smooth field on the tissue level, with the hard level nearly a barrier (large tumours at
0.12 x their size; early ones gentler, at 0.3 x, starting from a rounder stretch)."""
from __future__ import annotations

import numpy as np
import pytest

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.generators.ca.generator import (_EARLY_LOBE_STRETCH_POWER, _LOBE_HARD_LEVEL, _towards_round,
                                             lobulation_for_solidity)
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
    early = [lobulation_for_solidity(s, "early") for s in np.linspace(0.95, 0.7, 11)]
    assert early == sorted(early) and early[0] == 0.0 and early[-1] == pytest.approx(1.0)
    assert lobulation_for_solidity(0.859, "early") == pytest.approx(1.0)
    assert lobulation_for_solidity(0.859) > 1.0  # a large tumour needs a stronger field for the same solidity


def test_towards_round_keeps_the_order_and_the_volume():
    stretch = [1.3, 0.7, 1.1]
    rounder = _towards_round(stretch, 0.75)
    assert float(np.prod(rounder)) == pytest.approx(1.0)
    assert np.argsort(rounder).tolist() == np.argsort(stretch).tolist()
    assert max(rounder) / min(rounder) == pytest.approx((1.3 / 0.7) ** 0.75)
    assert _towards_round(stretch, 0.0) == pytest.approx([1.0, 1.0, 1.0])


def test_large_and_early_tumours_get_their_own_lobes(phantom):
    ct, organ, sp = phantom
    large = [tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(24.0, 30.0), ct_hu=ct, rng=seed,
                                  device="cpu") for seed in range(4)]
    lobed = [s for s in large if s.params["lobulation"]]
    assert lobed, [s.params["lobulation"] for s in large]
    for spec in lobed:
        lobes = spec.params["lobulation"]
        assert 0.0 < lobes["amplitude"] <= 2.0 and 2.0 < lobes["scale_mm"] < 5.0
        assert spec.params["invasion"]["high"] == pytest.approx(_LOBE_HARD_LEVEL * spec.params["invasion"]["mid"])
    early = [tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=seed,
                                  device="cpu") for seed in range(8)]
    lobed = [s for s in early if s.params["lobulation"]]
    assert lobed, [s.params["lobulation"] for s in early]
    for spec in lobed:
        lobes = spec.params["lobulation"]
        size = lobes["scale_mm"] / 0.3
        assert 0.0 < lobes["amplitude"] <= 1.0 and 8.0 < size < 16.0  # 0.3 x the drawn size, around 10-14 mm
        assert spec.params["invasion"]["high"] == pytest.approx(_LOBE_HARD_LEVEL * spec.params["invasion"]["mid"])


def test_lobes_change_only_the_last_draws_of_an_early_tumour(phantom, monkeypatch):
    """Unlobed (the solidity draw monkeypatched to 0.95), the same seed gives the same rates, look and stretch
    direction; lobed, the stretch is the same draw taken towards round."""
    from tumorsyn.generators.ca import generator

    ct, organ, sp = phantom
    lobed = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=5,
                                 device="cpu")
    assert lobed.params["lobulation"], "seed 5 draws a lobed early tumour"
    monkeypatch.setattr(generator, "lobulation_for_solidity", lambda solidity, size_class="large": 0.0)
    plain = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=5,
                                 device="cpu")
    assert plain.params["lobulation"] is None
    for key in ("delta_hu", "edge_mm", "texture_sd_hu", "p_proliferate"):
        assert plain.params[key] == lobed.params[key], key
    assert lobed.params["stretch"] == pytest.approx(_towards_round(plain.params["stretch"], _EARLY_LOBE_STRETCH_POWER))


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
