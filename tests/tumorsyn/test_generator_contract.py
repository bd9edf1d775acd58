"""One contract for every generator: it holds its device, one render signature, a box, public CA steps, one registry."""
from __future__ import annotations

import numpy as np
import pytest

import tumorsyn
from tumorsyn import blend
from tumorsyn.errors import ConfigError
from tumorsyn.generators import available_generators, generator_class, get_generator, registry

from tests.conftest import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(shape=(48, 48, 32), radii_mm=(20.0, 18.0, 18.0), seed=3)


def _spec(phantom, method, rng=0):
    ct, organ, spacing = phantom
    return tumorsyn.sample_spec(organ, spacing, organ="liver", method=method, size_mm=(8, 10), ct_hu=ct, rng=rng)


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_a_generator_holds_its_device(method):
    generator = get_generator(method, device="cpu")
    assert generator.device == "cpu"
    assert generator.to("auto") is generator and generator.device == "auto"
    assert generator.to("CPU").device == "cpu"           # one canonical spelling
    with pytest.raises(ConfigError, match="device must be"):
        generator.to("gpu")
    assert generator.device == "cpu"                     # a refused device leaves the generator as it was


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_every_render_takes_the_box_ct(phantom, method):
    ct, organ, _ = phantom
    spec = _spec(phantom, method)
    generator = get_generator(method, device="cpu")
    slices = generator.box(spec)
    origin = tuple(s.start for s in slices)
    with_ct = generator.render(spec, organ[slices], origin, ct_box=ct[slices])
    assert with_ct.label.any() and with_ct.label.shape == organ[slices].shape
    if not generator.uses_ct:  # ignored where the tumour does not depend on the scan
        np.testing.assert_array_equal(generator.render(spec, organ[slices], origin).label, with_ct.label)


def test_the_box_holds_every_changed_voxel(phantom):
    ct, organ, spacing = phantom
    spec = _spec(phantom, "rules")
    slices = get_generator("rules").box(spec)
    out, _ = tumorsyn.synthesize(ct, organ, spacing, spec)
    outside = np.ones(ct.shape, bool)
    outside[slices] = False
    assert (out != ct)[slices].any() and not (out != ct)[outside].any()


def test_the_automaton_steps_are_public_and_make_apply(phantom):
    ct, organ, _ = phantom
    spec = _spec(phantom, "ca")
    generator = get_generator("ca", device="cpu")
    slices = generator.box(spec)
    origin = tuple(s.start for s in slices)
    result, _ = generator.grow(spec, organ[slices], origin, ct_box=ct[slices])
    pop = result.pop[1:-1, 1:-1, 1:-1]
    out, label, changed = generator.compose(ct[slices], organ[slices], spec, pop)
    applied = generator.apply(ct[slices], organ[slices], spec, origin)
    np.testing.assert_array_equal(out, applied[0])
    np.testing.assert_array_equal(label, applied[1])
    np.testing.assert_array_equal(generator.label(spec, pop, organ[slices]), label)


def test_builtins_come_through_the_entry_points_only(monkeypatch):
    assert {"rules", "ca", "diffusion"} <= set(available_generators())
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    monkeypatch.setattr(registry, "_REGISTRY", {})
    assert available_generators() == []
    with pytest.raises(ConfigError, match="unknown method 'rules'.*entry points"):
        generator_class("rules")


def test_blend_leaves_weightless_voxels_untouched():
    ct = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    w = np.zeros(ct.shape, np.float32)
    w[1, 1, 1] = 0.5
    target = np.full(ct.shape, 100.0, np.float32)
    out, changed = blend.blend(ct, w, target, ct.astype(np.float32))
    assert out.dtype == np.float32 and changed.sum() == 1
    assert out[1, 1, 1] == 13 + 0.5 * (100 - 13)
    np.testing.assert_array_equal(out[~changed], ct[~changed])


def test_sigmoid_weight_drops_faint_presence():
    distance = np.linspace(-10, 10, 201, dtype=np.float32)
    w = blend.sigmoid_weight(distance, 2.0)
    assert w.dtype == np.float32 and w[0] > 0.99 and w[-1] == 0.0
    assert w[(w > 0)].min() >= blend.MIN_WEIGHT
    # The edge reach covers every voxel the sigmoid still changes.
    assert distance[w > 0].max() <= blend.edge_reach_mm(2.0)
