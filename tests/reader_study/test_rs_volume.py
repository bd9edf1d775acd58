"""Partial CT reads: the same HU as tumorsyn's whole read, and tumorsyn's errors for bad files."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from reader_study.volume import CTVolume
from tests.conftest import make_phantom
from tumorsyn.errors import CorruptFileError, NotHUError
from tumorsyn.io.scan import read_image


def _save(path, data, *, slope=None, inter=None, dtype=None):
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.5, 1.0]))
    if dtype is not None:
        img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_scaled_storage_matches_whole_read(tmp_path, suffix):
    ct, _, _ = make_phantom(shape=(40, 40, 30))
    stored = np.rint((ct + 1024) * 2).clip(0).astype(np.uint16)  # HU = 0.5 * stored - 1024
    path = _save(tmp_path / f"scaled{suffix}", stored, slope=0.5, inter=-1024.0, dtype=np.uint16)
    volume = CTVolume(path)
    volume.load(np.array([0, 0, 3]), np.array([40, 40, 12]))
    box = (slice(5, 30), slice(2, 40), slice(4, 12))
    expected = read_image(path).values()[box]
    assert np.array_equal(volume[box], expected)
    with pytest.raises(IndexError, match="outside"):
        volume[(slice(0, 40), slice(0, 40), slice(0, 20))]


def test_bad_files_give_tumorsyn_errors(tmp_path):
    ct, _, _ = make_phantom(shape=(40, 40, 30))
    good = _save(tmp_path / "ct.nii.gz", np.rint(ct).astype(np.int16))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CorruptFileError, match="truncated.nii.gz"):
        CTVolume(truncated).load(np.array([0, 0, 20]), np.array([40, 40, 30]))
    normalised = _save(tmp_path / "norm.nii.gz", ((ct + 1000) / 2000).astype(np.float32))
    with pytest.raises(NotHUError, match="norm.nii.gz.*too narrow"):
        CTVolume(normalised).load(np.array([0, 0, 0]), np.array([40, 40, 10]))
