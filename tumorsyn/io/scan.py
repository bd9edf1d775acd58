"""A scan as read from disk, and its canonical RAS+ view.

``Scan`` keeps the stored (unscaled) voxel values in the file's own orientation, so that a writer can
give back every untouched voxel byte for byte; ``Scan.hu`` and friends give the canonical view that
all computation uses.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from tumorsyn.errors import CorruptFileError, GridMismatchError, InputError, NotHUError

__all__ = ["Scan", "read_image", "read_nifti_bytes", "load_scan", "load_labels", "check_same_grid"]

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Reading errors that mean "this file is damaged" rather than "tumorsyn has a bug".
_READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError, nib.filebasedimages.ImageFileError)


@dataclass
class Scan:
    """A 3D image in the file's own orientation, with what is needed to write it back unchanged.

    Attributes
    ----------
    path : Path
        Where it was read from (a file, or a DICOM series folder).
    raw : ndarray, shape (I, J, K)
        Stored voxel values in file order and dtype, before any rescale slope/intercept.
    affine : ndarray, shape (4, 4)
        Voxel index -> RAS+ world mm, as in the file.
    header : nibabel header
        The file's NIfTI header (or one built for a DICOM series); reused verbatim on output.
    slope, inter : float
        Rescale to physical units: ``value = raw * slope + inter``.
    """

    path: Path
    raw: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    slope: float = 1.0
    inter: float = 0.0
    _ornt: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ornt = io_orientation(self.affine)

    # --- canonical view -------------------------------------------------------------------------
    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """File-ordered array -> canonical RAS+ order (a view: flips and transposes only)."""
        return apply_orientation(array, self._ornt)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Canonical RAS+ array -> the file's own axis order and directions (a view)."""
        return apply_orientation(array, ornt_transform(_RAS, self._ornt))

    @property
    def canonical_affine(self) -> np.ndarray:
        """Affine of the canonical array (voxel index -> RAS+ mm)."""
        return self.affine @ nib.orientations.inv_ornt_aff(self._ornt, self.raw.shape)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along canonical X, Y, Z in mm."""
        zooms = np.sqrt((self.canonical_affine[:3, :3] ** 2).sum(axis=0))
        return tuple(float(z) for z in zooms)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical array shape (X, Y, Z)."""
        return tuple(int(s) for s in self.to_canonical(self.raw).shape)

    def values(self) -> np.ndarray:
        """Physical values (HU for a CT) in canonical order, float32."""
        return self.decode(self.to_canonical(self.raw))

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> physical values (float32), as :meth:`values` reads them; the inverse of :meth:`encode`."""
        data = np.asarray(stored).astype(np.float32)
        if self.slope != 1.0:
            data *= np.float32(self.slope)
        if self.inter != 0.0:
            data += np.float32(self.inter)
        return data

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Physical values -> stored values in the file's dtype (rounded and clipped for integers)."""
        dtype = self.raw.dtype
        stored = (np.asarray(values, dtype=np.float64) - self.inter) / self.slope
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            stored = np.clip(np.rint(stored), info.min, info.max)
        return stored.astype(dtype)

    def world_mm(self, index_xyz) -> tuple[float, float, float]:
        """Canonical voxel index (may be fractional) -> RAS+ world coordinates in mm."""
        point = self.canonical_affine @ np.append(np.asarray(index_xyz, dtype=float), 1.0)
        return tuple(float(v) for v in point[:3])


def _gunzip_verified(data: bytes | memoryview, path: Path) -> bytes:
    """Decompress every gzip member of ``data``, checking each member's CRC-32 and length trailer.

    nibabel reads a ``.nii.gz`` only as far as the voxels it needs and never reaches the trailer, so a
    flipped bit inside the compressed data would be read as plausible voxels. zlib with a gzip
    wrapper (``wbits=16 + MAX_WBITS``) verifies the trailer itself when the stream ends.
    """
    members = []
    rest = memoryview(data)
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            members.append(inflater.decompress(rest))
        except zlib.error as exc:
            detail = str(exc).rsplit(": ", 1)[-1]
            reason = {"incorrect data check": "gzip CRC-32 check failed (the data does not match its checksum); "
                                              "the file is corrupt",
                      "incorrect length check": "gzip length check failed (the data does not match its recorded "
                                                "size); the file is corrupt",
                      "incorrect header check": "data after the end of the gzip stream; the file is corrupt"
                                                if members else "not gzip data although the name ends in .gz; "
                                                "the file is truncated, corrupt or not an image",
                      }.get(detail, f"corrupt gzip data ({detail}); the file is truncated or corrupt")
            raise CorruptFileError(f"cannot be read: {reason}; copy it again from its source", path=path) from None
        if not inflater.eof:
            raise CorruptFileError("cannot be read: gzip data ends before its end marker and checksum; the file is "
                                   "truncated or corrupt, copy it again from its source", path=path)
        # Concatenated members are valid gzip; zero padding after the last one is tolerated as gzip does.
        tail = inflater.unused_data.lstrip(b"\0")
        if not tail:
            break
        rest = memoryview(tail)
    return members[0] if len(members) == 1 else b"".join(members)


