"""A CT read only as far as a study's crops need it.

A study reads one compressed scan per case, and converting a whole 512x512 CT to float HU costs far
more than cropping and rendering it. A NIfTI file stores its slowest axis last, so the slices a crop
needs are one contiguous run: :class:`CTVolume` converts that run only, in full slices, and checks
that it holds Hounsfield units. A compressed file is still decompressed whole, so that its gzip
checksum is verified and a damaged file is refused. Orientation and spacing come from
:class:`tumorsyn.io.scan.Scan`; anything that is not a plain NIfTI file, or that nibabel cannot slice,
is read whole by :func:`tumorsyn.io.scan.read_image`, which also gives the one-line errors.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tumorsyn.errors import NotHUError
from tumorsyn.io.scan import Scan, read_image, read_nifti_bytes

__all__ = ["CTVolume", "check_hu"]


def check_hu(values: np.ndarray, path) -> None:
    """``load_scan``'s HU criteria (finite, range >= 200 HU, air below -50 HU) on the voxels read.

    Raises
    ------
    NotHUError
        Naming ``path``.
    """
    if not np.isfinite(values).all():
        raise NotHUError("holds NaN or infinite values; a CT must hold finite HU values", path=path)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 200:
        raise NotHUError(f"intensity range {lo:g}..{hi:g} is too narrow for HU (normalised data?); give the original "
                         "CT in Hounsfield units", path=path)
    if lo >= -50:
        raise NotHUError(f"no value below {lo:g}: CT in HU has air near -1000; convert to HU first", path=path)


class CTVolume:
    """Canonical (RAS+) HU of one CT, read lazily: call :meth:`load` with the box needed, then index.

    Parameters
    ----------
    path : str or Path
        NIfTI file or DICOM series folder.

    Attributes
    ----------
    scan : Scan
        Orientation, spacing and affine (for a partial read its ``raw`` is a zero-size stand-in).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._img = None
        name = self.path.name
        if self.path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")):
            try:
                img = nib.load(str(self.path))  # the header only
                if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)) and len(img.shape) == 3 and min(img.shape) > 1:
                    stand_in = np.broadcast_to(np.zeros((), img.get_data_dtype()), img.shape)
                    self.scan = Scan(path=self.path, raw=stand_in, affine=img.affine.copy(), header=img.header)
                    self._img = img
            except Exception:  # noqa: BLE001 - read_image below gives the proper one-line error
                self._img = None
        if self._img is None:
            self.scan = read_image(self.path)
        self._block: np.ndarray | None = None
        self._origin = np.zeros(3, dtype=int)
        self._scale = (1.0, 0.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.scan.shape

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.scan.spacing_mm

    def load(self, low, high) -> None:
        """Read at least the canonical box ``[low, high)`` (whole slices along the file's slowest axis)."""
        shape = np.array(self.shape)
        low = np.clip(np.asarray(low, dtype=int), 0, shape)
        high = np.clip(np.asarray(high, dtype=int), low, shape)
        if self._img is None:
            raw = self.scan.to_canonical(self.scan.raw)
            self._block, self._origin = raw, np.zeros(3, dtype=int)
            self._scale = (self.scan.slope, self.scan.inter)
            sample = raw[::4, ::4, ::4].astype(np.float32) * np.float32(self.scan.slope) + np.float32(self.scan.inter)
            check_hu(sample, self.path)
            return
        # File axis i holds canonical axis ornt[i, 0], reversed where ornt[i, 1] is -1.
        ornt = nib.orientations.io_orientation(self.scan.affine)
        file_shape = self._img.shape
        slices = [slice(None)] * 3
        axis, flip = int(ornt[2, 0]), ornt[2, 1]
        n = file_shape[2]
        start, stop = (low[axis], high[axis]) if flip > 0 else (n - high[axis], n - low[axis])
        slices[2] = slice(int(start), int(max(stop, start + 1)))
        block, scale = self._gzip_slab(slices[2]) if self.path.name.endswith(".gz") else (None, (1.0, 0.0))
        if block is None:
            try:
                block = np.asanyarray(self._img.dataobj[tuple(slices)])  # scaled by nibabel
            except Exception:  # noqa: BLE001 - a damaged file: read it whole for tumorsyn's error message
                self._img = None
                self.scan = read_image(self.path)
                return self.load(low, high)
        block = self.scan.to_canonical(block)
        origin = np.zeros(3, dtype=int)
        # Canonical index of the block's first slice (a reversed axis maps file index f to n - 1 - f).
        origin[axis] = slices[2].start if flip > 0 else n - slices[2].stop
        self._block, self._origin, self._scale = block, origin, scale
        check_hu(self[tuple(slice(o, o + n) for o, n in zip(origin, block.shape))], self.path)

    def _gzip_slab(self, file_slices: slice):
        """Stored values of file slices ``[start, stop)`` of a .nii.gz (decompressed whole, checksum verified);
        ``(None, None)`` when the stream is too short for them."""
        # The image's header has offset and scaling reset by nibabel; the array proxy keeps the stored ones.
        proxy = self._img.dataobj
        dtype = np.dtype(proxy.dtype)
        nx, ny, nz = self._img.shape
        slice_bytes = nx * ny * dtype.itemsize
        offset = int(proxy.offset)
        needed = offset + file_slices.stop * slice_bytes
        # The whole stream is decompressed so that its gzip checksum is verified: a damaged file is
        # refused (CorruptFileError naming it), never shown to readers. Only the slab is converted.
        data = read_nifti_bytes(self.path)
        if len(data) < needed:
            return None, None
        count = (file_slices.stop - file_slices.start) * nx * ny
        raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset + file_slices.start * slice_bytes)
        scale = (float(proxy.slope), float(proxy.inter))
        return raw.reshape((nx, ny, file_slices.stop - file_slices.start), order="F"), scale

    def __getitem__(self, key) -> np.ndarray:
        """HU (float32) of a canonical box given as a tuple of three slices with explicit bounds."""
        if self._block is None:
            raise RuntimeError("call load() with the box needed first")
        local = []
        for s, o, n in zip(key, self._origin, self._block.shape):
            start, stop = s.start - o, s.stop - o
            if start < 0 or stop > n:
                raise IndexError(f"box {key} lies outside the part of {self.path.name} that was read")
            local.append(slice(start, stop))
        block = self._block[tuple(local)].astype(np.float32)
        slope, inter = self._scale
        if slope != 1.0:
            block *= np.float32(slope)
        if inter != 0.0:
            block += np.float32(inter)
        return block
