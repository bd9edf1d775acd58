"""The diffusion generator: same spec, same voxels; untouched voxels byte-identical; batches; options; transform."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the diffusion generator needs torch (the diffusion extra)")
pytest.importorskip("diffusers", reason="the diffusion generator needs diffusers (the diffusion extra)")

import tumorsyn  # noqa: E402
from tumorsyn.errors import ConfigError, ModelError  # noqa: E402
from tumorsyn.blend import edge_reach_mm  # noqa: E402
from tumorsyn.generators import get_generator  # noqa: E402
from tumorsyn.generators.diffusion.model_folder import clear_cache  # noqa: E402
from tumorsyn.shapes import shape_reach_mm  # noqa: E402
from tumorsyn.spec import TumorSpec  # noqa: E402

from tests.train_diffusion.diffusion_helpers import (diffusion_spec, one_torch_thread, phantom_scan, torch_threads,  # noqa: E402,F401
                                                     tiny_config, write_phantom_case)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model trained for 3 + 3 steps on phantom tumours: the save -> load -> sample round trip."""
    from train_diffusion.train import train

    root = tmp_path_factory.mktemp("diffusion")
    sources = [write_phantom_case(root / "case0", seed=0)]
    with torch_threads(1):
        return train(tiny_config(root / "run", sources, "train.preview_every=0"), quiet=True)


@pytest.fixture(scope="module")
def scan():
    return phantom_scan()


_spec = diffusion_spec


def test_spec_records_model_and_same_spec_gives_same_voxels(scan, model_dir):
    ct, organ, spacing = scan
    spec = _spec(scan, model_dir)
    p = spec.params
    assert p["model"] == str(model_dir.resolve()) and len(p["model_sha256"]) == 64
    assert p["steps"] == 3 and p["sampler"] == "dpm_solver" and p["satellites"] == []
    out1, tumor1 = tumorsyn.synthesize(ct, organ, spacing, spec)
    replay = TumorSpec.from_json(spec.to_json())
    clear_cache()  # a fresh load gives the same bytes too
    out2, tumor2 = tumorsyn.synthesize(ct, organ, spacing, replay)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(tumor1, tumor2)


def test_only_the_blend_zone_changes_and_the_label_is_inside_it(scan, model_dir):
    ct, organ, spacing = scan
    spec = _spec(scan, model_dir, rng=1)
    local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
    changed = np.zeros(ct.shape, bool)
    changed[local.slices] = local.changed_box
    out, tumor = tumorsyn.synthesize(ct, organ, spacing, spec)
    np.testing.assert_array_equal(out[~changed], ct[~changed])  # untouched voxels identical
    assert changed.any() and not (changed & ~organ).any()        # blending stays in the organ
    assert not (tumor.astype(bool) & ~changed).any()            # the label is only where HU changed
    # the blend zone is the shape's: within its reach of the centre (mm)
    idx = np.argwhere(changed)
    reach = np.sqrt((((idx - np.array(spec.center_vox)) * np.array(spacing)) ** 2).sum(1)).max()
    assert reach <= shape_reach_mm(spec.params) + edge_reach_mm(spec.params["edge_mm"]) + 1.0


def test_shape_draw_is_the_rules_generators(scan, model_dir, monkeypatch):
    """Diffusion draws its shape with the core's shape functions, as the rules generator does for one seed.

    The edge sharpness drawn is the same too; each generator turns it into a width for where it labels the
    tumour (rules: early tumours at 0.7 of their contrast; diffusion: its own visible label, blended at 0.5).
    """
    import tumorsyn.shapes
    from tumorsyn.organs import get_preset

    drawn = []
    table = tumorsyn.shapes.edge_mm_for_sharpness
    def recorded(sharpness, **kw):
        drawn.append((sharpness, kw.get("label_at", 0.5)))
        return table(sharpness, **kw)

    monkeypatch.setattr(tumorsyn.shapes, "edge_mm_for_sharpness", recorded)
    kwargs = dict(size_mm=10.0, preset=get_preset("liver"), organ_mean_hu=100.0, organ_std_hu=15.0,
                  spacing_mm=(1.0, 1.0, 1.0), organ_noise_hu=12.0)
    for seed in range(5):
        drawn.clear()
        rules = get_generator("rules").sample_params(np.random.default_rng(seed), options={}, **kwargs)
        diffusion = get_generator("diffusion").sample_params(np.random.default_rng(seed),
                                                             options={"model": str(model_dir)}, **kwargs)
        for key in ("radii_mm", "rotation", "lobes", "deform_amplitude"):
            assert diffusion[key] == rules[key], key
        assert diffusion["satellites"] == []
        (rules_sharpness, rules_label_at), (diffusion_sharpness, diffusion_label_at) = drawn
        assert rules_sharpness == diffusion_sharpness
        assert (rules_label_at, diffusion_label_at) == (0.7, 0.5) and rules["label_at"] == 0.7
        assert rules["edge_mm"] == table(rules_sharpness, size_mm=10.0, label_at=0.7)
        assert diffusion["edge_mm"] == table(diffusion_sharpness, size_mm=10.0)


