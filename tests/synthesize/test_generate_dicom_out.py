"""``tumorsyn generate`` on a DICOM series writes a DICOM series and DICOM-SEG objects (``--output-format``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from generate_helpers import read_manifest, temp_files, tree_digest, write_dicom_phantom

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom", reason="DICOM-SEG output needs highdicom: pip install 'tumorsyn[dicom]'")

SERIES_ID = "series"  # the case id of <tmp>/series/


@pytest.fixture
def dicom_phantom(tmp_path):
    return write_dicom_phantom(tmp_path / "in")


def _generate(cli, series, labels, out, *extra):
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--size-mm", "8-12", "--seed", "5",
                       "--out", out, "--quiet", *extra)
    assert code == 0, err
    return out


def _read_series(folder):
    """pydicom datasets of a series folder, in slice order along the normal (z here)."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _hu(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_dicom_in_dicom_out(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    out = _generate(cli, series, labels, tmp_path / "out", "--label-map")
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["output_format"] == "dicom"
    assert record["outputs"] == {"ct": f"{SERIES_ID}_ct", "tumor": f"{SERIES_ID}_tumor.dcm",
                                 "label": f"{SERIES_ID}_label.dcm"}
    assert {p.name for p in out.iterdir()} == {*record["outputs"].values(), "manifest.jsonl", "run.json"}
    from tumorsyn.io.checksums import sha256_file

    # The manifest's checksums cover the new files (the series folder: names and bytes of its slices).
    assert record["outputs_sha256"] == {k: sha256_file(out / name) for k, name in record["outputs"].items()}

    source, written = _read_series(series), _read_series(out / f"{SERIES_ID}_ct")
    assert len(written) == len(source) == 32
    tumour_hu_changed = 0
    for before, after in zip(source, written):
        # Geometry and every other header element kept, pixel representation included.
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                        "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope",
                        "RescaleIntercept", "InstanceNumber", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID",
                        "Rows", "Columns"):
            assert after[keyword].value == before[keyword].value, keyword
        assert after[0x00091010].value == "kept private value"
        # New UIDs, derived flags, and words saying what was synthesised.
        assert after.SOPInstanceUID != before.SOPInstanceUID
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert after.SeriesInstanceUID != before.SeriesInstanceUID
        assert list(after.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "synthetic liver tumour" in after.SeriesDescription
        seed = f"seed {record['tumors'][0]['spec']['seed']}"
        assert all(w in after.DerivationDescription for w in ("rules", "liver", seed, "SYNTHETIC")), seed
        assert after.SourceImageSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
        assert after.pixel_array.dtype == before.pixel_array.dtype
        tumour_hu_changed += int((after.pixel_array != before.pixel_array).sum())
    assert tumour_hu_changed > 0
    assert len({ds.SOPInstanceUID for ds in written}) == 32
    assert len({ds.SeriesInstanceUID for ds in written}) == 1

    # A second reader (highdicom) builds the same volume geometry from both series.
    volume_in = hd.get_volume_from_series(source, apply_modality_transform=True)
    volume_out = hd.get_volume_from_series(written, apply_modality_transform=True)
    np.testing.assert_allclose(volume_out.affine, volume_in.affine)

    # The SEG overlays the tumour: its frames, by referenced slice, are exactly the voxels whose
    # tumorsyn label is set (compared with the NIfTI output of the same run).
    nifti = _generate(cli, series, labels, tmp_path / "nifti", "--output-format", "nifti", "--label-map")
    from tumorsyn.io import load_labels, load_scan

    tumour = load_labels(nifti / f"{SERIES_ID}_tumor.nii.gz")
    tumour_file = tumour.raw.astype(bool)  # file order (column, row, slice) = the series' own order
    seg = hd.seg.segread(out / f"{SERIES_ID}_tumor.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == written[0].SeriesInstanceUID
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID for ds in written],
                                               segment_numbers=[1])[..., 0]
    np.testing.assert_array_equal(frames.astype(bool), np.transpose(tumour_file, (2, 1, 0)))

    # Same voxels as the NIfTI output everywhere, so also outside the tumour's written region: the input's.
    ct_dicom = load_scan(out / f"{SERIES_ID}_ct")
    ct_nifti = load_scan(nifti / f"{SERIES_ID}_ct.nii.gz")
    np.testing.assert_allclose(ct_dicom.affine, ct_nifti.affine, atol=1e-6)
    np.testing.assert_array_equal(ct_dicom.values(), ct_nifti.values())
    changed = np.transpose(ct_dicom.raw != load_scan(series).raw, (2, 1, 0))  # (slice, row, column)
    assert changed.any()
    volume_hu = np.stack([_hu(ds) for ds in written])  # (slice, row, column)
    np.testing.assert_array_equal(np.transpose(volume_hu, (2, 1, 0)), ct_dicom.raw * ct_dicom.slope + ct_dicom.inter)
    # highdicom orders its volume's slices its own way: put them in z order by its affine.
    z = [float((volume_out.affine @ [i, 0, 0, 1])[2]) for i in range(volume_out.array.shape[0])]
    np.testing.assert_array_equal(volume_out.array[np.argsort(z)], volume_hu)
    np.testing.assert_array_equal(volume_in.array[np.argsort(z)][~changed], volume_hu[~changed])

    # The label map as SEG: segment 1 the organ (without the tumour), segment 2 the tumour.
    label_seg = hd.seg.segread(out / f"{SERIES_ID}_label.dcm")
    assert label_seg.number_of_segments == 2
    combined = load_labels(nifti / f"{SERIES_ID}_label.nii.gz").raw
    both = label_seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID for ds in written],
                                                   segment_numbers=[1, 2])
    for number in (1, 2):
        np.testing.assert_array_equal(both[..., number - 1].astype(bool), np.transpose(combined == number, (2, 1, 0)))


