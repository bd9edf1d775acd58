"""Find the candidate lesions of a study: real ones from CT + mask pairs, synthetic ones from manifests.

A candidate is one 26-connected lesion of a tumour mask, with its centre (canonical voxel index) and
its maximum 3D diameter in mm. Real and synthetic lesions are measured by the same function
(:func:`tumorsyn.lesion_size.max_diameter_mm`), so that their size bins mean the same thing.

Inputs
------
real : CSV or folder
    A CSV with a header holding ``ct`` and ``mask`` columns (optional ``organ`` and ``label``: the
    tumour's value in the mask, default any non-zero value); relative paths are relative to the CSV.
    Or a folder of ``<id>_ct.nii.gz`` + ``<id>_tumor.nii.gz`` (or ``<id>_mask.nii.gz``) pairs.
synthetic : manifest or folder
    ``manifest.jsonl`` written by ``tumorsyn generate`` (or the folder holding it). Each JSON line
    names its CT and tumour mask (``outputs.ct``, ``outputs.tumor``) and the host ``organ``; its
    ``input.labels`` and ``label_preset`` (with ``lesion_labels`` from the run's ``run.json``) say
    where the host's own lesions are, so that a study never shows them (:mod:`reader_study.hosts`).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage

from tumorsyn.errors import GridMismatchError, InputError
from tumorsyn.io.labels import LABEL_PRESETS, label_values
from tumorsyn.io.layouts import discover_cases
from tumorsyn.io.scan import load_labels
from tumorsyn.io.table import read_table
from tumorsyn.lesion_size import CONNECTIVITY_26, max_diameter_mm
from tumorsyn.organs import ORGANS

__all__ = ["Source", "Lesion", "read_real_sources", "read_synthetic_sources", "find_lesions"]

# Other names users give the lesion-mask column (tumorsyn's own outputs say "tumor").
_MASK_ALIASES = {"tumor": "mask", "tumour": "mask"}

KINDS = ("real", "synthetic")


@dataclass(frozen=True)
class Source:
    """One CT + tumour mask pair to take lesions from."""

    kind: str
    organ: str
    ct: Path
    mask: Path
    label: int | None = None  # tumour value in the mask; None = any non-zero value
    origin: str = ""  # where the pair was listed (CSV row, manifest line), for error messages
    # Synthetic cases: the host's label map and the values that mark the host's own lesions there.
    # None: the manifest names no host label map (not checked); (): the preset marks no lesion.
    host_labels: Path | None = None
    host_lesion_labels: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Lesion:
    """One lesion that may become a case."""

    source: Source
    component: int  # 1-based, components ordered by their first voxel in canonical order
    centre_vox: tuple[float, float, float]  # canonical (X, Y, Z) index of the centre of mass
    max_diameter_mm: float
    grid_shape: tuple[int, int, int] = (0, 0, 0)  # the mask's canonical grid, checked against the CT's
    grid_affine: tuple = ()
    spacing_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the source scan's voxel size (canonical X, Y, Z)
    # Boxes ``(low_mm, high_mm)`` (canonical index x spacing, voxel edges) of the host's own lesions.
    host_lesions_mm: tuple = ()

    @property
    def pixel_mm(self) -> float:
        """In-plane voxel size of the source scan (the coarser of X and Y), mm."""
        return max(self.spacing_mm[0], self.spacing_mm[1])

    @property
    def slice_mm(self) -> float:
        """Voxel size of the source scan along the body axis (NIfTI has no separate slice thickness), mm."""
        return self.spacing_mm[2]

    @property
    def sort_key(self) -> tuple:
        return (self.source.kind, self.source.organ, str(self.source.ct), str(self.source.mask), self.component)


def _organ(value: str, where: str, path: Path) -> str:
    organ = (value or "").strip().lower()
    if organ not in ORGANS:
        raise InputError(f"{where}: organ {value!r} is not one of {', '.join(ORGANS)}", path=path)
    return organ


def _read_csv(path: Path, default_organ: str) -> list[Source]:
    # The one CSV reader (UTF-8 with or without a byte-order mark, columns by header name in any order).
    rows, _ = read_table(path, ("ct", "mask", "organ", "label"), required=("ct", "mask"), aliases=_MASK_ALIASES,
                         header_advice="expected a header 'ct,mask[,organ,label]' ('tumor' is accepted for 'mask')")
    if not rows:
        raise InputError("the CSV of real cases has no rows; give a header 'ct,mask[,organ,label]' and one row per case",
                         path=path)
    sources = []
    for row in rows:
        number = row.line
        if not row["ct"] or not row["mask"]:
            raise InputError(f"row {number}: empty 'ct' or 'mask'", path=path)
        label = None
        if row["label"]:
            try:
                label = int(row["label"])
            except ValueError:
                raise InputError(f"row {number}: label {row['label']!r} is not a whole number", path=path) from None
        organ = _organ(row["organ"] or default_organ, f"row {number}", path)
        ct, mask = (path.parent / row["ct"]).resolve(), (path.parent / row["mask"]).resolve()
        for file in (ct, mask):
            if not file.exists():
                raise InputError(f"row {number}: {file} does not exist", path=path)
        sources.append(Source("real", organ, ct, mask, label, f"{path.name} row {number}"))
    return sources


def _read_folder(folder: Path, organ: str) -> list[Source]:
    # tumorsyn's case reader, its "pairs" layout: <id>_ct.nii.gz + <id>_tumor.nii.gz (or <id>_mask.nii.gz).
    cases = discover_cases(folder, layouts=("pairs",))
    return [Source("real", organ, case.ct.resolve(), case.tumor_masks[0].resolve(), None, case.ct.name)
            for case in cases]


def read_real_sources(path: str | Path, *, organ: str = "liver") -> list[Source]:
    """Real CT + tumour-mask pairs from a CSV or a folder (see the module docstring).

    Parameters
    ----------
    path : str or Path
        CSV file or folder.
    organ : str
        Organ of every case of a folder, and of CSV rows without an ``organ`` value.
    """
    path = Path(path)
    organ = _organ(organ, "--real-organ", path)
    if path.is_dir():
        return _read_folder(path, organ)
    if not path.exists():
        raise InputError("real cases not found; give a CSV (ct,mask[,organ,label]) or a folder of _ct/_tumor pairs",
                         path=path)
    return _read_csv(path, organ)


def read_synthetic_sources(path: str | Path) -> list[Source]:
    """Synthetic cases from a ``tumorsyn generate`` manifest (read as JSON lines, not through ``synthesize``).

    Parameters
    ----------
    path : str or Path
        ``manifest.jsonl`` or the output folder that holds it.
    """
    path = Path(path)
    if path.is_dir():
        folder, manifest = path, path / "manifest.jsonl"
        if not manifest.exists():
            shards = sorted(path.glob("manifest.shard-*.jsonl"))
            hint = "; merge the shards first with `tumorsyn generate --merge --out ...`" if shards else ""
            raise InputError(f"no manifest.jsonl in this folder (is it a `tumorsyn generate` output?){hint}", path=path)
    else:
        folder, manifest = path.parent, path
        if not manifest.exists():
            raise InputError("manifest not found; give a `tumorsyn generate` output folder or its manifest.jsonl",
                             path=path)
    sources = []
    run_lesion_labels = _run_lesion_labels(folder)
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the manifest ({exc})", path=manifest) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # a torn last line of a killed `generate`: that output is not finished
            raise InputError(f"line {number} is not JSON; is this a `tumorsyn generate` manifest?", path=manifest) from None
        outputs = record.get("outputs") if isinstance(record, dict) else None
        if not isinstance(outputs, dict) or "ct" not in outputs or "tumor" not in outputs:
            raise InputError(f"line {number} lacks outputs.ct / outputs.tumor; is this a `tumorsyn generate` manifest?",
                             path=manifest)
        organ = _organ(record.get("organ", ""), f"line {number}", manifest)
        ct, mask = (folder / outputs["ct"]).resolve(), (folder / outputs["tumor"]).resolve()
        for file in (ct, mask):
            if not file.exists():
                raise InputError(f"line {number}: output {file.name} is missing from {folder}", path=manifest)
        origin = f"{manifest.name} line {number} ({record.get('output_id', '?')})"
        host_labels, lesion_values = _host_lesion_labels(record, folder, run_lesion_labels, origin, manifest)
        sources.append(Source("synthetic", organ, ct, mask, None, origin, host_labels, lesion_values))
    if not sources:
        raise InputError("the manifest lists no outputs", path=manifest)
    return sources


def _run_lesion_labels(folder: Path) -> tuple[int, ...] | None:
    """``--lesion-label`` values of the run (its run.json), or None when the run gave none."""
    try:
        values = json.loads((folder / "run.json").read_text(encoding="utf-8")).get("lesion_labels")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return tuple(int(v) for v in values) if values else None


def _host_lesion_labels(record: dict, folder: Path, run_lesion_labels, origin: str,
                        manifest: Path) -> tuple[Path | None, tuple[int, ...] | None]:
    """Where the host's own lesions are: its label map and the values marking lesions (see :class:`Source`)."""
    labels = (record.get("input") or {}).get("labels") if isinstance(record.get("input"), dict) else None
    if not labels:
        return None, None
    values = run_lesion_labels if run_lesion_labels is not None else tuple(
        LABEL_PRESETS.get(record.get("label_preset") or "binary", {}).get("lesion", ()))
    if not values:
        return None, ()  # the preset marks no lesion: nothing to keep out of view, nothing to read
    path = Path(labels)
    if not path.is_absolute() and not path.exists():
        path = folder / path  # `generate` records paths as given, relative to where it ran
    if not path.exists():
        raise InputError(f"{origin}: the host's label map {labels} is missing; it is needed to keep the host's own "
                         f"lesions (label {', '.join(map(str, values))}) out of view", path=manifest)
    return path.resolve(), values