def test_label_is_what_is_visible(scan, model_dir):
    ct, organ, spacing = scan
    gen = get_generator("diffusion", device="cpu")
    spec = _spec(scan, model_dir, rng=2)
    local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
    # A generated crop equal to the scan changes nothing visible: no label.
    origin = tuple(s.start for s in local.slices)
    model = gen._model(spec)
    same = gen.crop_for(ct[local.slices], spec, origin, model)[0]
    from tumorsyn.generators.diffusion.sampler import unit_to_hu
    box = ct[local.slices]
    flat = np.full(model.crop_size, float(np.median(box[organ[local.slices]])), np.float32)
    _, label, _ = gen.compose(box, organ[local.slices], spec, origin, flat, model)
    assert not label.any() or label.sum() < local.changed_box.sum()  # a flat fill hides only noise
    dark = flat - 150.0  # a clearly darker fill is visible over the whole shape
    _, label_dark, changed = gen.compose(box, organ[local.slices], spec, origin, dark, model)
    shape = gen.render(spec, organ[local.slices], origin).label
    assert label_dark[shape].mean() > 0.9 and not (label_dark & ~changed).any()
    assert unit_to_hu(same, model.hu_window).shape == model.crop_size


def test_visible_label_is_the_placed_shape_and_never_leaves_it(scan, model_dir):
    """Issue 16: the label of a visible sample is exactly the mask placement sized (so the size range
    holds), not the blend zone around it; an isodense sample's label stays inside the shape."""
    ct, organ, spacing = scan
    gen = get_generator("diffusion", device="cpu")
    spec = _spec(scan, model_dir, rng=2)
    local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
    origin = tuple(s.start for s in local.slices)
    box, organ_box = ct[local.slices], organ[local.slices]
    model = gen._model(spec)
    shape = gen.render(spec, organ_box, origin).label
    level = float(np.median(box[organ_box]))
    for contrast in (-60.0, 45.0):  # hypo- and hyperdense fills, well above visible_hu
        fill = np.full(model.crop_size, level + contrast, np.float32)
        _, label, changed = gen.compose(box, organ_box, spec, origin, fill, model)
        np.testing.assert_array_equal(label, shape)
        assert (changed & ~shape).any()  # the blend zone outside the shape is written, not labelled
    isodense = np.full(model.crop_size, level + 0.5 * spec.params["visible_hu"], np.float32)
    _, label, _ = gen.compose(box, organ_box, spec, origin, isodense, model)
    assert not (label & ~shape).any() and label.sum() < shape.sum()
    # what apply writes for this spec is the shape too (the tiny model's sample is visible here)
    np.testing.assert_array_equal(local.label_box, shape)


def test_model_fills_the_shape_grown_as_training_grew_its_masks(scan, model_dir, monkeypatch):
    """The model learnt masks grown by data.mask_dilate_mm around its tumours: it is asked for the same."""
    from tumorsyn.generators.diffusion import sampler

    ct, organ, spacing = scan
    seen = []
    original = sampler.inpaint
    monkeypatch.setattr(sampler, "inpaint", lambda model, images, masks, **k: (seen.append(np.array(masks)),
                                                                               original(model, images, masks, **k))[1])
    spec = _spec(scan, model_dir, rng=3)
    tumorsyn.apply_specs(ct, organ, spacing, spec, device="cpu")
    gen = get_generator("diffusion", device="cpu")
    model = gen._model(spec)
    size = model.crop_size
    shape = gen._distance(spec, size, (0, 0, 0), spacing_mm=model.spacing_mm,
                          center=tuple(0.5 * (n - 1) for n in size)) <= 0
    dilate = json.loads((model_dir / "config.json").read_text())["data"]["mask_dilate_mm"]
    assert dilate > 0 and len(seen) == 1
    np.testing.assert_array_equal(seen[0][0], sampler.grow_mask(shape, model.spacing_mm, dilate))
    assert seen[0][0].sum() > shape.sum()


