"""Reading one DICOM CT series into a :class:`~tumorsyn.io.scan.Scan`.

pydicom is an optional dependency (``pip install 'tumorsyn[dicom]'``), imported only here.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorsyn.errors import CorruptFileError, InputError

__all__ = ["read_dicom_volume", "read_series_slices", "looks_like_dicom_folder"]


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_dicom_folder(folder: Path) -> bool:
    """True when the folder holds at least one file with the DICOM preamble."""
    return any(p.is_file() and _is_dicom_file(p) for p in sorted(folder.iterdir())[:50])


def _pixel_array(ds) -> np.ndarray:
    """One slice's pixels; a slice whose pixel data does not decode is named in the error."""
    try:
        return ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom and its decoders raise many types for damaged data
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"DICOM pixel data cannot be decoded ({reason}); the file is truncated or corrupt",
                               path=getattr(ds, "filename", None)) from None


def read_series_slices(folder: str | Path) -> list:
    """The image slices of the one DICOM series in ``folder``, as pydicom datasets in volume order.

    Volume order is the position along the slice normal (not file name or instance number); the
    ``k``-th dataset is slice ``k`` of :func:`read_dicom_volume`'s array, which is what lets a
    writer (:mod:`tumorsyn.io.dicom_out`) give each slice its own header back.

    Raises
    ------
    InputError, CorruptFileError
        One line naming the folder or the damaged file.
    """
    folder = Path(folder)
    try:
        import pydicom
    except ImportError:
        raise InputError("reading a DICOM series needs pydicom: pip install 'tumorsyn[dicom]'", path=folder) from None

    files = [p for p in sorted(folder.iterdir()) if p.is_file() and _is_dicom_file(p)]
    slices = []
    for path in files:
        try:
            with warnings.catch_warnings():
                # pydicom warns (on stderr) about a truncated file; the check below turns it into one error line.
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise CorruptFileError(f"DICOM file cannot be read ({type(exc).__name__}: {exc})", path=path) from None
        if "PixelData" not in ds:
            sop_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
            if "Rows" in ds or "Image Storage" in getattr(sop_class, "name", ""):
                # An image whose pixel data pydicom could not reach: the file was cut short. Skipping
                # it would silently make the series shorter (or leave a gap).
                raise CorruptFileError("DICOM image has no complete pixel data; the file is truncated or corrupt",
                                       path=path)
            continue
        slices.append(ds)
    if len(slices) < 2:
        raise InputError(f"found {len(slices)} DICOM image slice(s); a CT series needs at least 2", path=folder)
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise InputError(f"folder mixes {len(series)} DICOM series; put one series per folder", path=folder)

    first = slices[0]
    try:
        orient = np.asarray(first.ImageOrientationPatient, dtype=float)
        row_dir, col_dir = orient[:3], orient[3:]  # directions of increasing column and row index
        normal = np.cross(row_dir, col_dir)
        slices.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)))
    except (AttributeError, KeyError, ValueError) as exc:
        raise CorruptFileError(f"DICOM series lacks geometry or pixel data ({exc})", path=folder) from None
    return slices


def read_dicom_volume(folder: str | Path) -> dict:
    """Read the CT slices in ``folder`` (one series): the fields of a :class:`~tumorsyn.io.scan.Scan`, RAS+ affine.

    Returns a dict (``path``, ``raw``, ``affine``, ``header``, ``slope``, ``inter``), not the Scan
    itself, so that this module need not import ``scan`` (which reads DICOM folders through it).

    Slices are ordered by their position along the slice normal (:func:`read_series_slices`), and
    the stored values keep the series' rescale slope and intercept so that a writer can reproduce
    them exactly.
    """
    folder = Path(folder)
    slices = read_series_slices(folder)
    first = slices[0]
    try:
        orient = np.asarray(first.ImageOrientationPatient, dtype=float)
        row_dir, col_dir = orient[:3], orient[3:]
        normal = np.cross(row_dir, col_dir)
        positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=float) for ds in slices])
        row_step, col_step = (float(v) for v in first.PixelSpacing)  # (between rows, between columns)
        pixels = [_pixel_array(ds) for ds in slices]
    except (AttributeError, KeyError, ValueError) as exc:
        raise CorruptFileError(f"DICOM series lacks geometry or pixel data ({exc})", path=folder) from None
    if len({p.shape for p in pixels}) != 1:
        raise InputError("DICOM slices differ in size; not one CT series", path=folder)
    gaps = np.diff(positions @ normal)
    if np.any(gaps <= 0) or np.ptp(gaps) > 0.01 * max(abs(gaps.mean()), 1e-6) + 1e-3:
        raise InputError(f"DICOM slice spacing is uneven ({gaps.min():.3g}..{gaps.max():.3g} mm) or slices repeat", path=folder)

    slope = float(getattr(first, "RescaleSlope", 1.0))
    inter = float(getattr(first, "RescaleIntercept", 0.0))
    for ds in slices:
        if float(getattr(ds, "RescaleSlope", 1.0)) != slope or float(getattr(ds, "RescaleIntercept", 0.0)) != inter:
            raise InputError("DICOM slices use different rescale slope/intercept; not supported", path=folder)

    # pixel_array is (rows, columns); array axes here are (column, row, slice).
    raw = np.stack([p.T for p in pixels], axis=-1)
    slice_vec = (positions[-1] - positions[0]) / (len(slices) - 1)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_step
    affine_lps[:3, 1] = col_dir * row_step
    affine_lps[:3, 2] = slice_vec
    affine_lps[:3, 3] = positions[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps  # DICOM LPS -> NIfTI RAS

    header = nib.Nifti1Header()
    header.set_data_dtype(raw.dtype)
    header.set_data_shape(raw.shape)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_xyzt_units("mm")
    header.set_slope_inter(slope, inter)
    header.set_data_offset(352)
    return {"path": folder, "raw": raw, "affine": affine, "header": header, "slope": slope, "inter": inter}
