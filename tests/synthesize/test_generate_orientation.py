"""Orientation: the same tumour lands on the same anatomy whatever the file's axis order and directions."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from generate_helpers import nifti_header_bytes, read_manifest

ORIENTATIONS = ("RAS", "LPS", "PIR", "RAI", "SLA")


def _reoriented_copy(src, dst, codes):
    """Save ``src`` with its array and affine reoriented to ``codes`` (same world, other voxel order)."""
    img = nib.load(str(src))
    data = np.asanyarray(img.dataobj.get_unscaled())
    transform = ornt_transform(io_orientation(img.affine), axcodes2ornt(tuple(codes)))
    new_data = nib.orientations.apply_orientation(data, transform)
    new_affine = img.affine @ inv_ornt_aff(transform, data.shape)
    new = nib.Nifti1Image(np.ascontiguousarray(new_data), new_affine, header=img.header.copy())
    new.header.set_sform(new_affine, code=int(img.header["sform_code"]) or 1)
    new.header.set_qform(new_affine, code=int(img.header["qform_code"]) or 1)
    nib.save(new, str(dst))
    assert "".join(nib.aff2axcodes(nib.load(str(dst)).affine)) == codes
    return dst


@pytest.fixture(scope="module")
def oriented_runs(example_paths_module, tmp_path_factory):
    """Each orientation of the example, and its generate output (same seed, same case id)."""
    from tumorsyn.cli.main import main

    ct, labels = example_paths_module
    root = tmp_path_factory.mktemp("orient")
    runs = {}
    for codes in ORIENTATIONS:
        folder = root / codes
        folder.mkdir()
        ct_copy = _reoriented_copy(ct, folder / "ct.nii.gz", codes)
        labels_copy = _reoriented_copy(labels, folder / "labels.nii.gz", codes)
        out = folder / "out"
        code = main(["generate", str(ct_copy), "--labels", str(labels_copy), "--organ", "liver", "--seed", "21",
                     "--case-id", "x", "--label-map", "--out", str(out), "--quiet", "--size-mm", "10-16"])
        assert code == 0
        runs[codes] = (ct_copy, labels_copy, out)
    return runs


@pytest.fixture(scope="module")
def example_paths_module():
    from generate_helpers import EXAMPLE_CT, EXAMPLE_LABELS

    return EXAMPLE_CT, EXAMPLE_LABELS


def _canonical(path):
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asanyarray(img.dataobj), img.affine


@pytest.mark.parametrize("name", ["x_ct.nii.gz", "x_tumor.nii.gz", "x_label.nii.gz"])
def test_outputs_agree_in_canonical_space(oriented_runs, name):
    reference, reference_affine = _canonical(oriented_runs["RAS"][2] / name)
    assert reference.any()
    for codes in ORIENTATIONS[1:]:
        data, affine = _canonical(oriented_runs[codes][2] / name)
        np.testing.assert_allclose(affine, reference_affine, atol=1e-3, err_msg=codes)
        np.testing.assert_array_equal(data, reference, err_msg=f"{codes}: {name} differs from the RAS run")


def test_tumour_centre_is_the_same_world_point(oriented_runs):
    centres = {codes: read_manifest(out / "manifest.jsonl")[0]["tumors"][0]["measured"]["center_ras_mm"]
               for codes, (_, _, out) in oriented_runs.items()}
    for codes, centre in centres.items():
        np.testing.assert_allclose(centre, centres["RAS"], atol=1e-2, err_msg=codes)


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_outputs_keep_their_input_orientation(oriented_runs, codes):
    ct, _, out = oriented_runs[codes]
    source = nib.load(str(ct))
    for name in ("x_ct.nii.gz", "x_tumor.nii.gz", "x_label.nii.gz"):
        img = nib.load(str(out / name))
        assert img.shape == source.shape, name
        np.testing.assert_array_equal(img.affine, source.affine, err_msg=name)
        assert "".join(nib.aff2axcodes(img.affine)) == codes
    assert nifti_header_bytes(out / "x_ct.nii.gz") == nifti_header_bytes(ct)
    # Away from the tumour the stored voxels are the input's, in the input's own order.
    tumor = np.asarray(nib.load(str(out / "x_tumor.nii.gz")).dataobj).astype(bool)
    before = np.asanyarray(source.dataobj.get_unscaled())
    after = np.asanyarray(nib.load(str(out / "x_ct.nii.gz")).dataobj.get_unscaled())
    differs = before != after
    assert differs.any()
    lo = np.argwhere(tumor).min(axis=0) - 4
    hi = np.argwhere(tumor).max(axis=0) + 5
    inside_box = np.zeros_like(differs)
    inside_box[tuple(slice(max(a, 0), b) for a, b in zip(lo, hi))] = True
    assert not (differs & ~inside_box).any()
