"""The diffusion generator's grain option: the model's content, the host's scanner noise (issue 16)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the diffusion generator needs torch (the diffusion extra)")
pytest.importorskip("diffusers", reason="the diffusion generator needs diffusers (the diffusion extra)")

import tumorsyn  # noqa: E402
from tumorsyn.apply import render_label  # noqa: E402
from tumorsyn.errors import ConfigError  # noqa: E402
from tumorsyn.generators.diffusion.grain import default_grain, grained, lowpass, with_grain  # noqa: E402
from tumorsyn.host import highpass_residual  # noqa: E402

from tests.train_diffusion.diffusion_helpers import (diffusion_spec, one_torch_thread, phantom_scan,  # noqa: E402,F401
                                                     untrained_model)


def _hp_sd(hu, region):
    return float(np.std(highpass_residual(np.asarray(hu, np.float32))[region]))


def test_with_grain_keeps_the_content_and_takes_the_grain():
    rng = np.random.default_rng(0)
    spacing = (1.0, 1.0, 1.5)
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (32, 32, 24)), indexing="ij")
    content = np.where((x - 16) ** 2 + (y - 16) ** 2 + ((z - 12) * 1.5) ** 2 < 64, 40.0, 100.0).astype(np.float32)
    source = rng.normal(60.0, 12.0, content.shape).astype(np.float32)
    out = with_grain(content, source, spacing)
    inner = (slice(4, -4),) * 3
    # low-pass of the result = low-pass of the content (the grain has no low-pass part left) ...
    assert np.abs(lowpass(out, spacing) - lowpass(content, spacing))[inner].mean() < 2.0
    # ... and its grain is the source's, voxel for voxel
    np.testing.assert_allclose((out - lowpass(content, spacing))[inner], (source - lowpass(source, spacing))[inner],
                               atol=1e-3)
    with pytest.raises(ValueError, match="differ in shape"):
        with_grain(content, source[:-1], spacing)


def test_noise_grain_keeps_the_values_and_adds_the_source_noise():
    rng = np.random.default_rng(1)
    spacing = (1.25, 1.25, 1.25)
    content = np.full((24, 24, 24), 70.0, np.float32)
    content[8:16, 8:16, 8:16] = 30.0  # a step edge the noise grain must keep
    source = rng.normal(100.0, 10.0, content.shape).astype(np.float32)
    out = grained("noise", content, source, spacing)
    np.testing.assert_allclose(out - content, source - lowpass(source, spacing), atol=1e-4)
    # the step is whole: the mean change across the edge is the content's 40 HU
    assert abs(float(out[10:14, 10:14, 10:14].mean() - out[18:22, 10:14, 10:14].mean()) + 40.0) < 3.0
    assert grained("model", content, source, spacing) is not None
    np.testing.assert_array_equal(grained("model", content, source, spacing), content)
    np.testing.assert_array_equal(grained("host", content, source, spacing), with_grain(content, source, spacing))
    with pytest.raises(ValueError, match="grain must be one of"):
        grained("film", content, source, spacing)
    with pytest.raises(ValueError, match="differ in shape"):
        grained("noise", content, source[:-1], spacing)


def test_default_grain_is_noise_for_a_model_with_a_refiner():
    assert default_grain({"refiner": {"class": "UNet"}}) == "noise"
    assert default_grain({}) == "model"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return untrained_model(tmp_path_factory.mktemp("grain") / "model")


@pytest.fixture(scope="module")
def scan():
    return phantom_scan(seed=5)


def _spec(scan, model, **options):
    return diffusion_spec(scan, model, rng=2, size_mm=(9, 12), **options)


def test_host_grain_keeps_the_scan_noise_under_the_tumour(scan, model):
    """grain=host changes only the low-pass part of the scan; grain=model (the default) replaces its noise."""
    ct, organ, spacing = scan
    host_noise = _hp_sd(ct, organ)
    assert _spec(scan, model).params["grain"] == "model"
    spec = _spec(scan, model, grain="host")
    out, _ = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
    # The shape (an untrained model's faint sample may be labelled only in part).
    slices, rendering = render_label(spec, organ)
    inside = np.zeros(organ.shape, bool)
    inside[slices] = rendering.label
    assert inside.sum() > 50
    out_model, _ = tumorsyn.synthesize(ct, organ, spacing, _spec(scan, model), device="cpu")
    assert _hp_sd(out_model - ct, inside) > 0.7 * host_noise  # the model's voxels replace the host's grain
    # with the host's grain the change is smooth (an untrained model's wild output leaves a little above 1.5 mm)
    assert _hp_sd(out - ct, inside) < 0.5 * _hp_sd(out_model - ct, inside)


def test_a_spec_without_grain_replays_as_the_model_s_own_voxels(scan, model):
    ct, organ, spacing = scan
    own = _spec(scan, model, grain="model")
    params = dict(own.params)
    del params["grain"]  # a spec written before the option existed
    old = own.with_params(params=params)
    a, _ = tumorsyn.synthesize(ct, organ, spacing, own, device="cpu")
    b, _ = tumorsyn.synthesize(ct, organ, spacing, old, device="cpu")
    assert np.array_equal(a, b)


def test_noise_grain_writes_the_model_values_plus_the_host_noise(scan, model):
    ct, organ, spacing = scan
    plain, _ = tumorsyn.synthesize(ct, organ, spacing, _spec(scan, model, grain="model"), device="cpu")
    noisy, _ = tumorsyn.synthesize(ct, organ, spacing, _spec(scan, model, grain="noise"), device="cpu")
    spec = _spec(scan, model, grain="noise")
    slices, rendering = render_label(spec, organ)
    inside = np.zeros(organ.shape, bool)
    inside[slices] = rendering.label
    assert inside.sum() > 50
    # Inside the shape the difference is the host's own high-pass noise (the blend weight is ~1 there).
    hp = ct - lowpass(ct, spacing)
    assert np.corrcoef((noisy - plain)[inside], hp[inside])[0, 1] > 0.9
    away = np.ones(organ.shape, bool)
    away[tuple(slice(max(sl.start - 4, 0), sl.stop + 4) for sl in slices)] = False  # beyond the tumour's box + blend
    assert np.array_equal(noisy[away], ct[away])


def test_bad_grain_is_refused(scan, model):
    spec = _spec(scan, model)
    bad = spec.with_params(params={**spec.params, "grain": "film"})
    ct, organ, spacing = scan
    with pytest.raises(ConfigError, match="diffusion grain must be one of host, model, noise"):
        tumorsyn.synthesize(ct, organ, spacing, bad, device="cpu")
