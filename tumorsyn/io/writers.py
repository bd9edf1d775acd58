"""Writing outputs that keep the input's header, orientation and untouched bytes.

Every file is written to a temporary name in the target folder and renamed into place, so a killed
process never leaves a partial file under the final name.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.volumeutils import array_to_file

from tumorsyn.errors import InputError

__all__ = ["atomic_path", "atomic_folder", "atomic_group", "remove_path", "remove_stale_temp_files", "stored_like",
           "write_ct_like", "write_mask_like", "write_raw_nifti"]

TMP_PREFIX = ".tumorsyn-tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_beside(final: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".part", dir=final.parent)
    except OSError as exc:
        raise InputError(f"cannot write in this folder ({exc.strerror})", path=final.parent) from None
    os.close(fd)
    return Path(tmp)


def _move_into_place(tmp: Path, final: Path) -> None:
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        os.replace(tmp, final)
    except OSError as exc:
        # e.g. a folder holds the output's name: one line, not a traceback
        raise InputError(f"cannot write output ({exc.strerror or exc})", path=final) from None


@contextmanager
def atomic_path(final: str | Path):
    """Yield a temporary path beside ``final``; rename it to ``final`` only if the block succeeds."""
    final = Path(final)
    tmp = _temp_beside(final)
    try:
        yield tmp
        _move_into_place(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_path(path: str | Path) -> None:
    """Delete an output: a file, or a folder (a DICOM series) with everything in it; missing is fine."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_folder(final: str | Path):
    """Yield an empty temporary folder beside ``final``; it becomes ``final`` only if the block succeeds.

    A folder output (a DICOM series) is written whole into the temporary folder and renamed at the
    end, so a killed process never leaves a partial series under the final name. An older ``final``
    (left by a run killed before its manifest line) is replaced.
    """
    final = Path(final)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".part", dir=final.parent))
    except OSError as exc:
        raise InputError(f"cannot write in this folder ({exc.strerror})", path=final.parent) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; outputs get the usual permissions
        old = None
        if final.is_dir() and not final.is_symlink():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".part", dir=final.parent))
            os.replace(final, old / "old")
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise InputError(f"cannot write output ({exc.strerror or exc})", path=final) from None
        if old is not None:
            remove_path(old)
    except BaseException:
        remove_path(tmp)
        raise


@contextmanager
def atomic_group():
    """Write several files as one set: all renamed into place at the end, or none (and no temporaries left).

    Yields a function ``stage(final) -> temporary path``; write each file to the path it returns.
    A failing write (a full disk) leaves the previous files, if any, untouched. An ``OSError`` in
    the block becomes a one-line :class:`InputError` naming the folder.
    """
    staged: list[tuple[Path, Path]] = []

    def stage(final: str | Path) -> Path:
        final = Path(final)
        staged.append((_temp_beside(final), final))
        return staged[-1][0]

    try:
        try:
            yield stage
        except OSError as exc:
            where = staged[-1][1] if staged else None
            raise InputError(f"cannot write output ({exc.strerror or exc})", path=where) from None
        for tmp, final in staged:
            _move_into_place(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` still runs: it exists and is not a zombie.

    A worker killed with its run (kill -9 of the process group) stays a zombie until someone reaps
    it; in a container whose init does not reap, that can last. ``os.kill(pid, 0)`` succeeds on a
    zombie, so the state is read from ``/proc`` where there is one.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            # "pid (comm) state ...": the state follows the last ')' (comm may hold spaces or parentheses).
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files left by killed tumorsyn processes (their pid is gone); return the count."""
    removed = 0
    for path in Path(folder).glob(f"{TMP_PREFIX}*.part"):
        pid = path.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _process_running(int(pid)):
            continue  # still running (another shard or worker): not ours to delete
        remove_path(path)  # a file, or a half-written DICOM series folder
        removed += 1
    return removed


def write_raw_nifti(path: str | Path, raw: np.ndarray, header) -> None:
    """Write stored values ``raw`` under ``header`` exactly (no rescaling), atomically.

    The header bytes are the given header's; ``.gz`` output uses a zero timestamp so that the same
    data gives the same file bytes.
    """
    path = Path(path)
    header = header.copy()
    if not isinstance(header, (nib.Nifti1Header, nib.Nifti2Header)) or header["magic"] not in (b"n+1", b"n+2"):
        header = nib.Nifti1Header.from_header(header)
    if tuple(header.get_data_shape()) != tuple(raw.shape):
        header.set_data_shape(raw.shape)
    min_offset = header.single_vox_offset + header.extensions.get_sizeondisk()
    if header.get_data_offset() < min_offset:
        header.set_data_offset(min_offset)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as raw_fh:
                fh = gzip.GzipFile(filename="", mode="wb", fileobj=raw_fh, mtime=0, compresslevel=1) if path.name.endswith(".gz") else raw_fh
                try:
                    header.write_to(fh)
                    array_to_file(raw, fh, header.get_data_dtype(), offset=header.get_data_offset(), order="F")
                finally:
                    if fh is not raw_fh:
                        fh.close()
                raw_fh.flush()
                os.fsync(raw_fh.fileno())
        except OSError as exc:
            raise InputError(f"cannot write output ({exc.strerror or exc})", path=path) from None


def write_ct_like(path: str | Path, scan, values_canonical: np.ndarray, changed_canonical: np.ndarray) -> None:
    """Write a CT that equals ``scan`` byte for byte except where ``changed_canonical`` is True.

    Parameters
    ----------
    path : str or Path
        Output file (``.nii.gz`` or ``.nii``).
    scan : Scan
        The input scan; its header, dtype, scaling and orientation are kept.
    values_canonical : ndarray of float, shape (X, Y, Z)
        New HU values in canonical order (only the changed voxels are read).
    changed_canonical : ndarray of bool, shape (X, Y, Z)
        Voxels to re-encode.
    """
    write_raw_nifti(path, stored_like(scan, values_canonical, changed_canonical), scan.header)


def stored_like(scan, values_canonical: np.ndarray, changed_canonical: np.ndarray, *, encode=None) -> np.ndarray:
    """``scan``'s stored values (file order and dtype) with the changed voxels re-encoded from ``values_canonical``.

    ``encode`` maps physical values to stored ones (default ``scan.encode``: the dtype's range);
    the DICOM writer passes its own, which clips to the series' Bits Stored.
    """
    raw = scan.raw.copy()
    changed = scan.from_canonical(changed_canonical)
    raw[changed] = (encode or scan.encode)(scan.from_canonical(values_canonical)[changed])
    return raw


def write_mask_like(path: str | Path, scan, mask_canonical: np.ndarray) -> None:
    """Write a uint8 mask on ``scan``'s grid, in its orientation, with its affine."""
    data = np.ascontiguousarray(scan.from_canonical(np.asarray(mask_canonical).astype(np.uint8)))
    header = nib.Nifti1Header.from_header(scan.header) if not isinstance(scan.header, nib.Nifti2Header) else scan.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 0
    header.set_qform(scan.affine, code=int(scan.header["qform_code"]) or 1)
    header.set_sform(scan.affine, code=int(scan.header["sform_code"]) or 1)
    write_raw_nifti(path, data, header)
