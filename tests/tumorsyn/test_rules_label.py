"""Early rules tumours are labelled at 0.7 of their contrast, where real reference labels lie; older specs replay."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.blend import LABEL_AT, LABEL_AT_TIGHT, edge_mm_for_sharpness


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(64, 64, 40), spacing=(1.0, 1.0, 1.5), radii_mm=(28.0, 28.0, 26.0), noise_hu=0.0)


def _plain(spec):
    """The spec without texture or variants: what is left is the edge and the label."""
    return spec.with_params(params={**spec.params, "texture_sd_hu": 0.0, "texture_amount": 0.0, "rim": None,
                                    "capsule": None, "necrosis": None, "satellites": []})


def _early(phantom, seed=3):
    ct, organ, sp = phantom
    return _plain(tumorsyn.sample_spec(organ, sp, organ="liver", method="rules", size_mm=(10.0, 14.0), ct_hu=ct,
                                       rng=seed, appearance="hypodense", device="cpu"))


def test_early_tumours_are_labelled_tight_and_large_ones_at_half_maximum(phantom):
    ct, organ, sp = phantom
    assert _early(phantom).params["label_at"] == LABEL_AT_TIGHT == 0.7
    large = tumorsyn.sample_spec(organ, sp, organ="liver", method="rules", size_mm=(22.0, 26.0), ct_hu=ct, rng=0,
                                 device="cpu")
    assert large.params["label_at"] == LABEL_AT == 0.5


def test_the_ring_outside_the_label_carries_part_of_the_contrast(phantom):
    # Real early tumours: the first voxel layer outside the label carries about a third of the contrast.
    # A sigmoid labelled at its half-maximum leaves less there (on a 1 mm grid a quarter, on LiTS-117's a tenth).
    ct, organ, sp = phantom
    outer = {}
    for label_at in (LABEL_AT, LABEL_AT_TIGHT):
        spec = _early(phantom)
        spec = spec.with_params(params={**spec.params, "label_at": label_at})
        out, tumour = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
        lesion = tumour > 0
        ring = ndimage.binary_dilation(lesion) & ~lesion
        outer[label_at] = float(np.median(out[ring] - ct[ring])) / spec.params["delta_hu"]
    assert 0.3 < outer[LABEL_AT_TIGHT] < 0.6 and outer[LABEL_AT_TIGHT] > outer[LABEL_AT] + 0.1, outer


def test_specs_without_label_at_replay_at_half_maximum(phantom):
    ct, organ, sp = phantom
    spec = _early(phantom)
    old = spec.with_params(params={k: v for k, v in spec.params.items() if k != "label_at"})  # an older spec file
    half = spec.with_params(params={**spec.params, "label_at": 0.5})
    _, label_old = tumorsyn.synthesize(ct, organ, sp, old, device="cpu")
    _, label_half = tumorsyn.synthesize(ct, organ, sp, half, device="cpu")
    _, label_new = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
    assert np.array_equal(label_old, label_half)
    assert not (label_new & ~label_half).any() and np.count_nonzero(label_new) < np.count_nonzero(label_half)


def test_a_label_share_outside_zero_to_one_is_refused(phantom):
    ct, organ, sp = phantom
    spec = _early(phantom)
    with pytest.raises(tumorsyn.errors.ConfigError, match="label_at must lie between 0 and 1"):
        tumorsyn.synthesize(ct, organ, sp, spec.with_params(params={**spec.params, "label_at": 1.2}), device="cpu")


def test_edge_tables_per_label_share():
    sharpness = np.linspace(0.45, 0.8, 8)
    tight = [edge_mm_for_sharpness(s, size_mm=12.0, label_at=LABEL_AT_TIGHT) for s in sharpness]
    half = [edge_mm_for_sharpness(s, size_mm=12.0) for s in sharpness]
    assert np.all(np.diff(tight) < 0)  # a sharper edge is a narrower one
    assert all(t < h for t, h in zip(tight, half))  # drawn further inside, the same sharpness needs less width
    with pytest.raises(ValueError, match="no edge table for label_at 0.6"):
        edge_mm_for_sharpness(0.5, size_mm=12.0, label_at=0.6)
    with pytest.raises(ValueError, match="large tumours"):
        edge_mm_for_sharpness(0.4, size_mm=25.0, label_at=LABEL_AT_TIGHT)
