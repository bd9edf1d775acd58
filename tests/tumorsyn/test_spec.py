import json

import numpy as np
import pytest

import tumorsyn
from tumorsyn.errors import ConfigError
from tumorsyn.spec import TumorSpec
from tests.conftest import make_phantom


def _spec(**changes):
    ct, organ, spacing = make_phantom()
    spec = tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(8, 12), ct_hu=ct, rng=1)
    return spec.with_params(**changes) if changes else spec


def test_json_round_trip_is_exact():
    spec = _spec()
    again = TumorSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(again.to_json()) == json.loads(spec.to_json())


def test_spec_holds_every_random_choice():
    spec = _spec()
    data = spec.to_dict()
    for key in ("seed", "center_vox", "size_mm", "organ_mean_hu", "organ_std_hu", "params"):
        assert key in data
    assert {"radii_mm", "rotation", "delta_hu", "texture_scale_mm"} <= set(data["params"])


@pytest.mark.parametrize("bad, message", [
    ({"seed": -1}, "seed"),
    ({"spacing_mm": [1, 0, 1]}, "spacing_mm"),
    ({"center_vox": [1, 2]}, "center_vox"),
    ({"size_mm": float("nan")}, "size_mm"),
    ({"version": 99}, "version"),
])
def test_bad_fields_are_named(bad, message):
    data = _spec().to_dict()
    data.update(bad)
    with pytest.raises(ConfigError, match=message):
        TumorSpec.from_dict(data)


def test_unknown_and_missing_fields_are_named():
    data = _spec().to_dict()
    with pytest.raises(ConfigError, match="unknown spec field"):
        TumorSpec.from_dict({**data, "colour": "red"})
    del data["seed"]
    with pytest.raises(ConfigError, match="lacks field"):
        TumorSpec.from_dict(data)


def test_not_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        TumorSpec.from_json("{nope")
