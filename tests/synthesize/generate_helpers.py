"""Helpers for the ``tumorsyn generate`` tests: tiny CT phantoms on disk, dataset layouts, CLI runners."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.cli.main import main

from tests.conftest import REAL  # one rule for where the real scans are

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CT = REPO / "tumorsyn" / "data" / "example_ct.nii.gz"
EXAMPLE_LABELS = REPO / "tumorsyn" / "data" / "example_labels.nii.gz"
TMP_PREFIX = ".tumorsyn-tmp-"

# Phantom geometry: 48 x 48 x 32 voxels of 1.5 x 1.5 x 2.5 mm (72 x 72 x 80 mm).
PHANTOM_SHAPE = (48, 48, 32)
PHANTOM_SPACING = (1.5, 1.5, 2.5)
# Keys of a manifest record that legitimately change from one run to the next.
VOLATILE_KEYS = ("created", "seconds")


def real_path(*parts: str) -> Path:
    """A path under ../shared/data/real, or skip the test naming what is missing."""
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{'/'.join(parts)} not in ../shared/data/real; see its README")
    return path


def phantom_arrays(seed: int = 0, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING):
    """An int16 CT in HU (air -1000, body 0..40, ellipsoidal liver 60 +- 10) and its uint8 liver label (1)."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(np.float32)
    centre = [(n - 1) / 2 for n in shape]
    mm = [(idx[a] - centre[a]) * spacing[a] for a in range(3)]
    body = (mm[0] / 34.0) ** 2 + (mm[1] / 30.0) ** 2 <= 1.0
    # The liver moves a little with the seed so that cases differ.
    shift = rng.uniform(-3.0, 3.0, size=3)
    liver = sum(((mm[a] - shift[a]) / r) ** 2 for a, r in enumerate((24.0, 21.0, 30.0))) <= 1.0
    ct = np.full(shape, -1000.0, np.float32)
    ct[body] = rng.uniform(0.0, 40.0, size=int(body.sum()))
    ct[liver] = 60.0 + rng.normal(0.0, 10.0, size=int(liver.sum()))
    ct = np.rint(ct).astype(np.int16)
    return ct, liver.astype(np.uint8)


def phantom_affine(spacing=PHANTOM_SPACING) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-30.0, -40.0, 12.5]
    return affine


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None, **header_fields) -> Path:
    """Save ``data`` as NIfTI-1 with an sform/qform from ``affine`` (the phantom's by default)."""
    affine = phantom_affine() if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    for key, value in header_fields.items():
        img.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def write_phantom(folder: Path, name: str = "phantom", seed: int = 0, *, ct_name: str | None = None,
                  labels_name: str | None = None) -> tuple[Path, Path]:
    """Write ``<name>_ct.nii.gz``-style CT and label files of a phantom; return (ct, labels)."""
    ct, labels = phantom_arrays(seed)
    ct_path = save_nifti(folder / (ct_name or f"{name}.nii.gz"), ct)
    labels_path = save_nifti(folder / (labels_name or f"{name}_seg.nii.gz"), labels)
    return ct_path, labels_path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).rglob(f"{TMP_PREFIX}*"))


def read_manifest(path: Path) -> list[dict]:
    """Every line of a manifest parsed (a torn or non-JSON line fails the test)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def stable(record: dict) -> dict:
    """A manifest record without the keys that change between identical runs."""
    return {k: v for k, v in record.items() if k not in VOLATILE_KEYS}


def nifti_header_bytes(path: Path) -> bytes:
    """The stored header of a (gzipped) NIfTI-1 file, up to its data offset, as on disk."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(348)
        offset = int(np.frombuffer(head[108:112], dtype="<f4")[0])
        return head + fh.read(max(offset, 352) - 348)


def stored_data(path: Path) -> np.ndarray:
    """Stored (unscaled) voxel values of a NIfTI file, in file order."""
    return np.asanyarray(nib.load(str(path)).dataobj.get_unscaled())


