"""Cases: the one case record of tumorsyn, its one naming rule, config entries and the one mask reader.

A :class:`Case` is one CT with its annotations: a label map (``labels``), or binary masks (an organ
mask and tumour masks), or a folder of per-structure masks (``masks``, by structure name). Every
command reads its cases through here and :mod:`tumorsyn.io.layouts` (``discover_cases``, the dataset
layouts): ``tumorsyn generate --dataset``, the ``dataset`` and ``cases`` of the segment and
train-diffusion configs, the reader study's real cases, ``tumorsyn realism``.

Case ids
--------
See :func:`case_ids`: the file name (extension and ``_0000`` removed), unless that does not tell the
case apart: a scan named just ``ct``/``image``/``img``/``scan``, or a name that repeats among the
dataset's scans, is named by its folder (the nearest folders that differ). A CSV's ``case_id`` column
and a config entry's ``id`` always win. Every id of a dataset is checked by
:func:`tumorsyn.io.guard.safe_case_id` when it is read.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from tumorsyn.errors import EmptyOrganError, InputError

__all__ = ["Case", "GENERIC_SCAN_NAMES", "NIFTI_SUFFIXES", "case_id_from_path", "case_ids", "cases_from_entries",
           "example_case", "read_case_masks", "require_label_maps", "structure_masks"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
# File names that say "a scan" and nothing about which: such a file is named by its folder.
GENERIC_SCAN_NAMES = ("ct", "image", "img", "scan")
# Folders of a layout, never a case's name (imagesTr/ct.nii.gz is case "ct").
_LAYOUT_FOLDERS = ("imagesTr", "imagesTs", "labelsTr", "labelsTs")


@dataclass(frozen=True)
class Case:
    """One CT and its annotations.

    Parameters
    ----------
    case_id : str
        The case's name; it becomes part of output file names.
    ct : Path
        CT file (NIfTI) or DICOM series folder.
    labels : Path, optional
        One label map (values per ``label_preset``).
    organ_mask : Path, optional
        A binary organ mask (non-zero = organ), instead of ``labels``.
    tumor_masks : tuple of Path
        Binary tumour masks (non-zero = tumour); with ``labels`` they replace the map's lesion values.
    masks : tuple of (str, Path)
        Per-structure binary masks by name (a mask folder); the organ's and its tumours' are found by
        name (see :func:`read_case_masks`).
    label_preset : str, optional
        How ``labels`` values map to organs and lesions (a key of ``LABEL_PRESETS``).
    organ_labels, tumor_labels : tuple of int, optional
        Explicit label values of the organ / of tumours (override the preset).
    source : str
        Where the case was listed (a config source such as ``data.healthy``), for messages.
    """

    case_id: str
    ct: Path
    labels: Path | None = None
    organ_mask: Path | None = None
    tumor_masks: tuple[Path, ...] = ()
    masks: tuple[tuple[str, Path], ...] = ()
    label_preset: str | None = None
    organ_labels: tuple[int, ...] | None = None
    tumor_labels: tuple[int, ...] | None = None
    source: str = field(default="", compare=False)

    @property
    def files(self) -> list[Path]:
        """Every file (or DICOM folder) the case reads: CT, label map and masks."""
        return [p for p in (self.ct, self.labels, self.organ_mask, *self.tumor_masks, *(p for _, p in self.masks))
                if p is not None]


# ---------------------------------------------------------------- ids

def case_id_from_path(path: str | Path) -> str:
    """``imagesTr/liver_007_0000.nii.gz`` -> ``liver_007``; a DICOM folder keeps its name.

    The name of one file alone; :func:`case_ids` names the cases of a dataset.
    """
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"_0000$", "", name)


def _folders(path: Path) -> list[str]:
    """Names of the folders above ``path``, nearest first; none for a file of a layout folder (``imagesTr``)."""
    if path.parent.name in _LAYOUT_FOLDERS:
        return []  # nnU-Net and the Decathlon name cases by file name alone
    return [p.name for p in path.parents if p.name]


def case_ids(paths: Sequence[str | Path], given: Sequence[str | None] | None = None) -> list[str]:
    """The ids of cases whose scans are ``paths``: the one naming rule of tumorsyn.

    A scan's id is its file name without extension and nnU-Net's ``_0000`` (``liver_7_0000.nii.gz``
    -> ``liver_7``). Where that does not tell the case apart, folders name it:

    - a scan named just ``ct``, ``image``, ``img`` or ``scan`` is named by its folder
      (3D-IRCADb's ``3Dircadb1.7/ct.nii.gz`` -> ``3Dircadb1.7``);
    - scans whose ids repeat are named by their nearest folders that differ, joined by ``_``
      (``a/liver.nii.gz``, ``b/liver.nii.gz`` -> ``a``, ``b``; ``a/x/ct.nii.gz``, ``b/x/ct.nii.gz``
      -> ``a_x``, ``b_x``).

    Layout folders (``imagesTr`` ...) never name a case. Ids that stay equal (the same file twice)
    are returned as they are: the caller refuses them. ``given`` ids (a CSV's ``case_id``, a config
    entry's ``id``) win where not empty; the rule names the other scans among themselves.

    Examples
    --------
    >>> case_ids(["d/liver_7_0000.nii.gz", "p1/ct.nii.gz", "p2/ct.nii.gz"])
    ['liver_7', 'p1', 'p2']
    """
    if given is not None:
        unnamed = [k for k, g in enumerate(given) if not g]
        derived = dict(zip(unnamed, case_ids([paths[k] for k in unnamed])))
        return [str(g) if g else derived[k] for k, g in enumerate(given)]
    paths = [Path(p) for p in paths]
    ids = []
    for p in paths:
        own, above = case_id_from_path(p), _folders(p)
        ids.append(above[0] if own in GENERIC_SCAN_NAMES and above else own)
    counts = Counter(ids)
    groups: dict[str, list[int]] = {}
    for k, i in enumerate(ids):
        if counts[i] > 1:
            groups.setdefault(i, []).append(k)
    for members in groups.values():
        depth_max = max(len(_folders(paths[k])) for k in members)
        for depth in range(1, depth_max + 1):
            names = ["_".join(reversed(_folders(paths[k])[:depth])) for k in members]
            if all(names) and len(set(names)) == len(names):
                for k, name in zip(members, names):
                    ids[k] = name
                break
    return ids


def example_case() -> Case:
    """The bundled TotalSegmentator example (abdominal CT, 3 mm, with its organ labels)."""
    from importlib.resources import files

    data = files("tumorsyn") / "data"
    return Case("example", Path(str(data / "example_ct.nii.gz")), Path(str(data / "example_labels.nii.gz")))


def require_label_maps(cases: Iterable[Case], *, command: str) -> None:
    """Refuse cases without one label map (mask folders, mask pairs) for a command that reads label maps."""
    for case in cases:
        if case.labels is None:
            raise InputError(f"case {case.case_id} has separate masks, not one label map; {command} reads a label "
                             f"map per scan: give a dataset with labels (a ct,labels CSV, dataset.json or "
                             f"imagesTr/ + labelsTr/)", path=case.organ_mask or case.ct)


# ---------------------------------------------------------------- config entries

def _ints(values) -> tuple[int, ...] | None:
    return tuple(int(v) for v in values) if values else None


def cases_from_entries(entries: Sequence[Mapping], *, source: str = "", label_preset: str | None = None,
                       organ_labels: Sequence[int] | None = None, tumor_labels: Sequence[int] | None = None,
                       organ_mask_key: str | None = "organ") -> list[Case]:
    """Cases of config entries ``{ct, labels}`` or ``{ct, organ, tumor: [...]}`` (optional ``id``, ``label_preset``,
    ``organ_labels``, ``tumor_labels``), named by :func:`case_ids` where they give no ``id``.

    Parameters
    ----------
    entries : sequence of mapping
        Paths already resolved. ``tumor`` is one path or a list.
    source : str
        The config key they come from (``data.healthy``), kept on each case for messages.
    label_preset : str, optional
        Preset of entries with ``labels`` and no ``label_preset`` of their own (default ``binary``);
        entries with masks only are ``binary``.
    organ_labels, tumor_labels : sequence of int, optional
        Defaults for entries that give none.
    organ_mask_key : str or None
        The key naming an organ-mask file (``organ`` in segment configs; None where ``organ`` names
        the organ, as in train-diffusion sources).
    """
    cts = [Path(e["ct"]) for e in entries]
    ids = case_ids(cts, [e.get("id") for e in entries])
    cases = []
    for case_id, ct, e in zip(ids, cts, entries):
        tumors = e.get("tumor") or []
        tumors = [tumors] if isinstance(tumors, (str, Path)) else tumors
        organ_mask = e.get(organ_mask_key) if organ_mask_key else None
        preset = e.get("label_preset") or ((label_preset or "binary") if e.get("labels") else "binary")
        cases.append(Case(case_id, ct, labels=Path(e["labels"]) if e.get("labels") else None,
                          organ_mask=Path(organ_mask) if organ_mask else None, tumor_masks=tuple(Path(t) for t in tumors),
                          label_preset=preset, organ_labels=_ints(e.get("organ_labels")) or _ints(organ_labels),
                          tumor_labels=_ints(e.get("tumor_labels")) or _ints(tumor_labels), source=source))
    return cases


# ---------------------------------------------------------------- masks

def _structure(name: str) -> str:
    """``kidney_left`` / ``leftkidney`` / ``Kidney-Right`` -> ``kidney``: the structure a mask's name means."""
    text = re.sub(r"[_\-\s]", "", name.lower())
    for side in ("left", "right"):
        if text.startswith(side) and len(text) > len(side):
            return text[len(side):]
        if text.endswith(side) and len(text) > len(side):
            return text[: -len(side)]
    return text


def structure_masks(case: Case, organ: str) -> tuple[list[Path], list[Path]]:
    """(organ mask files, tumour mask files) of a mask-folder case, found by name.

    The organ's masks are named after it, optionally with a side (``liver``, ``leftkidney``,
    ``kidney_right``, ``kidneys``); its tumours' names start with the organ and hold ``tumor``,
    ``tumour`` or ``lesion`` (``livertumor01``, ``livertumors``, ``kidney_tumor``). A bare ``tumor``
    mask names no organ (3D-IRCADb patient 7's lies outside the liver) and is not taken.
    """
    organ_files, tumor_files = [], []
    for name, path in case.masks:
        text = re.sub(r"[_\-\s]", "", name.lower())
        if _structure(name) in (organ, organ + "s"):
            organ_files.append(path)
        elif text.startswith(organ) and any(w in text for w in ("tumor", "tumour", "lesion")):
            tumor_files.append(path)
    return organ_files, tumor_files


def _union(scan, paths: Iterable[Path]) -> np.ndarray:
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.scan import check_same_grid, load_labels

    mask = np.zeros(scan.shape, dtype=bool)
    for path in paths:
        part = load_labels(path)
        check_same_grid(scan, part)
        mask |= label_values(part) != 0
    return mask


def read_case_masks(case: Case, organ: str, *, scan=None, lesions: bool = True):
    """(scan, organ mask, tumour mask) of a case: canonical (X, Y, Z) bool, checked to share the CT's grid.

    The organ comes from the label map (``label_preset``, ``organ_labels``), the organ mask file, or
    the mask folder's masks named after ``organ``. Tumours are the union of ``tumor_masks`` when
    given, else the label map's lesion values (``tumor_labels`` or the preset's), else the mask
    folder's tumour masks of ``organ`` (see :func:`structure_masks`).

    Parameters
    ----------
    case : Case
    organ : str
        The host organ.
    scan : Scan, optional
        The case's CT, when already read.
    lesions : bool
        False: return an empty tumour mask without reading tumour files (healthy tissue only).

    Raises
    ------
    EmptyOrganError
        No organ voxel (naming the label map or mask).
    GridMismatchError, InputError
        A mask on another grid than the CT, an unreadable file, a mask folder without the organ.
    """
    from tumorsyn.io.labels import label_values, lesion_mask_from_labels, organ_mask_from_labels
    from tumorsyn.io.scan import check_same_grid, load_labels, load_scan

    scan = scan if scan is not None else load_scan(case.ct)
    values = None
    if case.labels is not None:
        labels_scan = load_labels(case.labels)
        check_same_grid(scan, labels_scan)
        values = label_values(labels_scan)
        organ_mask = organ_mask_from_labels(values, organ, preset=case.label_preset, organ_labels=case.organ_labels,
                                            path=case.labels)
        tumor_files: list[Path] = list(case.tumor_masks)
    elif case.organ_mask is not None:
        organ_mask = _union(scan, [case.organ_mask])
        if not organ_mask.any():
            raise EmptyOrganError("organ mask is empty (no non-zero voxel)", path=case.organ_mask)
        tumor_files = list(case.tumor_masks)
    elif case.masks:
        organ_files, found = structure_masks(case, organ)
        folder = case.masks[0][1].parent
        if not organ_files:
            raise InputError(f"no {organ} mask among {', '.join(n for n, _ in case.masks)}; name it {organ}.nii.gz "
                             f"(or left{organ}/{organ}_left ...)", path=folder)
        organ_mask = _union(scan, organ_files)
        if not organ_mask.any():
            raise EmptyOrganError(f"the {organ} masks ({', '.join(p.name for p in organ_files)}) are empty", path=folder)
        tumor_files = list(case.tumor_masks) or found
    else:
        raise InputError(f"case {case.case_id} names no label map and no organ mask", path=case.ct)
    if not lesions:
        tumor = np.zeros(organ_mask.shape, dtype=bool)
    elif tumor_files or values is None:
        tumor = _union(scan, tumor_files)
    else:
        tumor = lesion_mask_from_labels(values, preset=case.label_preset, lesion_labels=case.tumor_labels)
    return scan, organ_mask, tumor