@functools.lru_cache(maxsize=4)  # the outputs of one host follow each other in a manifest: read its labels once
def host_lesion_boxes(labels_path: Path, values: tuple[int, ...], shape) -> tuple:
    """Boxes ``(low_mm, high_mm)`` of the 26-connected lesions ``values`` mark in a host label map.

    Coordinates are canonical index x spacing (the frame of :attr:`Lesion.centre_vox` x spacing),
    from the first voxel's low edge to the last voxel's high edge.

    Raises
    ------
    GridMismatchError
        When the label map's grid is not the synthetic case's (``shape``).
    """
    scan = load_labels(labels_path)
    if tuple(scan.shape) != tuple(shape):
        raise GridMismatchError(f"host label map grid {scan.shape} differs from the synthetic case's {tuple(shape)}",
                                path=labels_path)
    lesions = np.isin(label_values(scan), values)
    spacing = np.asarray(scan.spacing_mm, dtype=float)
    labelled, _ = ndimage.label(lesions, structure=CONNECTIVITY_26)
    boxes = []
    for slices in ndimage.find_objects(labelled):
        low = np.array([s.start for s in slices], dtype=float)
        high = np.array([s.stop - 1 for s in slices], dtype=float)
        boxes.append((tuple(float(v) for v in (low - 0.5) * spacing), tuple(float(v) for v in (high + 0.5) * spacing)))
    return tuple(boxes)