def test_batch_gives_the_same_tumours_as_one_by_one(scan, model_dir):
    ct, organ, spacing = scan
    gen = get_generator("diffusion", device="cpu")
    specs = [_spec(scan, model_dir, rng=k) for k in (4, 5)]
    jobs = []
    for spec in specs:
        local = tumorsyn.apply_specs(ct, organ, spacing, spec).tumors[0]
        jobs.append((ct[local.slices], organ[local.slices], spec, tuple(s.start for s in local.slices), local))
    batch = gen.apply_batch([job[:4] for job in jobs])
    for (_, _, _, _, local), (ct_box, label, changed) in zip(jobs, batch):
        np.testing.assert_allclose(ct_box, local.ct_box, atol=0.05)
        np.testing.assert_array_equal(changed, local.changed_box)


@pytest.mark.parametrize("sampler", ["ddim", "unipc"])
def test_steps_and_sampler_options(scan, model_dir, sampler):
    ct, organ, spacing = scan
    spec = _spec(scan, model_dir, steps=2, sampler=sampler)
    assert spec.params["steps"] == 2 and spec.params["sampler"] == sampler
    out, tumor = tumorsyn.synthesize(ct, organ, spacing, spec)
    assert np.isfinite(out).all()


def test_errors(scan, model_dir, tmp_path):
    ct, organ, spacing = scan
    with pytest.raises(ModelError, match="needs a trained model"):
        tumorsyn.sample_spec(organ, spacing, organ="liver", method="diffusion", size_mm=10, ct_hu=ct, rng=0)
    with pytest.raises(ModelError, match="model folder not found"):
        _spec(scan, tmp_path / "nothing")
    spec = _spec(scan, model_dir)
    gen = get_generator("diffusion")
    big = gen.rescale(spec, 4.0).with_params(size_mm=spec.size_mm * 4.0)
    with pytest.raises(ConfigError, match="does not fit the model's crop"):
        gen.validate(big)
    with pytest.raises(ConfigError, match="reaches the border of the model's"):
        gen.crop_for(ct, gen.rescale(spec, 3.5), (0, 0, 0), gen._model(spec))
    gen.validate(spec.with_params(organ="kidney"))  # relative (the default) serves any organ; absolute: test_diffusion_intensity.py
    with pytest.raises(ConfigError, match="sampler must be one of"):
        gen.validate(spec.with_params(params={**spec.params, "sampler": "magic"}))
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["sampling"]["sampler"] == "dpm_solver"


def test_transform_in_a_training_pipeline_loads_the_model_once(scan, model_dir, monkeypatch):
    import safetensors.torch

    from tumorsyn.transforms import RandTumorSynthesisd

    ct, organ, spacing = scan
    loads = []
    real = safetensors.torch.load_file
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: (loads.append(a[0]), real(*a, **k))[1])
    clear_cache()
    t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", label_preset="binary", method="diffusion",
                            size_mm=(8, 11), prob=1.0, spacing_mm=spacing, model=str(model_dir))
    t.set_random_state(seed=0)
    item = {"image": ct[None].copy(), "label": organ[None].astype(np.uint8)}
    for epoch in range(3):
        out = t(item)
        assert out["image"].shape == item["image"].shape
        specs = out["tumor_specs"]
        assert len(specs) == 1 and specs[0]["method"] == "diffusion"
    assert len(loads) == 2  # autoencoder + UNet, once for every epoch


