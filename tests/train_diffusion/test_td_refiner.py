"""The border refiner stage: training, resume, the model folder, sampling with it; and the noise-based host spread."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tumorsyn.errors import ConfigError, ModelError
from tumorsyn.generators.diffusion.model_folder import clear_cache, load_model
from tumorsyn.generators.diffusion.sampler import decode, encode, inpaint
from train_diffusion.train import train
from train_diffusion.train_refiner import _blur, degraded_decode

from diffusion_helpers import tiny_config, torch_threads

REFINER = ("refiner.steps=3", "refiner.channels=[4,8]", "refiner.batch_size=2", "train.preview_every=2")


@pytest.fixture(scope="module")
def refined_run(tmp_path_factory, phantom_sources):
    """A tiny run with a 3-step refiner: ``(config, model folder)``."""
    config = tiny_config(tmp_path_factory.mktemp("refined") / "run", phantom_sources, *REFINER)
    with torch_threads(1):
        return config, train(config, quiet=True)


def test_refiner_run_writes_its_weights_logs_and_previews(refined_run):
    config, folder = refined_run
    run = folder.parent
    assert (folder / "refiner.safetensors").is_file()
    meta = json.loads((folder / "config.json").read_text())
    assert meta["refiner"]["class"] == "UNet" and meta["refiner"]["kwargs"]["in_channels"] == 3
    assert meta["refiner"]["weights"] == "refiner.safetensors" and meta["training"]["refiner_steps"] == 3
    rows = (run / "steps_refiner.csv").read_text().splitlines()
    assert rows[0].startswith("step,l1_inside,l1_outside") and len(rows) == 4
    assert (run / "previews" / "refiner_step0000002.png").is_file() and (run / "curves_refiner.png").is_file()
    clear_cache()
    model = load_model(folder, device="cpu")
    assert model.refiner is not None and not model.refiner.training


def test_a_run_without_refiner_has_none(trained_run):
    _, folder = trained_run
    assert not (folder / "refiner.safetensors").exists()
    assert "refiner" not in json.loads((folder / "config.json").read_text())
    assert load_model(folder, device="cpu").refiner is None


def test_sampling_adds_the_refiner_correction_where_the_exact_shape_says(refined_run):
    _, folder = refined_run
    model = load_model(folder, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.3, 0.3, (1, 16, 16, 16)).astype(np.float32)
    masks = np.zeros_like(images, dtype=bool)
    masks[:, 5:11, 5:11, 5:11] = True
    cores = np.zeros_like(masks)
    cores[:, 6:10, 6:10, 6:10] = True
    refined = inpaint(model, images, masks, seeds=[4], steps=2, cores=cores)
    again = inpaint(model, images, masks, seeds=[4], steps=2, cores=cores)
    np.testing.assert_array_equal(refined, again)  # same seed, same bytes
    plain = inpaint(dataclasses.replace(model, refiner=None), images, masks, seeds=[4], steps=2, cores=cores)
    assert np.abs(refined - plain).max() > 1e-3
    # The refiner reads the exact shape: another shape under the same grown region changes the output.
    other = inpaint(model, images, masks, seeds=[4], steps=2, cores=masks)
    assert np.abs(refined - other).max() > 1e-4
    with pytest.raises(ValueError, match="cores must have the masks' shape"):
        inpaint(model, images, masks, seeds=[4], steps=2, cores=cores[:, :8])


def test_refiner_resume_gives_the_same_weights(tmp_path, refined_run, phantom_sources):
    _, reference = refined_run
    config = tiny_config(tmp_path / "run", phantom_sources, *REFINER)
    assert train(config, quiet=True, stop_at=("refiner", 1)) is None
    assert (tmp_path / "run" / "refiner" / "checkpoints" / "LAST").read_text() == "step_0000001"
    assert not (tmp_path / "run" / "model").exists()
    folder = train(config, quiet=True)
    ours, theirs = load_file(str(folder / "refiner.safetensors")), load_file(str(reference / "refiner.safetensors"))
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_stage_refiner_needs_the_autoencoder_and_steps(tmp_path, phantom_sources):
    with pytest.raises(ConfigError, match="train.stage=refiner trains nothing with refiner.steps=0"):
        tiny_config(tmp_path / "a", phantom_sources, "train.stage=refiner")
    with pytest.raises(ConfigError, match="refiner.steps must be an integer >= 0"):
        tiny_config(tmp_path / "b", phantom_sources, "refiner.steps=-1")
    with pytest.raises(ConfigError, match=r"refiner.contrast_shrink must lie in \[0, 1\]"):
        tiny_config(tmp_path / "e", phantom_sources, "refiner.contrast_shrink=1.5")
    with pytest.raises(ConfigError, match="refiner.channels must list >= 2 positive integers"):
        tiny_config(tmp_path / "c", phantom_sources, "refiner.steps=1", "refiner.channels=[4]")
    config = tiny_config(tmp_path / "d", phantom_sources, "refiner.steps=1", "train.stage=refiner")
    with pytest.raises(ConfigError, match="no trained autoencoder"):
        train(config, quiet=True)


def test_model_folder_naming_a_refiner_needs_its_weights(tmp_path, refined_run):
    import shutil

    folder = shutil.copytree(refined_run[1], tmp_path / "model")
    (folder / "refiner.safetensors").unlink()
    clear_cache()
    with pytest.raises(ModelError, match="missing refiner.safetensors"):
        load_model(folder, device="cpu")


def _round_trip(folder, *, seed: int, crops: int, region: slice):
    """The model's autoencoder, random crops, a cubic region in each and their plain round trip."""
    ae = load_model(folder, device="cpu").autoencoder
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-0.5, 0.5, (crops, 1, 16, 16, 16)).astype(np.float32))
    m = torch.zeros_like(x)
    m[:, :, region, region, region] = 1.0
    return ae, x, m, decode(ae, encode(ae, x)).float()


