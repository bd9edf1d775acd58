"""Training crops: tumour selection by measured diameter, resampling, and a deterministic batch stream."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import real_path
from tumorsyn.errors import ConfigError
from train_diffusion.data import load_crops

from diffusion_helpers import tiny_config


def test_crops_of_phantom_tumours(tmp_path, phantom_sources):
    config = tiny_config(tmp_path / "run", phantom_sources, "data.intensity=absolute")  # the units below are HU/212.5
    bank = load_crops(config)
    assert len(bank.tumor_images) == 2 and len(bank.healthy_images) == 4  # one tumour + 2 organ crops per scan
    big = tuple(n + 2 * j for n, j in zip(config["data"]["crop_size"], bank.jitter_vox))
    assert all(img.shape == big and m.shape == big for img, m in zip(bank.tumor_images, bank.tumor_masks))
    for img, mask in zip(bank.tumor_images, bank.tumor_masks):
        assert -1.0 <= img.min() and img.max() <= 1.0
        centre = tuple(n // 2 for n in big)
        assert mask[centre]  # the crop is centred on its tumour
        # rules tumours are hypodense: the masked region is darker than the rest of the organ crop
        assert img[mask].mean() < img[~mask & (img > 0.15)].mean()  # organ 100 HU = 0.29, body 30 HU = -0.04
    assert all(9.0 <= t["max_diameter_mm"] < 20.0 for t in bank.tumors)


def test_batches_are_a_function_of_their_index(tmp_path, phantom_sources):
    bank = load_crops(tiny_config(tmp_path / "run", phantom_sources))
    a = bank.batch("mixed", 3, seed=0, stage="autoencoder", index=5, healthy_fraction=0.5)
    b = bank.batch("mixed", 3, seed=0, stage="autoencoder", index=5, healthy_fraction=0.5)
    c = bank.batch("mixed", 3, seed=0, stage="autoencoder", index=6, healthy_fraction=0.5)
    assert a[0].shape == (3, 1, 16, 16, 16) and a[1].shape == a[0].shape
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    images, masks = bank.batch("tumor", 4, seed=1, stage="ldm", index=0)
    assert all(m.any() for m in masks)


def test_size_selection_can_exclude_everything(tmp_path, phantom_sources):
    with pytest.raises(ConfigError, match="no tumour of 0-5 mm"):
        load_crops(tiny_config(tmp_path / "run", phantom_sources, "data.max_diameter_mm=5"))


@pytest.mark.real
def test_early_tumour_crops_of_ircadb_patient_1(tmp_path):
    folder = real_path("3dircadb1", "3Dircadb1.1")
    sources = [{"ct": str(folder / "ct.nii.gz"), "labels": str(folder / "masks" / "liver.nii.gz"),
                "tumor": [str(p) for p in sorted((folder / "masks").glob("livertumor*.nii.gz"))]}]
    config = tiny_config(tmp_path / "run", sources, "data.healthy_crops_per_case=1", "data.intensity=absolute")
    bank = load_crops(config)
    # 7 tumours of 9-54 mm (PROVENANCE): only those measured < 20 mm are kept.
    assert 1 <= len(bank.tumors) < 7
    assert all(t["max_diameter_mm"] < 20.0 for t in bank.tumors)
    assert all(t["case"] == "3Dircadb1.1" for t in bank.tumors)
    # real liver tumours are darker than the liver around them (79 vs 113 HU on average)
    darker = [img[m].mean() < img[~m & (img > -0.3) & (img < 0.6)].mean()
              for img, m in zip(bank.tumor_images, bank.tumor_masks)]
    assert sum(darker) >= len(darker) / 2


def test_decathlon_folder_source(tmp_path, phantom_sources):
    """imagesTr/ + labelsTr/ with labels 1 organ, 2 tumour (MSD Task03 style): the tumour label is found."""
    import nibabel as nib

    root = tmp_path / "Task03_Phantom"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, src in enumerate(phantom_sources):
        ct = nib.load(src["ct"])
        organ = np.asanyarray(nib.load(src["labels"]).dataobj) > 0
        tumor = np.asanyarray(nib.load(src["tumor"][0]).dataobj) > 0
        labels = organ.astype(np.uint8) + tumor.astype(np.uint8) * (2 - organ.astype(np.uint8))
        nib.save(ct, root / "imagesTr" / f"liver_{i}.nii.gz")
        nib.save(nib.Nifti1Image(labels, ct.affine), root / "labelsTr" / f"liver_{i}.nii.gz")
    bank = load_crops(tiny_config(tmp_path / "run", [{"dataset": str(root)}]))
    assert len(bank.tumors) == 2 and {t["case"] for t in bank.tumors} == {"liver_0", "liver_1"}
    reference = load_crops(tiny_config(tmp_path / "ref", phantom_sources))
    for a, b in zip(bank.tumor_masks, reference.tumor_masks):
        np.testing.assert_array_equal(a, b)  # same tumours, whichever way they were labelled
