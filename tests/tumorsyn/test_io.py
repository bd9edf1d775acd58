import gzip

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.errors import CorruptFileError, GridMismatchError, InputError, NotHUError
from tumorsyn.io import load_labels, load_scan, write_ct_like, write_mask_like
from tumorsyn.io.labels import label_values, organ_mask_from_labels
from tumorsyn.io.scan import check_same_grid
from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, real_path


def _save(path, data, affine=np.eye(4), slope=None, inter=None):
    img = nib.Nifti1Image(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def test_unchanged_write_gives_identical_bytes(tmp_path):
    scan = load_scan(EXAMPLE_CT)
    out = tmp_path / "same.nii.gz"
    write_ct_like(out, scan, scan.values(), np.zeros(scan.shape, bool))
    assert gzip.open(out).read() == gzip.open(EXAMPLE_CT).read()


def test_changed_voxels_only_and_scaling_kept(tmp_path):
    raw = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 7 % 500).astype(np.int16)
    path = _save(tmp_path / "scaled.nii.gz", raw, slope=2.0, inter=-1024.0)
    scan = load_scan(path)
    values = scan.values()
    changed = np.zeros(values.shape, bool)
    changed[1, 2, 3] = True
    values[1, 2, 3] = -500.0
    out = tmp_path / "out.nii.gz"
    write_ct_like(out, scan, values, changed)
    img = nib.load(str(out))
    assert img.header.binaryblock == nib.load(str(path)).header.binaryblock
    stored = np.asanyarray(img.dataobj.get_unscaled())
    expected = raw.copy()
    expected[1, 2, 3] = 262  # (-500 + 1024) / 2
    assert np.array_equal(stored, expected)


def test_canonical_view_of_lps_scan(tmp_path):
    data = np.random.default_rng(0).integers(-1000, 500, size=(6, 7, 8)).astype(np.int16)
    lps = np.diag([-0.8, -0.8, 2.0, 1.0])
    scan = load_scan(_save(tmp_path / "lps.nii.gz", data, lps))
    assert scan.shape == (6, 7, 8)
    assert np.allclose(scan.spacing_mm, (0.8, 0.8, 2.0))
    assert np.array_equal(scan.values(), data[::-1, ::-1, :].astype(np.float32))
    assert np.array_equal(scan.from_canonical(scan.values()), data.astype(np.float32))
    mask = np.zeros(scan.shape, bool)
    mask[0, 0, 0] = True  # canonical corner = last voxel along file X and Y
    write_mask_like(tmp_path / "m.nii.gz", scan, mask)
    out = nib.load(str(tmp_path / "m.nii.gz"))
    assert np.allclose(out.affine, lps) and np.asanyarray(out.dataobj)[5, 6, 0] == 1


def test_dicom_series_matches_its_labels():
    folder = real_path("totalsegmentator_example", "example_ct_dicom")
    pytest.importorskip("pydicom")
    scan = load_scan(folder)
    labels = load_labels(real_path("totalsegmentator_example", "example_seg_dicom.nii.gz"))
    check_same_grid(scan, labels)
    assert scan.shape == (512, 512, 20)
    assert np.allclose(scan.spacing_mm, (0.9765625, 0.9765625, 2.0))
    liver = organ_mask_from_labels(label_values(labels), "liver", preset="totalsegmentator")
    assert 40 < float(np.median(scan.values()[liver])) < 150  # contrast-enhanced liver in HU


@pytest.mark.parametrize("maker, error, message", [
    (lambda p: p, CorruptFileError, "not found"),
    (lambda p: (p.write_bytes(gzip.open(EXAMPLE_CT).read()[:50]), p)[1], CorruptFileError, "truncated"),
    (lambda p: (p.write_bytes(EXAMPLE_CT.read_bytes()[:20000]), p)[1], CorruptFileError, "truncated"),
    (lambda p: (p.write_text("hello"), p)[1], CorruptFileError, "cannot be read"),
])
def test_unreadable_files(tmp_path, maker, error, message):
    path = maker(tmp_path / "bad.nii.gz")
    with pytest.raises(error, match=message) as info:
        load_scan(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("data, error, message", [
    (np.zeros((5, 5), np.int16), InputError, "2D"),
    (np.zeros((5, 5, 5, 2), np.int16), InputError, "4D"),
    (np.zeros((5, 5, 1), np.int16), InputError, "flat"),
    (np.full((5, 5, 5), np.nan, np.float32), NotHUError, "NaN"),
    (np.random.default_rng(0).random((5, 5, 5)).astype(np.float32), NotHUError, "narrow"),
    (np.random.default_rng(0).integers(0, 4095, (5, 5, 5)).astype(np.uint16), NotHUError, "rescale"),
])
def test_not_a_ct(tmp_path, data, error, message):
    with pytest.raises(error, match=message):
        load_scan(_save(tmp_path / "x.nii.gz", data))


def test_grid_mismatch_is_named(tmp_path):
    scan = load_scan(EXAMPLE_CT)
    cropped = nib.load(str(EXAMPLE_LABELS)).slicer[:, :, :20]
    nib.save(cropped, str(tmp_path / "labels.nii.gz"))
    with pytest.raises(GridMismatchError, match="differs from CT grid"):
        check_same_grid(scan, load_labels(tmp_path / "labels.nii.gz"))
    shifted = nib.Nifti1Image(np.asanyarray(nib.load(str(EXAMPLE_LABELS)).dataobj), scan.affine + np.eye(4) * 0)
    shifted.affine[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asanyarray(shifted.dataobj), shifted.affine), str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(GridMismatchError, match="affine"):
        check_same_grid(scan, load_labels(tmp_path / "shifted.nii.gz"))


def test_label_presets_and_empty_organ():
    labels = label_values(load_labels(EXAMPLE_LABELS))
    assert organ_mask_from_labels(labels, "liver", preset="totalsegmentator").sum() == (labels == 5).sum()
    assert organ_mask_from_labels(labels, "kidney", preset="totalsegmentator").sum() == np.isin(labels, (2, 3)).sum()
    assert organ_mask_from_labels(labels, "liver", organ_labels=[7]).sum() == (labels == 7).sum()
    from tumorsyn.errors import EmptyOrganError

    assert 250 not in labels
    with pytest.raises(EmptyOrganError, match="label value"):
        organ_mask_from_labels(labels, "liver", organ_labels=[250])