def test_transform_samples_a_whole_batch_of_items_in_one_network_batch(scan, model_dir, monkeypatch):
    """``apply_items``: every item's tumour in one inpainting call; the same tumours as one by one."""
    from tumorsyn.generators.diffusion import sampler
    from tumorsyn.transforms import RandTumorSynthesisd

    ct, organ, spacing = scan
    sizes = []
    original = sampler.inpaint  # the generator imports it at call time, so the patch is seen
    monkeypatch.setattr(sampler, "inpaint", lambda model, images, *a, **k: (sizes.append(len(images)),
                                                                          original(model, images, *a, **k))[1])
    t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", label_preset="binary", method="diffusion",
                            size_mm=(8, 11), prob=1.0, spacing_mm=spacing, model=str(model_dir), device="cpu")
    items = [{"image": ct[None].copy(), "label": organ[None].astype(np.uint8)} for _ in range(3)]
    batched = t.apply_items(items, seeds=[5, 6, 7])
    assert sizes == [3]
    for seed, out in zip([5, 6, 7], batched):
        single = t.set_random_state(seed)(items[0])
        assert out["tumor_specs"] == single["tumor_specs"]
        np.testing.assert_allclose(out["image"], single["image"], atol=0.05)
        np.testing.assert_array_equal(out["label"], single["label"])
    assert len({json.dumps(o["tumor_specs"]) for o in batched}) == 3  # three different tumours


def test_warns_when_the_host_organ_is_far_from_what_the_model_learnt(scan, model_dir, tmp_path):
    """An absolute-HU model (a relative one handles the phase: tests/tumorsyn/test_diffusion_intensity.py)."""
    import shutil
    import warnings

    ct, organ, spacing = scan
    absolute = tmp_path / "model"
    shutil.copytree(model_dir, absolute)
    config = json.loads((absolute / "config.json").read_text())
    config["data"]["intensity"] = "absolute"
    (absolute / "config.json").write_text(json.dumps(config))
    learnt = config["training"]["organ_median_hu"]
    assert abs(learnt - float(np.median(ct[organ]))) < 40  # phantoms of one kind: trained and host alike
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _spec(scan, absolute)
    darker = (ct - 120.0, organ, spacing)  # e.g. a non-contrast scan for a venous-phase model
    with pytest.warns(UserWarning, match=r"learnt organs of about .* HU, this organ is .* \(another contrast phase"):
        _spec(darker, absolute)


def test_a_coarse_scan_averages_the_model_crop_over_its_voxels(scan, model_dir):
    """resample "area": a scan voxel larger than the model's reads the crop's mean over it (partial volume);
    on a scan finer than the model nothing changes, and specs without the key replay point sampling."""
    spec = _spec(scan, model_dir)
    assert spec.params["resample"] == "area"
    gen = get_generator("diffusion", device="cpu")
    model = gen._model(spec)
    n = model.crop_size[0]
    step = np.zeros(model.crop_size, np.float32)
    step[n // 2:] = 100.0  # a step edge across axis 0 of the model crop
    # Scan voxels 3x the model's, the step 0.3 scan voxel off a scan voxel centre: point sampling reads 0 or 100
    coarse = spec.with_params(spacing_mm=[3.0 * s for s in model.spacing_mm], center_vox=[6.3, 6.0, 6.0])
    point = coarse.with_params(params={**coarse.params, "resample": "point"})
    area_box = gen.back_to_box(step, (12, 12, 12), coarse, (0, 0, 0), model)
    point_box = gen.back_to_box(step, (12, 12, 12), point, (0, 0, 0), model)
    # The step spreads over more scan voxels (partial volume) ...
    between = lambda box: int(np.count_nonzero((box > 1.0) & (box < 99.0)))  # noqa: E731
    assert between(point_box) == 0 and between(area_box) >= 12 * 12
    assert area_box.mean() == pytest.approx(point_box.mean(), abs=3.0)  # averaging moves no HU level
    fine = spec.with_params(spacing_mm=[0.5 * s for s in model.spacing_mm], center_vox=[12.0, 12.0, 12.0])
    np.testing.assert_array_equal(gen.back_to_box(step, (24, 24, 24), fine, (0, 0, 0), model),
                                  gen.back_to_box(step, (24, 24, 24), fine.with_params(
                                      params={**fine.params, "resample": "point"}), (0, 0, 0), model))
    legacy = coarse.with_params(params={k: v for k, v in coarse.params.items() if k != "resample"})
    np.testing.assert_array_equal(gen.back_to_box(step, (12, 12, 12), legacy, (0, 0, 0), model), point_box)
    with pytest.raises(ConfigError, match="diffusion resample must be one of shape, area, point"):
        gen.validate(spec.with_params(params={**spec.params, "resample": "nearest"}))
