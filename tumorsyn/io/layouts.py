"""Dataset layouts: :func:`discover_cases` reads a dataset folder or CSV with the first layout that fits.

:data:`LAYOUTS` holds, in the order they are tried:

``csv``
    A CSV file: a header naming ``ct``, ``labels`` and optionally ``case_id`` (any order, other
    columns ignored), or no header and the columns ct,labels[,case_id] in that order.
``dataset.json``
    A Medical Segmentation Decathlon folder (``training``: image/label pairs).
``imagesTr``
    ``imagesTr/`` + ``labelsTr/`` with matching names (nnU-Net's ``_0000`` channel suffix removed).
``mask folders``
    One folder per case holding its CT and a ``masks/`` (or ``segmentations/``) folder of binary
    per-structure masks, as 3D-IRCADb (``<patient>/ct.nii.gz`` + ``<patient>/masks/liver.nii.gz``,
    ``livertumor01.nii.gz``, ...) and TotalSegmentator (``kidney_left.nii.gz``) write them.
``pairs``
    A folder of ``<id>_ct.nii.gz`` + ``<id>_tumor.nii.gz`` (or ``<id>_mask.nii.gz``) pairs.

A new layout is one function that turns a path into :class:`~tumorsyn.io.cases.Case` records (ids
from :func:`~tumorsyn.io.cases.case_ids`), registered with :func:`register_layout`. Ids are checked
(:func:`~tumorsyn.io.guard.safe_case_id`, no id twice) here, whatever the layout.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from tumorsyn.errors import InputError
from tumorsyn.io.cases import GENERIC_SCAN_NAMES, NIFTI_SUFFIXES, Case, case_id_from_path, case_ids
from tumorsyn.io.guard import safe_case_id
from tumorsyn.io.table import read_table

__all__ = ["LAYOUTS", "Layout", "MASK_FOLDERS", "discover_cases", "register_layout"]

# Sub-folders of a case folder that hold its per-structure masks.
MASK_FOLDERS = ("masks", "segmentations")


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")




@dataclass(frozen=True)
class Layout:
    """A dataset layout: ``detect(path)`` says whether ``path`` has it, ``read(path)`` lists its cases."""

    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], list[Case]]
    description: str  # what the layout looks like, for the "not a dataset" message


LAYOUTS: list[Layout] = []


def register_layout(name: str, detect: Callable[[Path], bool], read: Callable[[Path], list[Case]], *,
                    description: str, before: str | None = None) -> Layout:
    """Add a dataset layout to :data:`LAYOUTS` (the end, or before the layout named ``before``).

    Parameters
    ----------
    name : str
        Short name.
    detect : callable
        ``detect(path) -> bool``: the dataset folder or file has this layout. Cheap: look at names only.
    read : callable
        ``read(path) -> list[Case]``: its cases, ids given or from :func:`case_ids`; raise
        :class:`~tumorsyn.errors.InputError` naming the file on anything missing.
    description : str
        A few words for the message that lists the layouts tumorsyn knows.
    before : str, optional
        Try this layout before the one of that name (for a layout that is a special case of it).
    """
    layout = Layout(name, detect, read, description)
    names = [lay.name for lay in LAYOUTS]
    if name in names:
        raise ValueError(f"dataset layout {name!r} is already registered")
    LAYOUTS.insert(names.index(before) if before in names else len(LAYOUTS), layout)
    return layout


# Columns of a dataset CSV, in the order a header-less file gives them.
_CSV_COLUMNS = ("ct", "labels", "case_id")


def _from_csv(path: Path) -> list[Case]:
    """Cases of a CSV: a header naming ``ct``, ``labels`` and optionally ``case_id`` in any order (other
    columns are ignored), or no header and the columns ct,labels[,case_id] in that order.

    Read as UTF-8 with or without a byte-order mark: Excel saves one, and it must not become part
    of the first column's name.
    """
    rows, _ = read_table(path, _CSV_COLUMNS, required=("ct", "labels"), positional=True,
                         header_advice="give a header with ct,labels[,case_id] (any order) or no header")
    cts, labels, given = [], [], []
    for row in rows:
        if not row["ct"] or not row["labels"]:
            empty = " and ".join(repr(c) for c in ("ct", "labels") if not row[c])
            raise InputError(f"line {row.line}: no value in column {empty}; each row needs ct,labels[,case_id]",
                             path=path)
        ct, lab = Path(row["ct"]), Path(row["labels"])
        cts.append(ct if ct.is_absolute() else (path.parent / ct))
        labels.append(lab if lab.is_absolute() else (path.parent / lab))
        given.append(row.get("case_id") or None)
    return [Case(i, ct, lab) for i, ct, lab in zip(case_ids(cts, given), cts, labels)]


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
    images, labels = [], []
    for entry in entries:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputError(f"training entry {entry!r} lacks 'image' or 'label'", path=path)
        images.append((root / entry["image"]).resolve())
        labels.append((root / entry["label"]).resolve())
    return [Case(i, image, lab) for i, image, lab in zip(case_ids(images), images, labels)]


def _from_folders(root: Path) -> list[Case]:
    images, labels = root / "imagesTr", root / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise InputError("not a dataset: expected dataset.json, imagesTr/ + labelsTr/, or a CSV file", path=root)
    by_id = {case_id_from_path(p): p for p in sorted(labels.iterdir()) if p.name.endswith(NIFTI_SUFFIXES)}
    cases = []
    for image in sorted(images.iterdir()):
        if not _is_nifti(image):
            continue
        case_id = case_id_from_path(image)  # one folder: names cannot repeat, and imagesTr never names a case
        if case_id not in by_id:
            raise InputError(f"no label file for case {case_id} in labelsTr/", path=image)
        cases.append(Case(case_id, image, by_id[case_id]))
    return cases


def _mask_folder(folder: Path) -> Path | None:
    return next((folder / name for name in MASK_FOLDERS if (folder / name).is_dir()), None)


def _case_folders(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and _mask_folder(p)]


def _from_mask_folders(root: Path) -> list[Case]:
    """``<case>/<scan>.nii.gz`` + ``<case>/masks/<structure>.nii.gz`` for every case folder of ``root``."""
    cts, found = [], []
    for folder in _case_folders(root):
        scans = [p for p in sorted(folder.iterdir()) if p.is_file() and _is_nifti(p)]
        if len(scans) > 1:
            generic = [p for p in scans if case_id_from_path(p) in GENERIC_SCAN_NAMES]
            scans = generic if len(generic) == 1 else scans
        if len(scans) != 1:
            what = "no CT file" if not scans else f"{len(scans)} NIfTI files ({', '.join(p.name for p in scans)})"
            raise InputError(f"case folder holds {what} beside its masks; a case folder needs exactly one CT "
                             f"(e.g. ct.nii.gz) and a {'/'.join(MASK_FOLDERS)} folder", path=folder)
        masks = tuple((case_id_from_path(p), p) for p in sorted(_mask_folder(folder).iterdir()) if _is_nifti(p))
        if not masks:
            raise InputError("mask folder holds no .nii/.nii.gz masks", path=_mask_folder(folder))
        cts.append(scans[0])
        found.append(masks)
    return [Case(i, ct, masks=m, label_preset="binary") for i, ct, m in zip(case_ids(cts), cts, found)]


_PAIR = re.compile(r"^(?P<id>.+)_ct(?P<ext>\.nii(\.gz)?)$")


def _pair_cts(root: Path) -> list[Path]:
    return [p for p in sorted(root.iterdir()) if p.is_file() and _PAIR.match(p.name)]


def _from_pairs(root: Path) -> list[Case]:
    """``<id>_ct.nii.gz`` + ``<id>_tumor.nii.gz`` (or ``<id>_mask.nii.gz``) pairs of one folder."""
    cases = []
    for ct in _pair_cts(root):
        m = _PAIR.match(ct.name)
        stem, ext = m["id"], m["ext"]
        mask = next((root / f"{stem}_{name}{ext}" for name in ("tumor", "mask") if (root / f"{stem}_{name}{ext}").exists()),
                    None)
        if mask is None:
            raise InputError(f"{ct.name} has no {stem}_tumor{ext} (or {stem}_mask{ext}) beside it", path=root)
        cases.append(Case(stem, ct, tumor_masks=(mask,)))
    return cases


register_layout("csv", lambda p: p.is_file(), _from_csv, description="a CSV file (ct,labels[,case_id])")
register_layout("dataset.json", lambda p: (p / "dataset.json").is_file(), _from_dataset_json,
                description="dataset.json")
register_layout("imagesTr", lambda p: (p / "imagesTr").is_dir() and (p / "labelsTr").is_dir(), _from_folders,
                description="imagesTr/ + labelsTr/")
register_layout("mask folders", lambda p: bool(_case_folders(p)), _from_mask_folders,
                description="case folders of a CT + masks/")
register_layout("pairs", lambda p: bool(_pair_cts(p)), _from_pairs,
                description="<id>_ct.nii.gz + <id>_tumor.nii.gz pairs")


def discover_cases(source: str | Path, *, label_preset: str | None = None, organ_labels: Sequence[int] | None = None,
                   tumor_labels: Sequence[int] | None = None, name: str = "",
                   layouts: Sequence[str] | None = None) -> list[Case]:
    """Cases of a dataset folder or CSV (the first layout of :data:`LAYOUTS` that fits), sorted by id.

    Parameters
    ----------
    source : str or Path
        Dataset folder or CSV file.
    label_preset : str, optional
        Preset of the dataset's label maps (cases with separate masks stay ``binary``).
    organ_labels, tumor_labels : sequence of int, optional
        Explicit label values, set on every case.
    name : str
        Where the dataset was named (a config key), kept on each case as ``source``.
    layouts : sequence of str, optional
        Names of the layouts to try (default: all of :data:`LAYOUTS`), for a command that reads only some.

    Raises
    ------
    InputError
        Missing source, no layout fits, no case, an unsafe id, or one id twice (naming both files).
    """
    source = Path(source)
    if not source.exists():
        raise InputError("dataset not found", path=source)
    candidates = [lay for lay in LAYOUTS if layouts is None or lay.name in layouts]
    layout = next((lay for lay in candidates if lay.detect(source)), None)
    if layout is None:
        known = [lay.description for lay in candidates]
        expected = f"{', '.join(known[:-1])} or {known[-1]}" if len(known) > 1 else known[0]
        raise InputError(f"not a dataset: expected {expected}", path=source)
    cases = layout.read(source)
    if not cases:
        raise InputError("dataset holds no cases", path=source)
    seen: dict[str, Case] = {}
    for case in cases:
        # An id becomes part of output file names: refuse '../x', 'a/b' and control characters here.
        safe_case_id(case.case_id, path=source)
        if case.case_id in seen:
            raise InputError(f"case id {case.case_id} appears twice ({seen[case.case_id].ct} and {case.ct})",
                             path=source)
        seen[case.case_id] = case
    if label_preset or organ_labels or tumor_labels or name:
        cases = [replace(c, label_preset=label_preset if c.labels is not None and label_preset else c.label_preset,
                         organ_labels=tuple(int(v) for v in organ_labels) if organ_labels else c.organ_labels,
                         tumor_labels=tuple(int(v) for v in tumor_labels) if tumor_labels else c.tumor_labels,
                         source=name or c.source) for c in cases]
    return sorted(cases, key=lambda c: c.case_id)