class CLI:
    """Run ``tumorsyn`` in this process: ``cli("generate", ...)`` -> (exit code, stdout, stderr)."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *argv) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


def cli_command(*argv) -> list[str]:
    return [sys.executable, "-m", "tumorsyn.cli.main", *(str(a) for a in argv)]


def run_subprocess(*argv, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*argv), capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def make_dataset(root: Path, layout: str, n_cases: int = 3) -> Path:
    """A dataset of ``n_cases`` phantoms; returns what to pass to ``--dataset``.

    layout: ``nnunet`` (imagesTr/<id>_0000.nii.gz + labelsTr/<id>.nii.gz), ``decathlon``
    (dataset.json listing imagesTr/<id>.nii.gz and labelsTr/<id>.nii.gz) or ``csv`` (rows of ct,labels).
    """
    ids = [f"case_{k:03d}" for k in range(n_cases)]
    if layout == "nnunet":
        for k, case_id in enumerate(ids):
            write_phantom(root, seed=k, ct_name=f"imagesTr/{case_id}_0000.nii.gz",
                          labels_name=f"labelsTr/{case_id}.nii.gz")
        return root
    if layout == "decathlon":
        training = []
        for k, case_id in enumerate(ids):
            write_phantom(root, seed=k, ct_name=f"imagesTr/{case_id}.nii.gz", labels_name=f"labelsTr/{case_id}.nii.gz")
            training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
        (root / "dataset.json").write_text(json.dumps({"name": "phantoms", "labels": {"0": "background", "1": "liver"},
                                                       "numTraining": n_cases, "training": training}))
        return root
    if layout == "csv":
        rows = ["ct,labels"]
        for k, case_id in enumerate(ids):
            write_phantom(root / "scans", seed=k, ct_name=f"{case_id}.nii.gz", labels_name=f"{case_id}_mask.nii.gz")
            rows.append(f"scans/{case_id}.nii.gz,scans/{case_id}_mask.nii.gz")
        path = root / "cases.csv"
        path.write_text("\n".join(rows) + "\n")
        return path
    raise ValueError(layout)


def save_raw_nifti(path: Path, raw: np.ndarray, affine: np.ndarray | None = None, *, slope: float = 1.0,
                   inter: float = 0.0) -> Path:
    """Write stored values ``raw`` exactly, with the given scl_slope/scl_inter (nibabel would rescale)."""
    from nibabel.volumeutils import array_to_file

    affine = phantom_affine() if affine is None else affine
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm", "sec")
    header["scl_slope"], header["scl_inter"] = slope, inter
    header.set_data_offset(352)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        header.write_to(fh)
        array_to_file(raw, fh, raw.dtype, offset=352, order="F")
    return path


def equivalent_diameter(mask: np.ndarray, spacing) -> float:
    """Equivalent-sphere diameter in mm, computed here independently of tumorsyn.lesion_size."""
    volume = float(np.count_nonzero(mask)) * float(np.prod(spacing))
    return 2.0 * (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)


def write_dicom_phantom(folder: Path, seed: int = 0, *, signed: bool = False, intercept: float = -1024.0,
                        bits_stored: int = 12) -> tuple[Path, Path]:
    """The phantom as a DICOM CT series (one file per slice, names not in slice order) and its liver label map.

    Returns (series folder, labels NIfTI on the series' grid). Stored values are HU - ``intercept``
    (slope 1), in ``bits_stored`` bits, unsigned unless ``signed``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ct, liver = phantom_arrays(seed)
    stored = (ct.astype(np.int32) - int(intercept)).astype(np.int16 if signed else np.uint16)
    series = folder / "series"
    series.mkdir(parents=True)
    study, frame, series_uid = generate_uid(), generate_uid(), generate_uid()
    origin = np.array([-30.0, -40.0, 12.5])
    for k in range(ct.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.Modality, ds.PatientID, ds.PatientName, ds.SeriesDescription = "CT", "PHANTOM", "Phantom^Test", "phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20240101", "120000", 3, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in origin + [0.0, 0.0, 2.5 * k]]
        ds.PixelSpacing, ds.SliceThickness = [1.5, 1.5], 2.5
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, intercept, "HU"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ct.shape[1], ct.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (rows, columns)
        ds.add_new(0x00091010, "LO", "kept private value")  # a private tag: headers are kept whole
        ds.add_new(0x00090010, "LO", "PHANTOM PRIVATE")
        pydicom.dcmwrite(series / f"img{(k * 7) % ct.shape[2]:03d}", ds, enforce_file_format=True)
    from tumorsyn.io import load_scan

    labels = save_nifti(folder / "labels.nii.gz", liver, load_scan(series).affine)
    return series, labels
