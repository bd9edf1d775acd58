"""``tumorsyn generate`` on one scan: outputs, header and voxel fidelity, manifest, sizes, organs."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import tumorsyn
from tumorsyn.spec import TumorSpec

from generate_helpers import (PHANTOM_SPACING, equivalent_diameter, nifti_header_bytes, phantom_arrays,
                              read_manifest, save_raw_nifti, sha256, stored_data, write_phantom)

# Voxels changed by the blend zone lie within this distance (mm) of the written tumour label.
BLEND_REACH_MM = 6.0


def _generate(cli, ct, labels, out, *extra):
    code, _, err = cli("generate", ct, "--labels", labels, "--out", out, "--quiet", *extra)
    assert code == 0, err
    return out


def test_example_writes_ct_tumor_label_map_preview_and_manifest(cli, example_paths, tmp_path):
    ct, labels = example_paths
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", "liver", "--seed", "3", "--label-map",
                    "--preview", "--case-id", "ex")

    names = {p.name for p in out.iterdir()}
    assert {"ex_ct.nii.gz", "ex_tumor.nii.gz", "ex_label.nii.gz", "ex_preview.png", "manifest.jsonl"} <= names

    tumor_img = nib.load(str(out / "ex_tumor.nii.gz"))
    assert tumor_img.get_data_dtype() == np.uint8
    tumor = np.asarray(tumor_img.dataobj)
    assert tumor.dtype == np.uint8 and set(np.unique(tumor)) == {0, 1}
    np.testing.assert_array_equal(tumor_img.affine, nib.load(str(ct)).affine)

    label = np.asarray(nib.load(str(out / "ex_label.nii.gz")).dataobj)
    assert set(np.unique(label)) == {0, 1, 2}
    np.testing.assert_array_equal(label == 2, tumor == 1)
    liver = np.asarray(nib.load(str(labels)).dataobj) == 5
    # 1 marks exactly the liver outside the tumour; the tumour (2) sits inside the liver.
    assert not np.any((label == 1) & ~liver)
    np.testing.assert_array_equal((label >= 1)[liver], np.ones(int(liver.sum()), bool))

    with Image.open(out / "ex_preview.png") as png:
        png.verify()
    with Image.open(out / "ex_preview.png") as png:
        assert png.format == "PNG" and min(png.size) > 64


def test_bundled_example_quick_start(cli, tmp_path):
    out = tmp_path / "demo"
    code, _, err = cli("generate", "--example", "--organ", "liver", "--out", out, "--preview", "--quiet")
    assert code == 0, err
    assert {"example_ct.nii.gz", "example_tumor.nii.gz", "example_preview.png", "manifest.jsonl"} <= {
        p.name for p in out.iterdir()}
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["label_preset"] == "totalsegmentator"
    assert 5.0 <= record["tumors"][0]["measured"]["equivalent_diameter_mm"] <= 20.0


def test_without_options_no_label_map_or_preview(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", "liver")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "phantom_ct.nii.gz", "phantom_tumor.nii.gz",
                                                      "run.json"]


def _encoded_phantoms(folder):
    """The phantom stored four ways: int16, float32, uint16 + intercept -1024, int16 with slope 0.5."""
    ct, labels = phantom_arrays(1)
    labels_path = save_raw_nifti(folder / "labels.nii.gz", labels)
    hu = ct.astype(np.float64)
    return {
        "int16": (save_raw_nifti(folder / "int16.nii.gz", ct), labels_path),
        "float32": (save_raw_nifti(folder / "float32.nii.gz", (hu + 0.25).astype(np.float32)), labels_path),
        "uint16_intercept": (save_raw_nifti(folder / "uint16.nii.gz", (hu + 1024).astype(np.uint16), inter=-1024.0),
                             labels_path),
        "int16_slope": (save_raw_nifti(folder / "slope.nii.gz", ((hu + 500) * 2).astype(np.int16), slope=0.5,
                                       inter=-500.0), labels_path),
    }


@pytest.mark.parametrize("encoding", ["example", "int16", "float32", "uint16_intercept", "int16_slope"])
def test_ct_keeps_grid_header_and_every_voxel_outside_the_tumour(cli, example_paths, tmp_path, encoding):
    if encoding == "example":
        ct, labels = example_paths
        organ = ["--organ", "liver", "--label-preset", "totalsegmentator"]
    else:
        ct, labels = _encoded_phantoms(tmp_path / "in")[encoding]
        organ = ["--organ", "liver"]
    out = _generate(cli, ct, labels, tmp_path / "out", *organ, "--seed", "5", "--case-id", "c")
    before, after = nib.load(str(ct)), nib.load(str(out / "c_ct.nii.gz"))

    assert after.shape == before.shape
    np.testing.assert_array_equal(after.affine, before.affine)
    assert after.get_data_dtype() == before.get_data_dtype()
    assert after.header.binaryblock == before.header.binaryblock
    assert nifti_header_bytes(out / "c_ct.nii.gz") == nifti_header_bytes(ct)
    assert (after.dataobj.slope, after.dataobj.inter) == (before.dataobj.slope, before.dataobj.inter)

    raw_before, raw_after = stored_data(ct), stored_data(out / "c_ct.nii.gz")
    assert raw_after.dtype == raw_before.dtype
    tumor = np.asarray(nib.load(str(out / "c_tumor.nii.gz")).dataobj).astype(bool)
    assert tumor.any()
    changed = raw_after != raw_before
    assert changed[tumor].mean() > 0.5, "the tumour must change the voxels it covers"
    zooms = before.header.get_zooms()[:3]
    distance_mm = ndimage.distance_transform_edt(~tumor, sampling=zooms)
    far = distance_mm > BLEND_REACH_MM
    np.testing.assert_array_equal(raw_after[far], raw_before[far])
    # Same stored values means same bytes: compare the data bytes too.
    assert raw_after[far].tobytes() == raw_before[far].tobytes()


def test_manifest_holds_one_complete_record_per_output(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", "liver", "--seed", "11", "--size-mm", "8-14",
                    "--label-map")
    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == 1
    record = records[0]
    assert record["output_id"] == "phantom" and record["case_id"] == "phantom"
    assert record["organ"] == "liver" and record["method"] == "rules"
    assert record["seed"] == 11
    assert record["tool"] == {"name": "tumorsyn", "version": tumorsyn.__version__}
    assert record["input"]["ct_sha256"] == sha256(ct)
    assert record["input"]["labels_sha256"] == sha256(labels)
    assert record["outputs"] == {"ct": "phantom_ct.nii.gz", "tumor": "phantom_tumor.nii.gz",
                                 "label": "phantom_label.nii.gz"}
    for key, name in record["outputs"].items():
        assert record["outputs_sha256"][key] == sha256(out / name)

    assert len(record["tumors"]) == 1
    spec = TumorSpec.from_dict(record["tumors"][0]["spec"])
    assert spec.organ == "liver" and tuple(spec.grid_shape) == (48, 48, 32)
    assert json.loads(json.dumps(spec.to_dict())) == record["tumors"][0]["spec"]

    measured = record["tumors"][0]["measured"]
    tumor = np.asarray(nib.load(str(out / "phantom_tumor.nii.gz")).dataobj)
    diameter = equivalent_diameter(tumor, PHANTOM_SPACING)
    assert measured["equivalent_diameter_mm"] == pytest.approx(diameter, abs=0.01)
    assert measured["volume_ml"] == pytest.approx(tumor.sum() * np.prod(PHANTOM_SPACING) / 1000, abs=1e-3)
    assert measured["max_diameter_mm"] >= measured["equivalent_diameter_mm"] * 0.9
    assert measured["mean_hu_tumor"] < measured["mean_hu_organ_nearby"]  # hypodense by default


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", ["8-12", "14-18"])
def test_written_tumour_size_is_in_the_requested_range(cli, tmp_path, seed, size):
    ct, labels = write_phantom(tmp_path / "in", seed=seed)
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", "liver", "--seed", seed, "--size-mm", size)
    tumor = np.asarray(nib.load(str(out / "phantom_tumor.nii.gz")).dataobj)
    low, high = (float(v) for v in size.split("-"))
    assert low <= equivalent_diameter(tumor, PHANTOM_SPACING) <= high


def test_count_writes_several_tumours_into_one_output(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", "liver", "--count", "2", "--size-mm", "6-9")
    (record,) = read_manifest(out / "manifest.jsonl")
    assert len(record["tumors"]) == 2
    tumor = np.asarray(nib.load(str(out / "phantom_tumor.nii.gz")).dataobj)
    volumes = sum(t["measured"]["volume_ml"] for t in record["tumors"])
    # Tumours never overlap: the written mask holds both volumes in full.
    assert tumor.sum() * np.prod(PHANTOM_SPACING) / 1000 == pytest.approx(volumes, abs=2e-3)


@pytest.mark.parametrize("organ, size, values", [
    ("liver", "5-20", (5,)),
    ("pancreas", "5-12", (7,)),
    ("kidney", "5-20", (2, 3)),
])
def test_example_organs(cli, example_paths, tmp_path, organ, size, values):
    ct, labels = example_paths
    out = _generate(cli, ct, labels, tmp_path / "out", "--organ", organ, "--size-mm", size, "--seed", "2",
                    "--case-id", "ex", "--exophytic", "no")
    tumor_img = nib.load(str(out / "ex_tumor.nii.gz"))
    tumor = np.asarray(tumor_img.dataobj).astype(bool)
    low, high = (float(v) for v in size.split("-"))
    assert low <= equivalent_diameter(tumor, tumor_img.header.get_zooms()[:3]) <= high
    organ_mask = np.isin(np.asarray(nib.load(str(labels)).dataobj), values)
    # Not exophytic: the visible tumour lies in the organ it was asked for.
    assert organ_mask[tumor].mean() > 0.95
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["organ"] == organ and record["label_preset"] == "totalsegmentator"
