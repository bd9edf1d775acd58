"""A damaged compressed NIfTI is refused by every reader, never read as wrong voxels.

nibabel reads a ``.nii.gz`` only as far as the voxels and never reaches the gzip trailer (CRC-32 and
length), so before this check most bit flips loaded "fine" with damaged voxels.
"""
from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import EXAMPLE_CT, make_phantom
from tumorsyn.errors import CorruptFileError
from tumorsyn.io.scan import load_scan, read_image, read_nifti_bytes


def _ct_file(tmp_path, name="ct.nii.gz", shape=(40, 40, 30)):
    ct, _, _ = make_phantom(shape=shape)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.rint(ct).astype(np.int16), np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
    return path


def _one_line_naming(exc: Exception, path) -> None:
    text = str(exc)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_random_bit_flips_are_refused_or_harmless(tmp_path):
    """Every single-bit flip either raises CorruptFileError naming the file or reads the original voxels
    (a flip in a gzip header field that no checksum covers, such as the stored file name or time)."""
    good = _ct_file(tmp_path)
    original = read_image(good)
    data = good.read_bytes()
    rng = np.random.default_rng(13)
    refused = 0
    for k, bit in enumerate(rng.choice(len(data) * 8, size=120, replace=False)):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path = tmp_path / f"flip{k}.nii.gz"
        path.write_bytes(bytes(damaged))
        try:
            scan = read_image(path)
        except CorruptFileError as exc:
            _one_line_naming(exc, path)
            refused += 1
            continue
        assert np.array_equal(scan.raw, original.raw) and scan.header.binaryblock == original.header.binaryblock, \
            f"bit {bit} flipped: damaged voxels were read without error"
    assert refused >= 100  # almost every byte of a gzip file is covered by its checksum


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-8] + struct.pack("<I", struct.unpack("<I", b[-8:-4])[0] ^ 1) + b[-4:], "CRC-32 check failed"),
    (lambda b: b[:-4] + struct.pack("<I", struct.unpack("<I", b[-4:])[0] + 1), "length check failed"),
    (lambda b: b[:-6], "truncated"),
    (lambda b: b + b"trailing junk", "data after the end of the gzip stream"),
    (lambda b: bytes(10) + b, "not gzip data"),
])
def test_damaged_trailer_is_refused(tmp_path, damage, message):
    good = _ct_file(tmp_path)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(CorruptFileError, match=message) as info:
        load_scan(bad)
    _one_line_naming(info.value, bad)


def test_concatenated_gzip_members_and_zero_padding_are_valid(tmp_path):
    good = _ct_file(tmp_path)
    stream = gzip.decompress(good.read_bytes())
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(stream[:1000]) + gzip.compress(stream[1000:]) + b"\0" * 16)
    assert read_nifti_bytes(multi) == stream
    assert np.array_equal(read_image(multi).raw, read_image(good).raw)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("kind", ["nifti1", "nifti2", "big_endian", "scaled"])
def test_reader_matches_nibabel(tmp_path, suffix, kind):
    """Voxels, stored header bytes and scaling are exactly what nibabel reads from the same file."""
    ct, _, _ = make_phantom(shape=(20, 18, 12))
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    if kind == "nifti2":
        img = nib.Nifti2Image(np.rint(ct).astype(np.int16), affine)
    elif kind == "big_endian":
        header = nib.Nifti1Header(endianness=">")
        img = nib.Nifti1Image(np.rint(ct).astype(">i2"), affine, header=header)
    elif kind == "scaled":
        img = nib.Nifti1Image(np.rint((ct + 1024) * 2).clip(0).astype(np.uint16), affine)
        img.header.set_slope_inter(0.5, -1024.0)
    else:
        img = nib.Nifti1Image(np.rint(ct).astype(np.int16), affine)
    path = tmp_path / f"{kind}{suffix}"
    nib.save(img, str(path))
    scan = read_image(path)
    ref = nib.load(str(path))
    assert type(scan.header) is type(ref.header)
    assert np.array_equal(scan.raw, np.asanyarray(ref.dataobj.get_unscaled()))
    assert scan.raw.dtype == ref.dataobj.get_unscaled().dtype and scan.raw.flags.writeable
    assert (scan.slope, scan.inter) == (float(ref.dataobj.slope), float(ref.dataobj.inter))
    with open(path, "rb") if suffix == ".nii" else gzip.open(path, "rb") as fh:
        assert scan.header.binaryblock == fh.read(len(scan.header.binaryblock))
    assert np.allclose(scan.values(), scan.to_canonical(np.asanyarray(ref.dataobj, dtype=np.float32)))


def test_not_a_nifti_is_refused(tmp_path):
    path = tmp_path / "zeros.nii.gz"
    path.write_bytes(gzip.compress(bytes(4096)))
    with pytest.raises(CorruptFileError, match="not a NIfTI-1 or NIfTI-2 image") as info:
        read_image(path)
    _one_line_naming(info.value, path)


def test_bundled_example_reads_the_same_voxels():
    scan = read_image(EXAMPLE_CT)
    assert np.array_equal(scan.raw, np.asanyarray(nib.load(str(EXAMPLE_CT)).dataobj.get_unscaled()))


def _crc_damaged(tmp_path, good):
    """A copy of ``good`` whose stored CRC-32 no longer matches (voxels decompress 'fine')."""
    data = bytearray(good.read_bytes())
    data[-8] ^= 0x01
    bad = tmp_path / f"crc_{good.name}"
    bad.write_bytes(bytes(data))
    return bad


def test_reader_study_partial_read_verifies_the_checksum(tmp_path):
    from reader_study.volume import CTVolume

    bad = _crc_damaged(tmp_path, _ct_file(tmp_path))
    with pytest.raises(CorruptFileError, match="CRC-32") as info:
        CTVolume(bad).load(np.array([0, 0, 2]), np.array([40, 40, 8]))
    _one_line_naming(info.value, bad)


def test_evaluate_refuses_a_damaged_prediction(tmp_path, capsys):
    from tumorsyn.cli.main import main

    shape, affine = (24, 24, 10), np.diag([0.8, 0.8, 2.0, 1.0])
    mask = np.zeros(shape, np.uint8)
    mask[5:12, 5:12, 3:7] = 1
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    nib.save(nib.Nifti1Image(mask, affine), str(tmp_path / "ref" / "c1.nii.gz"))
    good = tmp_path / "good_pred.nii.gz"
    nib.save(nib.Nifti1Image(mask, affine), str(good))
    damaged = _crc_damaged(tmp_path, good)
    target = tmp_path / "pred" / "c1.nii.gz"
    damaged.replace(target)
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--out", str(tmp_path / "report"), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not (tmp_path / "report").exists()
    assert err[-1].startswith(f"tumorsyn: error: {target}: case c1: cannot be read: gzip CRC-32 check failed")


@pytest.mark.parametrize("cut", [1000, 50000])
def test_truncated_dicom_slice_is_refused(tmp_path, capsys, cut):
    """A slice cut short lost its pixel data; it used to be skipped, leaving a series one slice shorter."""
    pytest.importorskip("pydicom")
    import shutil

    from tests.conftest import real_path

    series = tmp_path / "series"
    shutil.copytree(real_path("totalsegmentator_example", "example_ct_dicom"), series)
    first = sorted(series.iterdir())[0]
    first.chmod(0o644)
    first.write_bytes(first.read_bytes()[:cut])
    with pytest.raises(CorruptFileError, match="no complete pixel data") as info:
        read_image(series)
    _one_line_naming(info.value, first)
    assert capsys.readouterr().err == ""  # no pydicom warning besides the one error line
