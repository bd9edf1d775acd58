"""One rule for every command that writes: never write over, into or delete what the run reads.

A command lists, before any work, every file it may write or delete (``outputs``) and everything it
reads (``inputs``: files, or folders read as a whole such as a DICOM series or a model folder), and
calls :func:`check_outputs_spare_inputs`. Two paths are the same file when their resolved paths are
equal or when they share ``(st_dev, st_ino)``, so symlinks and hard links are caught too. Case ids
become file names only through :func:`safe_case_id`, and output names are joined to the output
folder only through :func:`output_path_inside`, so no id can reach outside ``--out``.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterable

from tumorsyn.errors import InputError

__all__ = ["check_outputs_spare_inputs", "check_out_folder", "safe_case_id", "output_path_inside"]

PathLike = str | os.PathLike


def _absolute(path: PathLike) -> Path:
    """The absolute path with ``..`` folded and symlinks followed (missing parts are kept as written)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def safe_case_id(case_id: str, *, path: PathLike | None = None) -> str:
    """Return ``case_id`` if it can be used in a file name, else raise a one-line error.

    An id becomes part of output names such as ``<id>_ct.nii.gz``; it must therefore be one plain
    name: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no control characters, no leading or
    trailing blanks.

    Parameters
    ----------
    case_id : str
    path : path, optional
        The file the id came from (a dataset CSV, dataset.json, a scan), named first in the error.

    Raises
    ------
    InputError
        Naming the id and what is wrong with it.
    """
    text = str(case_id)
    problem = None
    if not text.strip():
        problem = "is empty"
    elif text != text.strip():
        problem = "starts or ends with a blank"
    elif text in (".", ".."):
        problem = "is a folder reference"
    elif "/" in text or "\\" in text or (os.sep in text) or (os.altsep and os.altsep in text):
        problem = "holds a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        problem = "holds a control character"
    if problem:
        raise InputError(f"case id {text!r} {problem}; a case id becomes part of output file names, so it must be "
                         "one plain name (letters, digits, '-', '_', '.')", path=path)
    return text


def output_path_inside(out_dir: PathLike, name: str) -> Path:
    """``out_dir / name``, refused unless it lies inside ``out_dir`` (checked on the written path).

    Raises
    ------
    InputError
        When ``name`` is absolute or climbs out of ``out_dir`` with ``..``.
    """
    base = os.path.normpath(os.path.abspath(os.fspath(out_dir)))
    target = os.path.normpath(os.path.join(base, name))
    if os.path.commonpath([base, target]) != base or target == base:
        raise InputError(f"output name {name!r} would be written outside the output folder {base}", path=target)
    return Path(out_dir) / name


def check_out_folder(out_dir: PathLike, *, option: str = "--out") -> Path:
    """Refuse an output folder path that names an existing file (before any work)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} names an existing file, not an output folder; give a folder path", path=out)
    return out


def check_outputs_spare_inputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike], *,
                               folders: Iterable[PathLike] = (), patterns: Iterable[tuple[PathLike, str]] = (),
                               option: str = "--out") -> None:
    """Refuse a run that would write over, into or delete anything it reads; call it before any work.

    Parameters
    ----------
    outputs : iterable of path
        Every file the run may write, replace or delete (missing ones too). An existing output that
        is a folder is refused as well: it could not be replaced by a file.
    inputs : iterable of path
        Every file the run reads, and folders read as a whole (a DICOM series, a model folder):
        no output may lie inside those.
    folders : iterable of path
        Folders the run may delete or replace whole (temporary folders, checkpoint folders): no
        input may lie inside them.
    patterns : iterable of (folder, glob)
        Files the run may delete or rewrite by name pattern (``(out, "manifest*.jsonl")``): no
        input may match.
    option : str
        The option to name in the advice (``--out``, ``output_dir``).

    Raises
    ------
    InputError
        One line naming the output first and the input it would harm.
    """
    input_paths: dict[Path, Path] = {}
    lexical: dict[Path, Path] = {}  # as written, symlinks not followed: a link inside --out can be deleted
    input_ids: dict[tuple[int, int], Path] = {}
    input_folders: dict[Path, Path] = {}
    for given in inputs:
        if given is None:
            continue
        resolved = _absolute(given)
        input_paths.setdefault(resolved, Path(given))
        lexical.setdefault(Path(os.path.normpath(os.path.abspath(os.fspath(given)))), Path(given))
        identity = _identity(resolved)
        if identity is not None:
            input_ids.setdefault(identity, Path(given))
        if resolved.is_dir():
            input_folders.setdefault(resolved, Path(given))
    advice = f"choose another {option} folder or rename the file"

    def refuse(output: PathLike, how: str, source: Path) -> None:
        raise InputError(f"this output {how} {source} that the run reads; {advice}", path=output)

    for output in outputs:
        resolved = _absolute(output)
        if resolved in input_paths:
            refuse(output, "would overwrite the input", input_paths[resolved])
        identity = _identity(resolved)
        if identity is not None and identity in input_ids:
            refuse(output, "is the same file (a link) as the input", input_ids[identity])
        for parent in resolved.parents:
            if parent in input_folders:
                refuse(output, "would be written inside the input folder", input_folders[parent])
        if os.path.isdir(resolved):
            raise InputError(f"an output name is taken by a folder; move that folder away or choose another {option} "
                             "folder", path=output)
    for folder in folders:
        base = _absolute(folder)
        for resolved, given in input_paths.items():
            if resolved == base or base in resolved.parents:
                raise InputError(f"the run may replace or delete this folder, which holds the input {given}; {advice}",
                                 path=folder)
    for folder, pattern in patterns:
        base = _absolute(folder)
        for resolved, given in [*input_paths.items(), *lexical.items()]:
            if _absolute(resolved.parent) == base and fnmatch.fnmatchcase(resolved.name, pattern):
                raise InputError(f"the run rewrites or deletes files named {pattern} here, and the input {given} is one; "
                                 f"{advice}", path=folder)

