"""Real scans from ../shared/data/real: the TotalSegmentator DICOM series and 3D-IRCADb patient 7's liver."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from generate_helpers import equivalent_diameter, nifti_header_bytes, read_manifest, real_path, stored_data

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def dicom_case():
    series = real_path("totalsegmentator_example", "example_ct_dicom")
    labels = real_path("totalsegmentator_example", "example_seg_dicom.nii.gz")
    return series, labels


def _far_from(mask, zooms, reach_mm):
    """Voxels outside the box of ``mask`` grown by ``reach_mm`` on every side (cheap on big grids)."""
    grow = np.ceil(reach_mm / np.asarray(zooms, dtype=float)).astype(int)
    index = np.argwhere(mask)
    lo, hi = np.maximum(index.min(axis=0) - grow, 0), index.max(axis=0) + grow + 1
    far = np.ones(mask.shape, bool)
    far[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))] = False
    return far


def _generate(cli, ct, labels, out, *extra):
    code, _, err = cli("generate", ct, "--labels", labels, "--out", out, "--quiet", *extra)
    assert code == 0, err
    return out


def test_dicom_series_with_totalsegmentator_labels(cli, dicom_case, tmp_path):
    from tumorsyn.io import load_scan

    series, labels = dicom_case
    out = _generate(cli, series, labels, tmp_path / "out", "--label-preset", "totalsegmentator", "--organ", "liver",
                    "--size-mm", "8-16", "--seed", "1", "--case-id", "dcm", "--label-map", "--output-format", "nifti")
    ct_img = nib.load(str(out / "dcm_ct.nii.gz"))
    labels_img = nib.load(str(labels))
    tumor_img = nib.load(str(out / "dcm_tumor.nii.gz"))
    assert ct_img.shape == labels_img.shape == tumor_img.shape

    # Same world grid as the labels, once both are in canonical order.
    ct_canon, labels_canon = nib.as_closest_canonical(ct_img), nib.as_closest_canonical(labels_img)
    np.testing.assert_allclose(ct_canon.affine, labels_canon.affine, atol=0.01)
    tumor = np.asarray(nib.as_closest_canonical(tumor_img).dataobj).astype(bool)
    liver = np.asarray(labels_canon.dataobj) == 5
    assert tumor.any() and liver[tumor].mean() > 0.95
    assert 8.0 <= equivalent_diameter(tumor, ct_img.header.get_zooms()[:3]) <= 16.0

    # Written in HU-preserving form: away from the tumour, values equal the series' own HU.
    hu_in = load_scan(series).values()
    hu_out = np.asarray(ct_canon.dataobj, dtype=np.float32)
    assert hu_out.min() < -900  # air is air: rescale slope/intercept kept
    far = _far_from(tumor, ct_canon.header.get_zooms()[:3], 6.0)
    np.testing.assert_array_equal(hu_out[far], hu_in[far])

    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["label_preset"] == "totalsegmentator" and record["organ"] == "liver"
    assert len(record["input"]["ct_sha256"]) == 64

    # The recorded spec replays on the series byte for byte.
    again = tmp_path / "again"
    code, _, err = cli("generate", series, "--labels", labels, "--label-preset", "totalsegmentator", "--out", again,
                       "--quiet", "--case-id", "dcm", "--from-spec", out / "manifest.jsonl", "--spec-id", "dcm",
                       "--output-format", "nifti")
    assert code == 0, err
    for name in ("dcm_ct.nii.gz", "dcm_tumor.nii.gz"):
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_dicom_series_out_of_an_anonymised_compressed_series(cli, dicom_case, tmp_path):
    """The example series is JPEG 2000 compressed and anonymised (empty Study/Series/SOP UIDs): DICOM out still works."""
    pydicom = pytest.importorskip("pydicom")
    hd = pytest.importorskip("highdicom")
    from tumorsyn.io import load_scan

    series, labels = dicom_case
    out = _generate(cli, series, labels, tmp_path / "out", "--label-preset", "totalsegmentator", "--organ", "liver",
                    "--size-mm", "8-16", "--seed", "1", "--case-id", "dcm")
    nifti = _generate(cli, series, labels, tmp_path / "nifti", "--label-preset", "totalsegmentator", "--organ", "liver",
                      "--size-mm", "8-16", "--seed", "1", "--case-id", "dcm", "--output-format", "nifti")
    written = [pydicom.dcmread(p) for p in sorted((out / "dcm_ct").iterdir())]
    assert len(written) == 20 and all(ds.StudyInstanceUID and ds.SOPInstanceUID for ds in written)
    assert written[0].file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian  # written uncompressed
    assert (written[0].BitsStored, written[0].RescaleIntercept) == (12, -1024)
    np.testing.assert_array_equal(load_scan(out / "dcm_ct").values(), load_scan(nifti / "dcm_ct.nii.gz").values())
    seg = hd.seg.segread(out / "dcm_tumor.dcm")
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID for ds in written],
                                               segment_numbers=[1], ignore_spatial_locations=True)[..., 0]
    tumour = np.asanyarray(nib.load(str(nifti / "dcm_tumor.nii.gz")).dataobj).astype(bool)
    order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in written])
    np.testing.assert_array_equal(frames.astype(bool)[order], np.transpose(tumour, (2, 1, 0)))


def test_dicom_series_auto_preset_and_wrong_organ_label(cli, dicom_case, tmp_path):
    series, labels = dicom_case
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--organ-label", "250",
                       "--out", tmp_path / "out", "--quiet")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and labels.name in lines[0] and "250" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ircad_liver(tmp_path_factory):
    """3D-IRCADb patient 7, cropped at load time around its liver (never written outside tmp)."""
    ct_path = real_path("3dircadb1", "3Dircadb1.7", "ct.nii.gz")
    mask_path = real_path("3dircadb1", "3Dircadb1.7", "masks", "liver.nii.gz")
    mask_img = nib.load(str(mask_path))
    mask = np.asarray(mask_img.dataobj)
    centre = np.round(ndimage.center_of_mass(mask > 0)).astype(int)
    half = np.array([64, 64, 24])
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(lo + 2 * half, mask.shape)
    window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    folder = tmp_path_factory.mktemp("ircad")
    paths = []
    for src, name in ((ct_path, "ircad7_ct.nii.gz"), (mask_path, "ircad7_liver.nii.gz")):
        cropped = nib.load(str(src)).slicer[window]  # keeps the affine consistent with the crop
        nib.save(cropped, str(folder / name))
        paths.append(folder / name)
    return tuple(paths)


def test_ircad_liver_tumour(cli, ircad_liver, tmp_path):
    ct, liver_path = ircad_liver
    source = nib.load(str(ct))
    assert "".join(nib.aff2axcodes(source.affine)) == "LPS"
    out = _generate(cli, ct, liver_path, tmp_path / "out", "--organ", "liver", "--size-mm", "10-20", "--seed", "7",
                    "--case-id", "p7")
    out_img = nib.load(str(out / "p7_ct.nii.gz"))
    np.testing.assert_array_equal(out_img.affine, source.affine)
    assert nifti_header_bytes(out / "p7_ct.nii.gz") == nifti_header_bytes(ct)
    tumor = np.asarray(nib.load(str(out / "p7_tumor.nii.gz")).dataobj).astype(bool)
    liver = np.asarray(nib.load(str(liver_path)).dataobj).astype(bool)
    zooms = source.header.get_zooms()[:3]
    assert 10.0 <= equivalent_diameter(tumor, zooms) <= 20.0
    assert liver[tumor].all()
    far = _far_from(tumor, zooms, 6.0)
    np.testing.assert_array_equal(stored_data(out / "p7_ct.nii.gz")[far], stored_data(ct)[far])
    (record,) = read_manifest(out / "manifest.jsonl")
    measured = record["tumors"][0]["measured"]
    assert measured["mean_hu_tumor"] < measured["mean_hu_organ_nearby"]
