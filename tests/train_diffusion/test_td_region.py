"""Sources restricted to a scan region: the cut, the tumours it crosses, validation, and held-out overlap."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import REPO, real_path
from tumorsyn.errors import ConfigError
from train_diffusion.config import load_config
from train_diffusion.data import load_crops

from diffusion_helpers import tiny_config

_OUTSIDE_HU = 700.0  # every voxel outside the region (a crop holding one shows it after interpolation)


def _region_phantom(folder: Path) -> dict:
    """40^3 voxels of 1 mm: air, body 0 HU, organ 100 HU, three 40 HU tumours; region z 0-19 (everything beyond it 700 HU).

    Tumour A (z 10) lies inside the region, B (z 30) outside, C (z 20, radius 3) crosses the border.
    """
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.indices((40, 40, 40)).astype(float)
    organ = np.zeros((40, 40, 40), bool)
    organ[4:36, 4:36, :] = True
    tumor = np.zeros_like(organ)
    for centre in ((12, 12, 10), (28, 28, 30), (28, 12, 20)):
        tumor |= sum((g - c) ** 2 for g, c in zip(grid, centre)) <= 9.0
    ct = np.full(organ.shape, -1000.0)  # air around a 0 HU body
    ct[2:38, 2:38, :] = 0.0
    ct[organ] = 100.0
    ct[tumor] = 40.0
    ct[:, :, 20:] = _OUTSIDE_HU
    paths = {"ct": folder / "ct.nii.gz", "labels": folder / "liver.nii.gz", "tumor": folder / "tumor.nii.gz"}
    for key, array in (("ct", ct.astype(np.int16)), ("labels", organ.astype(np.uint8)), ("tumor", tumor.astype(np.uint8))):
        nib.save(nib.Nifti1Image(array, np.eye(4)), paths[key])
    return {"ct": str(paths["ct"]), "labels": str(paths["labels"]), "tumor": [str(paths["tumor"])], "healthy_crops": 6,
            "region": {"axis": 2, "first": 0, "last": 19}}


def test_region_cut_keeps_crops_inside_and_skips_crossing_tumours(tmp_path):
    source = _region_phantom(tmp_path / "scan")
    config = tiny_config(tmp_path / "run", [source], "data.intensity=absolute", "data.hu_window=[-1000, 1000]",
                         "data.max_diameter_mm=null")
    logged = []
    bank = load_crops(config, log=logged.append)
    # Only tumour A: B lies outside the region, C crosses its border (skipped and counted).
    assert len(bank.tumor_images) == 1 and len(bank.healthy_images) == 6
    assert bank.cases[0]["tumours_cut_by_region"] == 1
    assert any("1 tumour(s) cut by the region border, not used" in line for line in logged)
    # The crops (36 mm) reach far beyond the 20 mm region, yet no voxel of theirs comes from outside it
    # (100 HU = 0.1 is the brightest value inside; 700 HU would show as up to 0.7).
    for image in bank.tumor_images + bank.healthy_images:
        assert image.max() <= 0.1 + 1e-5
    # Without the region the same crops do hold outside voxels (the test can fail).
    del source["region"]
    whole = load_crops(tiny_config(tmp_path / "run", [source], "data.intensity=absolute",
                                   "data.hu_window=[-1000, 1000]", "data.max_diameter_mm=null"))
    assert max(image.max() for image in whole.tumor_images) > 0.5


def test_region_outside_the_scan_names_the_file(tmp_path):
    source = _region_phantom(tmp_path / "scan")
    source["region"] = {"axis": 2, "first": 30, "last": 45}
    with pytest.raises(ConfigError, match=r"ct\.nii\.gz: data\.tumor_sources\[0\]\.region slices 30-45 along axis 2 "
                                          r"lie outside the scan's slices 0-39"):
        load_crops(tiny_config(tmp_path / "run", [source]))


@pytest.mark.parametrize("region, message", [
    ({"axis": 3, "first": 0, "last": 5}, r"data\.tumor_sources\[0\]\.region\.axis must be 0, 1 or 2"),
    ({"axis": 2, "first": 9, "last": 5}, r"data\.tumor_sources\[0\]\.region needs integer slices 0 <= first <= last"),
    ({"axis": 2, "first": 0}, r"data\.tumor_sources\[0\]\.region must be \{axis: 0\|1\|2, first: SLICE, last: SLICE\}"),
])
def test_bad_region_is_a_config_error(tmp_path, region, message):
    source = {"ct": str(tmp_path / "ct.nii.gz"), "labels": str(tmp_path / "labels.nii.gz"), "region": region}
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path / "run", [source])


def _holdout_config(train_region, holdout_region) -> dict:
    train = {"ct": "scan/ct.nii.gz", "labels": "scan/labels.nii.gz"}
    holdout = dict(train)
    if train_region:
        train["region"] = train_region
    if holdout_region:
        holdout["region"] = holdout_region
    return {"data": {"tumor_sources": [train], "holdout_sources": [holdout]}}


def test_holdout_and_training_regions_of_one_scan_must_be_disjoint():
    slab_a, slab_b = {"axis": 2, "first": 0, "last": 82}, {"axis": 2, "first": 87, "last": 127}
    load_config(None, data=_holdout_config(slab_a, slab_b), check_files=False)  # disjoint: accepted
    for train, holdout in ((slab_a, {"axis": 2, "first": 80, "last": 127}),  # overlapping slices
                           (slab_a, {"axis": 1, "first": 87, "last": 127}),  # another axis crosses the slab
                           (slab_a, None), (None, None)):                    # the whole scan
        with pytest.raises(ConfigError, match=r"data\.holdout_sources\[0\] is also in data\.tumor_sources\[0\] "
                                              r"\(.*ct\.nii\.gz\); a held-out tumour must not be trained on: .*"
                                              r"disjoint regions"):
            load_config(None, data=_holdout_config(train, holdout), check_files=False)


def test_lits_recipe_config_validates():
    path = REPO / "configs" / "diffusion" / "liver_early_lits_cpu.yaml"
    config = load_config(path, check_files=False)
    d = config["data"]
    assert d["tumor_sources"][0]["region"] == {"axis": 2, "first": 0, "last": 82}
    assert d["holdout_sources"][0]["region"] == {"axis": 2, "first": 87, "last": 127}
    assert d["intensity"] == "relative"
    real_path("lits117/ct.nii.gz")  # skips with a reason where the real data is absent
    real_path("3dircadb1/3Dircadb1.7/ct.nii.gz")
    load_config(path)  # every data path exists