def test_same_seed_same_bytes_and_resume(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    first = _generate(cli, series, labels, tmp_path / "a", "--label-map")
    second = _generate(cli, series, labels, tmp_path / "b", "--label-map")
    digest = {k: v for k, v in tree_digest(first).items() if k not in ("manifest.jsonl", "run.json")}
    assert digest and digest == {k: v for k, v in tree_digest(second).items() if k not in ("manifest.jsonl", "run.json")}
    # Another seed: other UIDs (and another tumour).
    other = tmp_path / "c"
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--size-mm", "8-12", "--seed", "6",
                       "--out", other, "--quiet")
    assert code == 0, err
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in (first / f"{SERIES_ID}_ct").iterdir()}
    assert not uids & {pydicom.dcmread(p).SOPInstanceUID for p in (other / f"{SERIES_ID}_ct").iterdir()}
    # A finished series folder is skipped on resume (not refused as "a folder holds an output name").
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--size-mm", "8-12", "--seed", "5",
                       "--out", first, "--label-map")
    assert code == 0 and "0 output(s), 1 already finished" in err
    assert {k: v for k, v in tree_digest(first).items() if k in digest} == digest
    assert not temp_files(first)


def test_replayed_spec_gives_the_same_series(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    out = _generate(cli, series, labels, tmp_path / "out")
    again = tmp_path / "again"
    code, _, err = cli("generate", series, "--labels", labels, "--from-spec", out / "manifest.jsonl", "--out", again,
                       "--quiet")
    assert code == 0, err
    assert tree_digest(again / f"{SERIES_ID}_ct") == tree_digest(out / f"{SERIES_ID}_ct")
    assert (again / f"{SERIES_ID}_tumor.dcm").read_bytes() == (out / f"{SERIES_ID}_tumor.dcm").read_bytes()


def test_nifti_output_for_dicom_input_keeps_todays_files(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    out = _generate(cli, series, labels, tmp_path / "out", "--output-format", "nifti")
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["outputs"] == {"ct": f"{SERIES_ID}_ct.nii.gz", "tumor": f"{SERIES_ID}_tumor.nii.gz"}
    assert json.loads((out / "run.json").read_text())["output_format"] == "nifti"


def test_dicom_output_for_nifti_input_is_refused(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--output-format", "dicom",
                       "--out", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0] == (f"tumorsyn: error: {ct}: --output-format dicom needs a DICOM series folder as input, and this "
                        f"is a NIfTI file (no DICOM headers to keep); use --output-format nifti or auto")
    assert not (tmp_path / "out").exists()


def test_save_steps_with_dicom_output_is_refused(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--method", "ca", "--save-steps",
                       "3", "--out", tmp_path / "out")
    assert code == 1 and "--save-steps writes its steps as NIfTI only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_series_folder_inside_the_input_is_refused(cli, dicom_phantom, tmp_path):
    series, labels = dicom_phantom
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--out", series / "out")
    assert code == 1 and "inside the input folder" in err


def test_dicom_output_without_highdicom_is_refused_before_any_work(cli, dicom_phantom, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "highdicom" else find_spec(name, *a))
    series, labels = dicom_phantom
    code, _, err = cli("generate", series, "--labels", labels, "--organ", "liver", "--out", tmp_path / "out")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.strip() == (f"tumorsyn: error: {series}: a DICOM series input (--output-format auto) writes a DICOM "
                           f"series and DICOM-SEG, which needs highdicom: pip install 'tumorsyn[dicom]', or give "
                           f"--output-format nifti")
    assert not (tmp_path / "out").exists()
    # NIfTI output needs no highdicom.
    _generate(cli, series, labels, tmp_path / "nifti", "--output-format", "nifti")


def test_a_run_folder_from_before_output_format_resumes(cli, phantom_case, tmp_path):
    """run.json written before --output-format existed lacks the key: it reads as auto, so the run resumes."""
    ct, labels = phantom_case
    out = _generate(cli, ct, labels, tmp_path / "out")
    run = json.loads((out / "run.json").read_text())
    del run["output_format"]
    (out / "run.json").write_text(json.dumps(run))
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--size-mm", "8-12", "--seed", "5",
                       "--out", out)
    assert code == 0 and "0 output(s), 1 already finished" in err, err
