"""Files to figures: pair predictions with references by case id, read them, evaluate each case.

Inputs are NIfTI files (``.nii``/``.nii.gz``) in a folder, a single file, or a CSV with the columns
``case_id,path`` (relative paths are relative to the CSV). Case ids come from file names: see
:data:`tumorsyn.metrics.conventions.CASE_ID_RULE`.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tumorsyn.errors import (ConfigError, CorruptFileError, EmptyOrganError, GridMismatchError, InputError,
                             TumorsynError, with_context)
from tumorsyn.io.labels import label_values
from tumorsyn.io.scan import Scan, check_same_grid, load_labels
from tumorsyn.metrics.case import CaseResult, evaluate_case
from tumorsyn.metrics.conventions import CASE_ID_SUFFIXES
from tumorsyn.io.checksums import sha256_file
from tumorsyn.io.cases import case_id_from_path
from tumorsyn.io.names import case_id_of_file, other_role
from tumorsyn.io.table import read_table
from tumorsyn.io.scan import read_image
from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM

__all__ = ["CasePaths", "case_id_from_name", "list_cases", "pair_cases", "sha256_file", "load_case",
           "evaluate_paths", "evaluate_dataset"]

_NIFTI = (".nii.gz", ".nii")
# How far above 1 a probability may be and still count as 1: two float32 steps (2 * 2**-23), the
# rounding a softmax written in float32 can carry; anything larger is not a probability.
PROBABILITY_OVERSHOOT = 2 * float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class CasePaths:
    """The files of one case."""

    case_id: str
    reference: Path
    prediction: Path
    organ_mask: Path | None = None


def case_id_from_name(name: str) -> str:
    """Case id of a file name: extension and trailing ``_0000``/``_pred``/``_seg``/... removed.

    Examples
    --------
    >>> case_id_from_name("liver_7_0000.nii.gz"), case_id_from_name("liver_7_pred.nii")
    ('liver_7', 'liver_7')
    """
    # Keeps at least one character: a file called "_seg.nii.gz" keeps its name as id.
    return case_id_of_file(case_id_from_path(name), [suffix[1:] for suffix in CASE_ID_SUFFIXES])


def _read_csv(path: Path, role: str) -> dict[str, Path]:
    """``case_id,path`` rows (header required, any column order) by the one CSV reader, :mod:`tumorsyn.io.table`."""
    rows, _ = read_table(path, ("case_id", "path"), required=("case_id", "path"),
                         header_advice="it needs a header with the columns case_id,path (any order) and one row per case")
    if not rows:
        raise InputError(f"the {role} CSV has a header but no rows; give one case_id,path row per case", path=path)
    out: dict[str, Path] = {}
    for row in rows:
        case_id, file = row["case_id"], row["path"]
        if not case_id or not file:
            raise InputError(f"line {row.line}: empty case_id or path", path=path)
        if case_id in out:
            raise InputError(f"line {row.line}: case {case_id} is listed twice", path=path)
        target = Path(file)
        out[case_id] = target if target.is_absolute() else path.parent / target
    return out


def list_cases(source: str | Path, *, role: str = "input") -> dict[str, Path]:
    """Map case id -> file for a folder of NIfTI files, one NIfTI file, or a ``case_id,path`` CSV.

    Raises
    ------
    InputError
        Missing source, empty folder, or two files with one case id.
    """
    source = Path(source)
    if not source.exists():
        raise CorruptFileError(f"{role} not found; give a folder of .nii.gz files or a case_id,path CSV", path=source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _read_csv(source, role)
    if source.is_file():
        if not source.name.endswith(_NIFTI):
            raise InputError(f"{role} is neither a folder, a .nii/.nii.gz file nor a .csv", path=source)
        return {case_id_from_name(source.name): source}
    out: dict[str, Path] = {}
    wanted = "organ" if role == "organ mask" else "tumour"
    left_out: list[str] = []
    for file in sorted(source.iterdir()):
        if file.name.startswith(".") or not file.is_file() or not file.name.endswith(_NIFTI):
            continue
        if other_role(case_id_from_path(file.name), wanted):
            left_out.append(file.name)  # segment predict writes <id>_organ beside <id>_tumor
            continue
        case_id = case_id_from_name(file.name)
        if case_id in out:
            raise InputError(f"{out[case_id].name} and {file.name} both give case id {case_id}; rename one "
                             f"or list the files in a case_id,path CSV", path=source)
        out[case_id] = file
    if not out and left_out:
        raise InputError(f"this {role} folder holds only files named for another role ({', '.join(left_out[:3])}"
                         f"{' ...' if len(left_out) > 3 else ''}); give the folder or a case_id,path CSV of the "
                         f"{wanted} masks", path=source)
    if not out:
        raise InputError(f"no .nii/.nii.gz files in this {role} folder", path=source)
    return out


def pair_cases(reference: str | Path, prediction: str | Path, organ_mask: str | Path | None = None) -> list[CasePaths]:
    """Pair reference, prediction (and organ mask) files by case id, sorted by case id.

    Raises
    ------
    InputError
        Naming the first case that lacks a partner file.
    """
    refs = list_cases(reference, role="reference")
    preds = list_cases(prediction, role="prediction")
    organs = list_cases(organ_mask, role="organ mask") if organ_mask is not None else None
    for case_id in sorted(refs):
        if case_id not in preds:
            raise InputError(f"case {case_id}: reference {refs[case_id].name} has no prediction in {prediction} "
                             f"(ids found there: {', '.join(sorted(preds)[:5])}{' ...' if len(preds) > 5 else ''})",
                             path=refs[case_id])
        if organs is not None and case_id not in organs:
            raise InputError(f"case {case_id}: no organ mask in {organ_mask}", path=refs[case_id])
    for case_id in sorted(preds):
        if case_id not in refs:
            raise InputError(f"case {case_id}: prediction {preds[case_id].name} has no reference in {reference}",
                             path=preds[case_id])
    return [CasePaths(c, refs[c], preds[c], organs[c] if organs is not None else None) for c in sorted(refs)]


def _in_case(case_id: str, exc: TumorsynError) -> TumorsynError:
    """The same error, its message prefixed with the case id (the file stays first)."""
    return with_context(exc, case_id=case_id)


def _mask(values: np.ndarray, labels: Sequence[int] | None) -> np.ndarray:
    return values != 0 if labels is None else np.isin(values, list(labels))


def _read_prediction(path: Path) -> tuple[Scan, np.ndarray | None, np.ndarray | None]:
    """(scan, integer labels or None, probability map or None) of a prediction file."""
    # load_labels refuses non-integer values, which a probability map has; reuse its reader instead.
    scan = read_image(path)
    if np.issubdtype(scan.raw.dtype, np.integer) and scan.slope == 1.0 and scan.inter == 0.0:
        return scan, label_values(scan), None
    values = scan.values()
    if not np.isfinite(values).all():
        raise InputError("prediction holds NaN or infinite values", path=path)
    lo, hi = float(values.min()), float(values.max())
    # Floating-point values in [0, 1] are probabilities (an all-zero map too: a scan with no finding).
    # A softmax written as float32 may overshoot 1 by rounding: up to PROBABILITY_OVERSHOOT is taken as 1.
    if lo >= 0.0 and hi <= 1.0 + PROBABILITY_OVERSHOOT:
        return scan, None, np.minimum(values, np.float32(1.0)) if hi > 1.0 else values
    if np.array_equal(values, np.round(values)):
        return scan, np.rint(values).astype(np.int32), None
    # Nine significant digits: ':g' would print 1.0000001 as "1" and hide why the map was refused.
    raise InputError(f"prediction holds non-integer values from {lo:.9g} to {hi:.9g}; give integer labels or a "
                     f"probability map in [0, 1] (at most {1.0 + PROBABILITY_OVERSHOOT:.9g}, float32 rounding)",
                     path=path)


def load_case(paths: CasePaths, *, tumour_labels: Sequence[int] | None = None,
              organ_labels: Sequence[int] | None = None) -> dict:
    """Read one case's files and check that they share a grid.

    Returns
    -------
    dict
        ``reference`` (bool), ``prediction`` (bool), ``probability`` (float32 or None),
        ``organ_mask`` (bool or None), all canonical (X, Y, Z); ``spacing_mm`` of the reference.

    Raises
    ------
    InputError
        One line naming the case and the file: unreadable file, grid mismatch, empty organ mask.
    """
    cid = paths.case_id
    try:
        ref_scan = load_labels(paths.reference)
        pred_scan, pred_labels, probability = _read_prediction(paths.prediction)
        try:
            check_same_grid(ref_scan, pred_scan)
        except GridMismatchError:
            raise GridMismatchError(
                f"prediction grid {pred_scan.shape} (spacing {_fmt_sp(pred_scan.spacing_mm)} mm) does not match "
                f"reference {ref_scan.path.name} grid {ref_scan.shape} (spacing {_fmt_sp(ref_scan.spacing_mm)} mm) "
                f"in shape or affine; resample the prediction onto the reference grid", path=paths.prediction) from None
        organ = None
        if paths.organ_mask is not None:
            organ_scan = load_labels(paths.organ_mask)
            try:
                check_same_grid(ref_scan, organ_scan)
            except GridMismatchError:
                raise GridMismatchError(
                    f"organ mask grid {organ_scan.shape} does not match reference {ref_scan.path.name} grid "
                    f"{ref_scan.shape} in shape or affine; resample the organ mask onto the reference grid",
                    path=paths.organ_mask) from None
            organ = _mask(label_values(organ_scan), organ_labels)
            if not organ.any():
                wanted = "any non-zero label" if organ_labels is None else f"label(s) {list(organ_labels)}"
                raise EmptyOrganError(f"organ mask has no voxel with {wanted}; check --organ-label", path=paths.organ_mask)
    except TumorsynError as exc:
        raise _in_case(cid, exc) from None
    reference = _mask(label_values(ref_scan), tumour_labels)
    prediction = probability >= 0.5 if probability is not None else _mask(pred_labels, tumour_labels)
    return {"reference": reference, "prediction": prediction, "probability": probability,
            "organ_mask": organ, "spacing_mm": ref_scan.spacing_mm}


def _fmt_sp(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def evaluate_paths(paths: CasePaths, *, match: str = "any", min_volume_mm3: float = 0.0,
                   bins_mm: Sequence[float] | None = None, tolerance_mm: float = SURFACE_TOLERANCE_MM,
                   tumour_labels: Sequence[int] | None = None, organ_labels: Sequence[int] | None = None,
                   checksums: bool = True, size_convention: str = "max-diameter",
                   picai_extract: bool = False) -> CaseResult:
    """Read and evaluate one case (see :func:`tumorsyn.metrics.evaluate_case`); records paths and SHA-256."""
    data = load_case(paths, tumour_labels=tumour_labels, organ_labels=organ_labels)
    try:
        result = evaluate_case(data["reference"], data["prediction"], spacing_mm=data["spacing_mm"],
                               case_id=paths.case_id, organ_mask=data["organ_mask"], probability=data["probability"],
                               match=match, min_volume_mm3=min_volume_mm3, bins_mm=bins_mm, tolerance_mm=tolerance_mm,
                               size_convention=size_convention, picai_extract=picai_extract)
    except ValueError as exc:
        if match != "picai":
            raise
        # The picai detection-map checks are about this file: one line naming it, the case first.
        raise _in_case(paths.case_id, InputError(str(exc), path=paths.prediction)) from None
    files = {"reference": paths.reference, "prediction": paths.prediction, "organ_mask": paths.organ_mask}
    result.inputs = {role: None if file is None else {"path": str(file),
                                                      "sha256": sha256_file(file) if checksums else None}
                     for role, file in files.items()}
    return result


def evaluate_dataset(cases: Sequence[CasePaths], *, workers: int = 1,
                     progress: Callable[[Iterable, int], Iterable] | None = None, **options) -> list[CaseResult]:
    """Evaluate every case, in worker processes when ``workers > 1``; results sorted by case id.

    Parameters
    ----------
    cases : sequence of CasePaths
        From :func:`pair_cases`.
    workers : int, optional
        Number of processes (1: in this process).
    progress : callable, optional
        ``progress(iterable, total)`` wrapping the iteration over finished cases (a progress bar).
    **options
        Passed to :func:`evaluate_paths` (match, min_volume_mm3, bins_mm, tolerance_mm, tumour_labels,
        organ_labels, checksums, size_convention, picai_extract).

    Raises
    ------
    TumorsynError
        The first failing case's error; the remaining cases are cancelled.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    wrap = progress or (lambda iterable, total: iterable)
    if workers == 1 or len(cases) < 2:
        results = [evaluate_paths(c, **options) for c in wrap(cases, len(cases))]
    else:
        # spawn: no fork of a parent that may hold threads (BLAS, torch) in an unknown state.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(cases)), mp_context=context) as pool:
            futures = [pool.submit(evaluate_paths, c, **options) for c in cases]
            results = []
            try:
                for future in wrap(as_completed(futures), len(futures)):
                    results.append(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return sorted(results, key=lambda r: r.case_id)