def test_degraded_decode_without_degradation_is_the_round_trip(refined_run):
    ae, x, m, plain = _round_trip(refined_run[1], seed=1, crops=2, region=slice(4, 12))
    same = degraded_decode(ae, x, m, latent_noise=0.0, blur_vox=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, plain)
    noisy = degraded_decode(ae, x, m, latent_noise=2.0, blur_vox=1.5, generator=torch.Generator().manual_seed(0))
    assert (noisy - plain).abs().max() > 1e-3
    # The same generator, the same degradations.
    again = degraded_decode(ae, x, m, latent_noise=2.0, blur_vox=1.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, again)


def test_contrast_shrink_pulls_the_region_towards_its_ring(refined_run):
    ae, x, m, plain = _round_trip(refined_run[1], seed=2, crops=3, region=slice(5, 11))
    shrunk = degraded_decode(ae, x, m, latent_noise=0.0, blur_vox=0.0, generator=torch.Generator().manual_seed(3),
                             contrast_shrink=1.0)
    torch.testing.assert_close(shrunk * (1 - m), plain * (1 - m))  # outside the region: untouched
    ring = torch.nn.functional.max_pool3d(m, 3, stride=1, padding=1) - m
    level = (plain * ring).sum(dim=(1, 2, 3, 4), keepdim=True) / ring.sum(dim=(1, 2, 3, 4), keepdim=True)
    inside = m > 0
    before, after = (plain - level).abs()[inside], (shrunk - level).abs()[inside]
    assert bool((after <= before + 1e-6).all()) and float(after.sum()) < 0.99 * float(before.sum())


def test_blur_keeps_the_mean_and_spreads_a_point_by_its_sigma():
    volume = torch.zeros(1, 1, 21, 21, 21)
    volume[0, 0, 10, 10, 10] = 1.0
    out = _blur(volume, 1.5)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(21, dtype=torch.float32) - 10
    variance = float((out[0, 0].sum(dim=(1, 2)) * offsets ** 2).sum())
    assert variance == pytest.approx(1.5 ** 2, rel=0.02)
    torch.testing.assert_close(_blur(torch.full((1, 1, 6, 6, 6), 0.3), 1.0), torch.full((1, 1, 6, 6, 6), 0.3))


# --- the host's spread from its noise ------------------------------------------------------------------

def test_spread_per_noise_is_the_median_crop_spread_over_shell_noise():
    from train_diffusion.data import CropBank, spread_per_noise

    bank = CropBank(crop_size=(4, 4, 4), jitter_vox=(0, 0, 0))
    bank.tumors = [{"shell_noise_ref_hu": 10.0}, {"shell_noise_ref_hu": 10.0}, {"shell_noise_ref_hu": 20.0},
                   {"shell_noise_ref_hu": None}]
    # Window (m + a s, m + b s) with (a, b) = (-12, 8): width 20 s.
    bank.tumor_windows = [(100 - 120.0, 100 + 80.0), (0.0, 20 * 15.0), (0.0, 20 * 10.0), (0.0, 20 * 99.0)]
    assert spread_per_noise(bank, (-12, 8)) == pytest.approx(1.0)  # ratios 1.0, 1.5, 0.5 (the last has no shell)
    bank.tumors = [{"shell_noise_ref_hu": None}]
    bank.tumor_windows = bank.tumor_windows[:1]
    assert spread_per_noise(bank, (-12, 8)) is None


