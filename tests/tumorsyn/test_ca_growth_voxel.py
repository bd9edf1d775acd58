"""CA tumours grow on voxels of at most 1 mm, so a coarse scan gets a round clone with its partial volume."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.generators.ca import calibration
from tumorsyn.generators.ca.generator import _partial_volume_mm
from tumorsyn.metrics.realism import lesion_descriptors


@pytest.fixture(scope="module")
def coarse():
    return make_phantom(shape=(40, 40, 30), spacing=(3.0, 3.0, 3.0), radii_mm=(50.0, 50.0, 40.0), noise_hu=8.0)


def test_growth_voxel_is_the_finest_spacing_at_most_the_cap():
    assert calibration.growth_voxel_mm((3.0, 3.0, 3.0), {"growth_mm": 1.0}) == 1.0
    assert calibration.growth_voxel_mm((0.78, 0.78, 1.6), {"growth_mm": 1.0}) == 0.78
    assert calibration.growth_voxel_mm((3.0, 3.0, 3.0), {}) == 3.0  # an older spec: the finest spacing
    # The step count counts growth voxels: 12 mm is 12 of them at 1 mm and 4 at 3 mm, each size kept.
    for params in ({"growth_mm": 1.0}, {}):
        steps = calibration.steps_for_diameter(12.0, (3.0, 3.0, 3.0), params)
        assert calibration.expected_diameter_mm(steps, (3.0, 3.0, 3.0), params) == pytest.approx(12.0, abs=0.6)
    assert (calibration.steps_for_diameter(12.0, (3.0, 3.0, 3.0), {"growth_mm": 1.0})
            > 1.8 * calibration.steps_for_diameter(12.0, (3.0, 3.0, 3.0), {}))


def test_partial_volume_is_what_the_growth_voxel_has_not_averaged():
    assert _partial_volume_mm((3.0, 3.0, 3.0), None) == [0.0, 0.0, 0.0]
    assert _partial_volume_mm((3.0, 3.0, 3.0), 1.0) == pytest.approx([math.sqrt(8.0 / 12.0)] * 3)
    assert _partial_volume_mm((0.78, 0.78, 1.6), 1.0) == pytest.approx([0.0, 0.0, math.sqrt((1.6 ** 2 - 0.78 ** 2) / 12)])


def _solidity(ct, organ, sp, spec):
    out, tumour = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
    return lesion_descriptors(out, tumour > 0, organ, sp)["solidity"]


def test_a_clone_on_3_mm_voxels_comes_out_solid(coarse):
    ct, organ, sp = coarse
    new, old = [], []
    for seed in range(4):
        spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 16.0), ct_hu=ct, rng=seed,
                                    device="cpu")
        assert spec.params["growth_mm"] == 1.0
        new.append(_solidity(ct, organ, sp, spec))
        # The same draw grown on the scan's own 3 mm voxels, as before growth_mm (steps for that grid).
        p = {k: v for k, v in spec.params.items() if k != "growth_mm"}
        p["steps"] = calibration.steps_for_diameter(13.0, sp, p)
        old.append(_solidity(ct, organ, sp, spec.with_params(params=p)))
    assert np.median(new) >= 0.75 and np.median(new) > np.median(old) + 0.15, (new, old)  # about 0.80 against 0.55


def test_specs_without_growth_mm_replay_as_drawn(coarse):
    ct, organ, sp = coarse
    spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="ca", size_mm=(10.0, 14.0), ct_hu=ct, rng=5,
                                device="cpu")
    old = spec.with_params(params={k: v for k, v in spec.params.items() if k != "growth_mm"})
    as_none = spec.with_params(params={**spec.params, "growth_mm": None})
    out_old, _ = tumorsyn.synthesize(ct, organ, sp, old, device="cpu")
    out_none, _ = tumorsyn.synthesize(ct, organ, sp, as_none, device="cpu")
    out_new, _ = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
    assert np.array_equal(out_old, out_none) and not np.array_equal(out_old, out_new)
    with pytest.raises(tumorsyn.errors.ConfigError, match="growth_mm must be a number of millimetres"):
        tumorsyn.synthesize(ct, organ, sp, spec.with_params(params={**spec.params, "growth_mm": 0.0}), device="cpu")
