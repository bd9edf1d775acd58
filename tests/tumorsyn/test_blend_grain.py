"""The tissue level the rules and CA generators blend from keeps the host's grain inside tumours on any grid."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn.blend import tissue_level


@pytest.mark.parametrize("spacing", [(0.78, 0.78, 1.6), (1.5, 1.5, 1.5), (3.0, 3.0, 3.0), (1.0, 1.0, 5.0)])
def test_tissue_level_leaves_the_grain_to_the_tumour(spacing):
    # Inside a tumour the host's grain is what differs from the level: all of it, not half.
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 10.0, size=(48, 48, 48)).astype(np.float32)
    kept = float(np.std(noise - tissue_level(noise, spacing))[()]) / 10.0
    assert 0.9 <= kept <= 1.05, kept


def test_rules_tumour_at_3_mm_keeps_the_host_noise_inside():
    ct, organ, sp = make_phantom(shape=(40, 40, 30), spacing=(3.0, 3.0, 3.0), radii_mm=(50.0, 50.0, 40.0), noise_hu=12.0)
    interior = []
    for seed in range(4):
        spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="rules", size_mm=(18.0, 20.0), ct_hu=ct,
                                    rng=seed, device="cpu")
        # No texture of its own: what spreads inside is the host's grain alone.
        spec = spec.with_params(params={**spec.params, "texture_sd_hu": 0.0, "texture_amount": 0.0, "rim": None,
                                        "capsule": None, "necrosis": None, "satellites": []})
        out, tumour = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
        core = ndimage.binary_erosion(tumour > 0)
        interior.append(out[core] - out[core].mean())
    spread = float(np.std(np.concatenate(interior)))
    assert spread >= 0.85 * 12.0, spread  # a half-voxel blur kept about 0.55 of it


def test_level_of_a_thin_organ_is_its_own_not_the_fat_around():
    # A 2-voxel slab of 40 HU tissue in -100 HU fat at 3 mm: a one-voxel blur of everything would read
    # about -10 HU inside it and brighten a tumour by 50 HU; the organ's own voxels read 40.
    ct = np.full((20, 20, 20), -100.0, np.float32)
    organ = np.zeros(ct.shape, bool)
    organ[:, 9:11, :] = True
    ct[organ] = 40.0
    level = tissue_level(ct, (3.0, 3.0, 3.0), organ_box=organ)
    assert np.allclose(level[organ], 40.0, atol=0.5)
    assert tissue_level(ct, (3.0, 3.0, 3.0))[organ].mean() < 0.0  # without the organ: fat mixed in


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_specs_without_level_blur_replay_as_drawn(method):
    ct, organ, sp = make_phantom(shape=(40, 40, 30), spacing=(3.0, 3.0, 3.0), radii_mm=(50.0, 50.0, 40.0), noise_hu=12.0)
    spec = tumorsyn.sample_spec(organ, sp, organ="liver", method=method, size_mm=(14.0, 18.0), ct_hu=ct, rng=1,
                                device="cpu")
    assert spec.params["level_blur"] == "voxel"
    old = spec.with_params(params={k: v for k, v in spec.params.items() if k != "level_blur"})  # an older spec file
    as_mm = spec.with_params(params={**spec.params, "level_blur": "mm"})
    out_old, _ = tumorsyn.synthesize(ct, organ, sp, old, device="cpu")
    out_mm, _ = tumorsyn.synthesize(ct, organ, sp, as_mm, device="cpu")
    out_new, _ = tumorsyn.synthesize(ct, organ, sp, spec, device="cpu")
    assert np.array_equal(out_old, out_mm) and not np.array_equal(out_old, out_new)
    with pytest.raises(tumorsyn.errors.ConfigError, match="level_blur must be one of"):
        tumorsyn.synthesize(ct, organ, sp, spec.with_params(params={**spec.params, "level_blur": "cm"}), device="cpu")