def read_nifti_bytes(path: str | Path) -> bytes:
    """The whole stored NIfTI stream of a file: its bytes, decompressed and verified for ``.nii.gz``.

    The file is read once; for a ``.nii.gz`` every gzip member's CRC-32 and length are checked, so a
    damaged or truncated file is refused instead of read as wrong voxels. Peak memory is about the
    compressed plus the decompressed size.

    Raises
    ------
    CorruptFileError
        With a one-line message naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"cannot be read ({exc.strerror or exc})", path=path) from None
    if path.name.endswith(".gz"):
        data = _gunzip_verified(data, path)
    return data


def _read_nifti(path: Path) -> Scan:
    if not path.exists():
        raise CorruptFileError("file not found", path=path)
    if path.is_dir():
        raise CorruptFileError("is a folder without DICOM files; expected a .nii/.nii.gz file or a DICOM series folder", path=path)
    if not path.name.endswith(_NIFTI_SUFFIXES):
        raise CorruptFileError("not a NIfTI file (expected .nii or .nii.gz) nor a DICOM folder", path=path)
    data = read_nifti_bytes(path)
    # The magic decides NIfTI-1 or -2, as nibabel's loader does (NIfTI-1 first).
    klass = next((k for k in (nib.Nifti1Image, nib.Nifti2Image) if k.header_class.may_contain_header(data)), None)
    if klass is None:
        raise CorruptFileError("not a NIfTI-1 or NIfTI-2 image (no NIfTI header magic); the file is corrupt or "
                               "not an image", path=path)
    try:
        img = klass.from_bytes(data)
        raw = np.asanyarray(img.dataobj.get_unscaled())
        slope, inter = img.dataobj.slope, img.dataobj.inter
        # nibabel's image header has its scaling fields reset; re-read the header as stored so
        # that outputs carry exactly the input's header bytes.
        header = klass.header_class.from_fileobj(io.BytesIO(data))
    except _READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFileError(f"cannot be read as NIfTI ({reason}); the file is truncated, corrupt or not an image", path=path) from None
    return Scan(path=path, raw=np.asarray(raw), affine=img.affine.copy(), header=header,
                slope=float(slope), inter=float(inter))


def _read_any(path: str | Path) -> Scan:
    path = Path(path)
    if path.is_dir():
        from tumorsyn.io.dicom import looks_like_dicom_folder, read_dicom_volume

        if looks_like_dicom_folder(path):
            return Scan(**read_dicom_volume(path))
    return _read_nifti(path)


def _check_3d(scan: Scan) -> None:
    if scan.raw.ndim != 3:
        raise InputError(f"image is {scan.raw.ndim}D with shape {tuple(scan.raw.shape)}; tumorsyn needs one 3D volume", path=scan.path)
    if min(scan.raw.shape) < 2:
        raise InputError(f"image shape {tuple(scan.raw.shape)} is flat (a 2D slice); tumorsyn needs a 3D volume", path=scan.path)


def read_image(path: str | Path) -> Scan:
    """Read any 3D image (NIfTI file or DICOM series folder) without judging its values."""
    scan = _read_any(path)
    _check_3d(scan)
    return scan


def load_scan(path: str | Path) -> Scan:
    """Read a CT (NIfTI file or DICOM series folder) and check that it holds HU.

    Parameters
    ----------
    path : str or Path
        ``.nii``/``.nii.gz`` file, or a folder holding one DICOM CT series.

    Returns
    -------
    Scan
        Use ``scan.values()`` for canonical HU (float32), ``scan.spacing_mm`` for the voxel size.

    Raises
    ------
    CorruptFileError, InputError, NotHUError
        With a one-line message naming the file.
    """
    scan = read_image(path)
    hu = scan.values()
    if not np.isfinite(hu).all():
        bad = int((~np.isfinite(hu)).sum())
        raise NotHUError(f"{bad} voxels are NaN or infinite; a CT must hold finite HU values", path=scan.path)
    lo, hi = float(hu.min()), float(hu.max())
    if hi - lo < 200:
        raise NotHUError(f"intensity range {lo:g}..{hi:g} is too narrow for HU (normalised data?); give the original CT in Hounsfield units", path=scan.path)
    if lo >= -50:
        raise NotHUError(f"no value below {lo:g}: CT in HU has air near -1000 (raw scanner values without rescale slope/intercept?); convert to HU first", path=scan.path)
    return scan


def load_labels(path: str | Path) -> Scan:
    """Read a label map or binary mask (NIfTI or a DICOM-derived NIfTI); values must be whole numbers."""
    scan = read_image(path)
    values = scan.raw if scan.slope == 1.0 and scan.inter == 0.0 else scan.values()
    if not np.issubdtype(values.dtype, np.integer):
        finite = np.isfinite(values)
        if not finite.all() or not np.array_equal(values, np.round(values)):
            raise InputError("label map holds non-integer values; give integer labels (or a binary mask)", path=scan.path)
    return scan


def check_same_grid(ct: Scan, labels: Scan, *, atol_mm: float = 0.01) -> None:
    """Raise :class:`GridMismatchError` unless both images share the canonical voxel grid."""
    if ct.shape != labels.shape:
        raise GridMismatchError(
            f"label grid {labels.shape} differs from CT grid {ct.shape} of {ct.path.name}; resample the labels onto the CT grid first",
            path=labels.path)
    if not np.allclose(ct.canonical_affine, labels.canonical_affine, atol=atol_mm):
        shift = float(np.abs(ct.canonical_affine - labels.canonical_affine).max())
        raise GridMismatchError(
            f"label affine differs from the affine of CT {ct.path.name} by up to {shift:.3g} mm; the labels are not on the CT's voxel grid",
            path=labels.path)
