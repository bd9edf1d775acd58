"""The nnU-Net synthesis transform on a normalised phantom patch, and the settings it reads."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import make_phantom
from tumorsyn.errors import ConfigError
from tumorsyn.integrations.nnunet.settings import (CTIntensity, TumorSynSettings, load_settings, settings_path)

pytest.importorskip("batchgeneratorsv2", reason="needs the nnunet extra (pip install 'tumorsyn[nnunet]')")

# A liver dataset's foreground statistics as nnU-Net's fingerprint writes them (HU).
PROPERTIES = {"mean": 99.4, "std": 39.4, "percentile_00_5": -17.0, "percentile_99_5": 201.0, "median": 101.0,
              "min": -1000.0, "max": 1500.0}


def _patch(spacing=(1.0, 1.0, 1.5), properties=PROPERTIES):
    """A normalised (1, X, Y, Z) patch of the phantom, its (1, X, Y, Z) segmentation (liver 1) and the HU."""
    ct, organ, spacing = make_phantom(spacing=spacing, vessel=True)
    intensity = CTIntensity.from_plans("CTNormalization", properties)
    seg = np.where(organ, 1, 0).astype(np.int16)[None]
    return intensity.normalise(ct)[None], seg, intensity, spacing


def _transform(settings: dict, intensity, spacing, kept_shape=None):
    from tumorsyn.integrations.nnunet.transform import TumorSynthesisTransform

    return TumorSynthesisTransform(TumorSynSettings.from_dict(settings), intensity, spacing, organ_labels=(1,),
                                   tumor_label=2, kept_shape=kept_shape)


def test_normalisation_is_nnunets_ctnormalization_and_inverts_it():
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    rng = np.random.default_rng(0)
    hu = rng.normal(50, 300, size=(20, 20, 10)).astype(np.float32)
    intensity = CTIntensity.from_plans("CTNormalization", PROPERTIES)
    expected = CTNormalization(use_mask_for_norm=False, intensityproperties=PROPERTIES).run(hu.copy())
    assert np.array_equal(intensity.normalise(hu), expected)  # bit for bit, as nnU-Net preprocesses
    back = intensity.to_hu(expected)
    np.testing.assert_allclose(back, np.clip(hu, -17.0, 201.0), atol=1e-3)  # clipped HU come back at the bounds


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_tumour_is_drawn_in_hu_at_the_patch_spacing_and_written_back_normalised(method):
    from tumorsyn.apply import apply_specs
    from tumorsyn.lesion_size import equivalent_diameter_mm

    image, seg, intensity, spacing = _patch()
    before_image, before_seg = image.copy(), seg.copy()
    transform = _transform({"organ": "liver", "prob": 1.0, "size_mm": [10, 14], "method": method}, intensity, spacing)
    specs, reason = transform.write(image, seg, rng=3)
    assert reason == "" and len(specs) == 1 and specs[0].method == method and specs[0].spacing_mm == spacing
    tumour = seg[0] == 2
    assert (before_seg[0][tumour] == 1).all()
    assert 10 * 0.9 <= equivalent_diameter_mm(tumour, spacing) <= 14 * 1.1  # mm at the patch's own spacing
    # The image is the core's tumour on the HU view, normalised again; untouched voxels keep their bits.
    applied = apply_specs(intensity.to_hu(before_image[0]), before_seg[0] == 1, spacing, specs)
    changed = image[0] != before_image[0]
    assert changed.any() and changed.sum() < changed.size / 10
    np.testing.assert_array_equal(image[0][changed], intensity.normalise(applied.ct)[changed])
    # The tumour is darker than the liver in HU (the default hypodense look), by tens of HU.
    hu = intensity.to_hu(image[0])
    assert hu[tumour].mean() < intensity.to_hu(before_image[0])[tumour].mean() - 10


def test_unselected_and_organless_patches_pass_unchanged():
    image, seg, intensity, spacing = _patch()
    copy = image.copy(), seg.copy()
    transform = _transform({"organ": "liver", "prob": 0.0}, intensity, spacing)
    import torch

    out = transform(image=torch.from_numpy(image), segmentation=torch.from_numpy(seg))
    assert np.array_equal(out["image"].numpy(), copy[0]) and transform.stats["not selected"] == 1
    seg[:] = 0
    transform = _transform({"organ": "liver", "prob": 1.0}, intensity, spacing)
    assert transform.write(image, seg, rng=0) == ([], "organ absent or too small in the patch")
    assert np.array_equal(image, copy[0])


def test_tumour_centres_lie_in_the_part_the_spatial_augmentation_keeps():
    # nnU-Net's spatial augmentation keeps the centred patch_size box of the larger loaded patch:
    # a tumour outside it never reaches the batch.
    image, seg, intensity, spacing = _patch()
    settings = {"organ": "liver", "prob": 1.0, "size_mm": [6, 8]}
    kept = _transform(settings, intensity, spacing, kept_shape=(16, 64, 40))  # X 24..39 of 64
    anywhere = _transform(settings, intensity, spacing)
    kept_x, anywhere_x = [], []
    for seed in range(10):
        for transform, xs in ((kept, kept_x), (anywhere, anywhere_x)):
            specs, reason = transform.write(image.copy(), seg.copy(), rng=seed)
            assert reason == ""
            xs.append(specs[0].center_vox[0])
    assert all(24 - 2 <= x <= 39 + 2 for x in kept_x), kept_x  # within a coarse placement cell
    assert not all(24 - 2 <= x <= 39 + 2 for x in anywhere_x)  # without it, centres spread over the organ
    # A patch whose organ lies only outside that centre passes unchanged, and says why.
    seg[0, 20:44] = 0
    before = image.copy()
    assert kept.write(image, seg, rng=0) == ([], "organ absent from the centre the spatial augmentation keeps")
    assert np.array_equal(image, before)
    with pytest.raises(ConfigError, match="kept_shape"):
        _transform(settings, intensity, spacing, kept_shape=(16, 0, 40))


def test_transform_refuses_2d_patches():
    intensity = CTIntensity.from_plans("CTNormalization", PROPERTIES)
    with pytest.raises(ConfigError, match="3D patches"):
        _transform({"organ": "liver"}, intensity, (1.0, 1.0))


def test_settings_are_checked_and_labels_found_by_name(tmp_path):
    settings = TumorSynSettings.from_dict({"organ": "liver", "size_mm": [[[5, 10], 0.8], [[10, 20], 0.2]]})
    assert settings.size_mm == (((5, 10), 0.8), ((10, 20), 0.2)) and settings.device == "cpu"
    assert settings.labels({"labels": {"background": 0, "Liver": 1, "liver tumour": 2}}) == ((1,), 2)
    with pytest.raises(ConfigError, match="unknown setting"):
        TumorSynSettings.from_dict({"organ": "liver", "probability": 0.5})
    with pytest.raises(ConfigError, match="'organ' is required"):
        TumorSynSettings.from_dict({})
    with pytest.raises(ConfigError, match=r"prob must be a probability in \[0, 1\]"):
        TumorSynSettings.from_dict({"organ": "liver", "prob": 2})
    with pytest.raises(ConfigError, match="names no tumour label"):
        settings.labels({"labels": {"background": 0, "liver": 1}})
    with pytest.raises(ConfigError, match="not a label of dataset.json"):
        TumorSynSettings.from_dict({"organ": "liver", "tumor_label": 5}).labels({"labels": {"liver": 1, "tumor": 2}})
    path = tmp_path / "tumorsyn_nnunet.json"
    with pytest.raises(ConfigError, match="no tumour synthesis settings here") as info:
        load_settings(path)
    assert str(info.value).startswith(str(path))  # the file first
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(path)
    path.write_text(json.dumps({"organ": "kidney", "prob": 0.25}))
    assert load_settings(path).prob == 0.25


def test_settings_path_prefers_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TUMORSYN_NNUNET_CONFIG", raising=False)
    assert settings_path(tmp_path) == tmp_path / "tumorsyn_nnunet.json"
    monkeypatch.setenv("TUMORSYN_NNUNET_CONFIG", str(tmp_path / "mine.json"))
    assert settings_path(tmp_path) == tmp_path / "mine.json"


def test_intensity_refuses_non_ct_channels_and_narrow_windows():
    with pytest.raises(ConfigError, match="normalised with ZScoreNormalization, not CTNormalization"):
        CTIntensity.from_plans("ZScoreNormalization", PROPERTIES)
    with pytest.raises(ConfigError, match=r"clip channel 0 to \[-16, 80\] HU"):
        CTIntensity.from_plans("CTNormalization", {**PROPERTIES, "percentile_00_5": -16.0, "percentile_99_5": 80.0})
    with pytest.raises(ConfigError, match="no usable foreground intensity properties"):
        CTIntensity.from_plans("CTNormalization", {"mean": 1.0})


def test_a_wrong_organ_label_skips_the_patch_with_one_warning():
    image, seg, intensity, spacing = _patch(properties={**PROPERTIES, "percentile_00_5": -1024.0})
    ct = intensity.to_hu(image[0])
    seg[0] = np.where(ct < -500, 1, 0)  # "organ" label on the air around the body: no liver there
    transform = _transform({"organ": "liver", "prob": 1.0}, intensity, spacing)
    with pytest.warns(UserWarning, match="check organ_labels in the settings"):
        specs, reason = transform.write(image, seg, rng=0)
    assert specs == [] and reason.startswith("NotHUError: ")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not once per patch
        assert transform.write(image, seg, rng=1)[1].startswith("NotHUError: ")
