"""Dataset layouts: decathlon ``dataset.json``, ``imagesTr``/``labelsTr`` pairs, or a CSV of pairs."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tumorsyn.errors import InputError
from tumorsyn.io.guard import safe_case_id

__all__ = ["Case", "case_id_from_path", "discover_cases", "example_case"]

_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Case:
    """One scan to work on: an id, the CT (file or DICOM folder) and its labels."""

    case_id: str
    ct: Path
    labels: Path


def case_id_from_path(path: str | Path) -> str:
    """``imagesTr/liver_007_0000.nii.gz`` -> ``liver_007``; a DICOM folder keeps its name."""
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"_0000$", "", name)


def example_case() -> Case:
    """The bundled TotalSegmentator example (abdominal CT, 3 mm, with its organ labels)."""
    from importlib.resources import files

    data = files("tumorsyn") / "data"
    return Case("example", Path(str(data / "example_ct.nii.gz")), Path(str(data / "example_labels.nii.gz")))


def _from_dataset_json(root: Path) -> list[Case]:
    path = root / "dataset.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read dataset.json ({exc})", path=path) from None
    entries = meta.get("training")
    if not isinstance(entries, list):
        # nnU-Net v2 dataset.json has no file list: fall back to the folder pairs.
        return _from_folders(root)
    cases = []
    for entry in entries:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputError(f"training entry {entry!r} lacks 'image' or 'label'", path=path)
        image = (root / entry["image"]).resolve()
        cases.append(Case(case_id_from_path(image), image, (root / entry["label"]).resolve()))
    return cases


def _from_folders(root: Path) -> list[Case]:
    images, labels = root / "imagesTr", root / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise InputError("not a dataset: expected dataset.json, imagesTr/ + labelsTr/, or a CSV file", path=root)
    by_id = {case_id_from_path(p): p for p in sorted(labels.iterdir()) if p.name.endswith(_SUFFIXES)}
    cases = []
    for image in sorted(images.iterdir()):
        if not image.name.endswith(_SUFFIXES) or image.name.startswith("."):
            continue
        case_id = case_id_from_path(image)
        if case_id not in by_id:
            raise InputError(f"no label file for case {case_id} in labelsTr/", path=image)
        cases.append(Case(case_id, image, by_id[case_id]))
    return cases


# Columns of a dataset CSV, in the order a header-less file gives them.
_CSV_COLUMNS = ("ct", "labels", "case_id")


def _from_csv(path: Path) -> list[Case]:
    """Cases of a CSV: a header naming ``ct``, ``labels`` and optionally ``case_id`` in any order (other
    columns are ignored), or no header and the columns ct,labels[,case_id] in that order.

    Read as UTF-8 with or without a byte-order mark: Excel saves one, and it must not become part
    of the first column's name.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read CSV ({exc.strerror})", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"CSV is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV", path=path) from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise InputError(f"not a readable CSV ({exc})", path=path) from None
    first = next((k for k, row in enumerate(rows) if any(c.strip() for c in row)), None)
    names = [c.strip().lower() for c in rows[first]] if first is not None else []
    if any(name in _CSV_COLUMNS for name in names):
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            raise InputError(f"CSV header names column {repeated[0]!r} twice", path=path)
        missing = [c for c in _CSV_COLUMNS[:2] if c not in names]
        if missing:
            raise InputError(f"CSV header {','.join(names)} lacks the column {' and '.join(map(repr, missing))}; "
                             f"give a header with ct,labels[,case_id] (any order) or no header", path=path)
        index = {c: names.index(c) for c in _CSV_COLUMNS if c in names}
        body = list(enumerate(rows, start=1))[first + 1:]
    else:
        index = {c: k for k, c in enumerate(_CSV_COLUMNS)}  # header-less: positional, as before
        body = list(enumerate(rows, start=1))
    cases = []
    for line, row in body:
        if not row or all(not c.strip() for c in row):
            continue
        cell = {c: row[k].strip() if k < len(row) else "" for c, k in index.items()}
        if not cell["ct"] or not cell["labels"]:
            empty = " and ".join(repr(c) for c in ("ct", "labels") if not cell[c])
            raise InputError(f"line {line}: no value in column {empty}; each row needs ct,labels[,case_id]",
                             path=path)
        ct, labels = Path(cell["ct"]), Path(cell["labels"])
        ct = ct if ct.is_absolute() else (path.parent / ct)
        labels = labels if labels.is_absolute() else (path.parent / labels)
        case_id = cell.get("case_id") or case_id_from_path(ct)
        cases.append(Case(case_id, ct, labels))
    return cases


def discover_cases(source: str | Path) -> list[Case]:
    """Cases of a dataset folder or CSV, sorted by id; duplicate ids are an error."""
    source = Path(source)
    if not source.exists():
        raise InputError("dataset not found", path=source)
    if source.is_file():
        cases = _from_csv(source)
    elif (source / "dataset.json").is_file():
        cases = _from_dataset_json(source)
    else:
        cases = _from_folders(source)
    if not cases:
        raise InputError("dataset holds no cases", path=source)
    seen: dict[str, Case] = {}
    for case in cases:
        # An id becomes part of output file names: refuse '../x', 'a/b' and control characters here.
        safe_case_id(case.case_id, path=source)
        if case.case_id in seen:
            raise InputError(f"case id {case.case_id} appears twice ({seen[case.case_id].ct} and {case.ct})", path=source)
        seen[case.case_id] = case
    return sorted(cases, key=lambda c: c.case_id)