def test_trained_relative_model_takes_the_host_spread_from_the_tumour_shell_noise(refined_run):
    import tumorsyn
    from tumorsyn.generators import get_generator
    from tumorsyn.metrics.realism.descriptors import lesion_descriptors

    from diffusion_helpers import diffusion_spec, phantom_scan

    _, folder = refined_run
    meta = json.loads((folder / "config.json").read_text())["training"]
    per_noise = meta["spread_per_noise"]
    assert per_noise > 0 and all(t["shell_noise_ref_hu"] > 0 for t in meta["tumours"])
    scan = phantom_scan()
    ct, organ, spacing = scan
    spec = diffusion_spec(scan, folder)
    assert spec.params["host_spread"] == "shell_noise"
    gen = get_generator("diffusion", device="cpu")
    local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
    origin = tuple(s.start for s in local.slices)
    model = gen._model(spec)
    a, b = model.relative_window_sd
    _, _, window = gen.crop_for(ct[local.slices], spec, origin, model, organ_box=organ[local.slices])
    # The unit is tumorsyn realism's: the shell noise of the shape about to be written, on the host's grid.
    shape = gen.render(spec, organ[local.slices], origin).presence
    noise = lesion_descriptors(ct[local.slices], shape, organ[local.slices], spacing)["shell_noise_ref_hu"]
    assert (window[1] - window[0]) / (b - a) == pytest.approx(per_noise * noise, rel=1e-6)
    # A spec drawn before the key existed keeps the ring spread it was drawn with.
    legacy = spec.with_params(params={k: v for k, v in spec.params.items() if k != "host_spread"})
    _, _, ring = gen.crop_for(ct[local.slices], legacy, origin, model, organ_box=organ[local.slices])
    assert ring != window
    with pytest.raises(ConfigError, match="diffusion host_spread must be one of ring, shell_noise"):
        gen.validate(spec.with_params(params={**spec.params, "host_spread": "organ"}))


def test_a_bank_built_without_cores_still_batches():
    """Benchmarks build banks by hand with images and masks only (bench_diffusion's training timing)."""
    from train_diffusion.data import CropBank

    bank = CropBank(crop_size=(4, 4, 4), jitter_vox=(1, 1, 1), tumor_images=[np.zeros((6, 6, 6), np.float32)],
                    tumor_masks=[np.ones((6, 6, 6), bool)])
    x, m = bank.batch("tumor", 2, seed=0, stage="autoencoder", index=0)
    assert x.shape == m.shape == (2, 1, 4, 4, 4) and m.all()


def _placed_spec(folder):
    """A refiner model's spec in the phantom liver: ``(ct, organ, spacing, spec, generator, model, placed tumour, box
    origin)``."""
    import tumorsyn
    from tumorsyn.generators import get_generator

    from diffusion_helpers import diffusion_spec, phantom_scan

    ct, organ, spacing = scan = phantom_scan()
    spec = diffusion_spec(scan, folder)
    gen = get_generator("diffusion", device="cpu")
    local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
    return ct, organ, spacing, spec, gen, gen._model(spec), local, tuple(s.start for s in local.slices)


def test_a_refiner_model_writes_its_values_over_its_region_without_a_second_edge(refined_run):
    """blend "region": the model's values replace the scan's exactly where it generated (the shape grown by
    mask_dilate_mm), as --evaluate measures them; older specs keep the sigmoid edge."""
    import tumorsyn

    ct, organ, spacing, spec, gen, model, local, origin = _placed_spec(refined_run[1])
    assert spec.params["blend"] == "region"
    out, _ = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
    distance = gen._distance(spec, organ[local.slices].shape, origin)
    region = (distance <= model.mask_dilate_mm) & organ[local.slices]
    changed = out[local.slices] != ct[local.slices]
    assert changed.any() and not (changed & ~region).any()  # nothing written outside the generated region
    outside = np.ones(ct.shape, bool)
    outside[local.slices] = False
    assert np.array_equal(out[outside], ct[outside])
    legacy = spec.with_params(params={k: v for k, v in spec.params.items() if k != "blend"})
    old, _ = tumorsyn.synthesize(ct, organ, spacing, legacy, device="cpu")
    assert ((old[local.slices] != ct[local.slices]) & ~region).any()  # the sigmoid edge reaches beyond it
    with pytest.raises(ConfigError, match="diffusion blend must be one of edge, region"):
        gen.validate(spec.with_params(params={**spec.params, "blend": "soft"}))


def test_a_refiner_model_is_read_back_with_its_border_at_the_shape(refined_run):
    """resample "shape": the written crop is the model's, each side of the border from its own model voxels
    (tumorsyn.generators.diffusion.resample); specs drawn before the key replay with the partial-volume
    interpolation they were drawn with."""
    import tumorsyn

    ct, organ, spacing, spec, gen, model, local, origin = _placed_spec(refined_run[1])
    assert spec.params["resample"] == "shape"
    box = organ[local.slices].shape
    # A crop that is 100 HU on the tumour's shape (on the model's grid) and 0 elsewhere reads back as exactly
    # that on the scan's grid: no scan voxel mixes the two sides (the phantom's voxels are finer than 1 model voxel
    # plus the box, so each reads one point).
    core = gen.shape_on_model_grid(spec, model)
    crop = np.where(core, 100.0, 0.0).astype(np.float32)
    shape = gen._distance(spec, box, origin) <= 0
    written = gen.back_to_box(crop, box, spec, origin, model)
    np.testing.assert_allclose(written[shape], 100.0, atol=1e-3)
    np.testing.assert_allclose(written[~shape], 0.0, atol=1e-3)
    legacy = spec.with_params(params={**spec.params, "resample": "area"})
    mixed = gen.back_to_box(crop, box, legacy, origin, model)
    assert np.count_nonzero((mixed > 1.0) & (mixed < 99.0)) > 0
    out, label = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
    again, _ = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
    assert label.any() and np.array_equal(out, again)  # same spec, same bytes
