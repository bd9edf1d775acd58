"""tumorsyn.io.load_label_map: the organ mask of a label map, for the Python round trip (issue 19: load_scan on a
label map raises NotHUError and the docs showed no other call)."""
import nibabel as nib
import numpy as np
import pytest

from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS
from tumorsyn.errors import GridMismatchError, NotHUError
from tumorsyn.io import load_label_map, load_scan, organ_mask_from_labels


def test_label_map_gives_the_organ_mask_on_the_ct_grid():
    scan = load_scan(EXAMPLE_CT)
    with pytest.raises(NotHUError):
        load_scan(EXAMPLE_LABELS)  # a label map is not HU: why a second reader is needed
    labels = load_label_map(EXAMPLE_LABELS, like=scan)
    assert labels.shape == scan.shape and np.issubdtype(labels.dtype, np.integer)
    raw = np.asarray(nib.load(EXAMPLE_LABELS).dataobj)
    assert organ_mask_from_labels(labels, "liver").sum() == (raw == 5).sum()


def test_scaled_float_labels_and_other_orientation(tmp_path):
    """Labels stored as scaled floats in LPS order come back as canonical integers."""
    img = nib.load(EXAMPLE_LABELS)
    raw = np.asarray(img.dataobj)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = raw.shape[0] - 1, raw.shape[1] - 1
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(raw[::-1, ::-1].astype(np.float32), img.affine @ flip), path)
    assert np.array_equal(load_label_map(path), load_label_map(EXAMPLE_LABELS))


def test_labels_on_another_grid_are_refused(tmp_path):
    img = nib.load(EXAMPLE_LABELS)
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :-1], img.affine), path)
    with pytest.raises(GridMismatchError, match=r"cut.nii.gz: label grid \(122, 101, 29\) differs from CT grid"):
        load_label_map(path, like=load_scan(EXAMPLE_CT))