def lesions_in_mask(mask: np.ndarray, spacing_mm, *, min_diameter_mm: float = 3.0) -> list[tuple[int, tuple, float]]:
    """26-connected lesions of a boolean mask: ``(component, centre_vox, max_diameter_mm)`` each.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Tumour mask in canonical order.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    min_diameter_mm : float
        Lesions with a smaller maximum 3D diameter (specks, fragments of the annotation) are left out.
    """
    # Work inside the mask's bounding box: a full 512x512xN volume is mostly zeros. The Z range
    # first, so that the other two projections scan only the slices that hold the lesions.
    z = np.flatnonzero(mask.any(axis=(0, 1)))
    if len(z) == 0:
        return []
    slab = mask[:, :, z[0]:z[-1] + 1]
    x, y = np.flatnonzero(slab.any(axis=(1, 2))), np.flatnonzero(slab.any(axis=(0, 2)))
    box = (slice(int(x[0]), int(x[-1]) + 1), slice(int(y[0]), int(y[-1]) + 1), slice(int(z[0]), int(z[-1]) + 1))
    labels, count = ndimage.label(mask[box], structure=CONNECTIVITY_26)
    found = []
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[slices] == index
        diameter = max_diameter_mm(part, spacing_mm)
        if diameter < min_diameter_mm:
            continue
        local = ndimage.center_of_mass(part)
        centre = tuple(float(b.start + s.start + c) for b, s, c in zip(box, slices, local))
        found.append((index, centre, round(float(diameter), 3)))
    return found


def _lesions_of(job: tuple[Source, float]) -> list[Lesion]:
    # Worker: one mask's lesions, with the source's spacing and (synthetic) its host's own lesions.
    source, min_diameter_mm = job
    scan = load_labels(source.mask)
    values = scan.to_canonical(scan.raw)
    mask = values == source.label if source.label is not None else values != 0
    found = lesions_in_mask(mask, scan.spacing_mm, min_diameter_mm=min_diameter_mm)
    if not found:
        what = f"value {source.label}" if source.label is not None else "non-zero voxels"
        raise InputError(f"tumour mask ({source.origin}) holds no lesion of {what} with a diameter of at least "
                         f"{min_diameter_mm:g} mm", path=source.mask)
    affine = tuple(float(v) for v in scan.canonical_affine.ravel())
    spacing = tuple(round(float(v), 6) for v in scan.spacing_mm)
    hosts = host_lesion_boxes(source.host_labels, source.host_lesion_labels, scan.shape) \
        if source.host_labels is not None and source.host_lesion_labels else ()
    return [Lesion(source, c, centre, d, scan.shape, affine, spacing, hosts) for c, centre, d in found]


def find_lesions(sources: Iterable[Source], *, min_diameter_mm: float = 3.0, progress=None,
                 workers: int = 1) -> list[Lesion]:
    """Every lesion of every source's mask, sorted so that input order never changes a study.

    Parameters
    ----------
    sources : iterable of Source
    min_diameter_mm : float
        Smaller components are ignored.
    progress : tqdm, optional
        Advanced by one per mask read.
    workers : int
        Processes reading masks.

    Raises
    ------
    InputError
        A mask that is unreadable or holds no lesion, naming the mask file.
    """
    from reader_study.workers import imap_unordered

    lesions = []
    for found in imap_unordered(_lesions_of, [(s, min_diameter_mm) for s in sources], workers=workers):
        lesions.extend(found)
        if progress is not None:
            progress.update(1)
    return sorted(lesions, key=lambda lesion: lesion.sort_key)
