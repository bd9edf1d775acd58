"""Where lesions come from: a tumorsyn output folder, a dataset, or a CSV of CT and lesion-mask rows.

- **tumorsyn output folder** (holds ``manifest.jsonl``): each record's ``<id>_ct.nii.gz`` and
  ``<id>_tumor.nii.gz``; the organ is the record's ``organ``; the organ mask comes from the input
  label map recorded in the manifest (``input.labels``, read with the record's label preset and the
  run's ``--organ-label``), whose existing lesions are kept out of the shell; without it, from the
  written ``<id>_label.nii.gz`` (``--label-map``: 1 organ, 2 tumour).
- **dataset** (``dataset.json``, ``imagesTr/`` + ``labelsTr/``, or a CSV of ``ct,labels`` rows): the
  label map gives the organ and the lesions (``--label-preset``: ``auto`` reads a map with values in
  {0, 1, 2} as decathlon, 1 organ and 2 tumour; ``decathlon``, ``kits``; or ``--organ-label`` and
  ``--lesion-label``); the organ name comes from ``--organ``.
- **lesion CSV**: a header with ``ct`` and ``lesion`` columns, optionally ``organ_mask``, ``organ``
  and ``case_id`` (relative paths are relative to the CSV). With ``organ_mask``, lesions are the
  non-zero voxels of the lesion file (or ``--lesion-label``) and the organ the non-zero voxels of the
  organ mask (or ``--organ-label``); without it, the lesion file is a label map read as a dataset's.

Files are read only through :mod:`tumorsyn.io`.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorsyn.errors import ConfigError, EmptyOrganError, InputError, TumorsynError
from tumorsyn.io.cases import case_id_from_path, require_label_maps
from tumorsyn.io.layouts import discover_cases
from tumorsyn.io.labels import LABEL_PRESETS, ORGANS, label_values, organ_label_values
from tumorsyn.io.scan import check_same_grid, load_labels, load_scan

__all__ = ["LesionSource", "LABEL_PRESET_CHOICES", "find_sources", "load_source", "source_kind"]

LABEL_PRESET_CHOICES = ("auto", *LABEL_PRESETS)


@dataclass(frozen=True)
class LesionSource:
    """One scan's files and how to read its lesions and organ.

    ``*_values`` None means "every non-zero voxel"; ``preset`` "auto" is resolved on reading.
    """

    cohort: str
    origin: str
    case_id: str
    organ: str | None
    ct: Path
    lesion_file: Path
    organ_file: Path
    lesion_values: tuple[int, ...] | None = None
    organ_values: tuple[int, ...] | None = None
    exclude_values: tuple[int, ...] = ()
    preset: str | None = None


def source_kind(path: str | Path) -> str:
    """``'run'``, ``'lesion_csv'`` or ``'dataset'`` (does not check that the files exist)."""
    path = Path(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        return "run"
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot read the CSV ({exc})", path=path) from None
        if "lesion" in [c.strip().lower() for c in header]:
            return "lesion_csv"
    return "dataset"


def _check_organ(organ: str | None, where: Path) -> str:
    if organ is None:
        raise ConfigError(f"{where} does not name the organ; give --organ ({', '.join(ORGANS)})")
    if organ not in ORGANS:
        raise InputError(f"unknown organ {organ!r}; choose one of {', '.join(ORGANS)}", path=where)
    return organ


def _from_run(folder: Path, cohort: str) -> list[LesionSource]:
    records = []
    manifest = folder / "manifest.jsonl"
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed run: that output is not complete
        if not isinstance(record, dict) or "outputs" not in record or "ct" not in record.get("outputs", {}):
            raise InputError(f"line {number} is not a tumorsyn generate record (no outputs.ct)", path=manifest)
        records.append(record)
    if not records:
        raise InputError("manifest holds no finished output", path=manifest)
    try:
        run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    except json.JSONDecodeError:
        run = {}
    sources = []
    for record in records:
        outputs, organ = record["outputs"], _check_organ(record.get("organ"), manifest)
        preset = record.get("label_preset") or run.get("label_preset") or "totalsegmentator"
        input_labels = Path(record.get("input", {}).get("labels") or "")
        if record.get("input", {}).get("labels") and input_labels.is_file():
            organ_file = input_labels
            organ_values = organ_label_values(organ, preset, run.get("organ_labels"))
            lesions = run.get("lesion_labels")
            exclude = tuple(int(v) for v in (lesions if lesions is not None
                                             else LABEL_PRESETS.get(preset, {}).get("lesion", ())))
        elif "label" in outputs:
            organ_file, organ_values, exclude = folder / outputs["label"], (1, 2), ()
        else:
            raise InputError(f"output {record.get('output_id')}: its input label map {input_labels} is gone and no "
                             f"<id>_label.nii.gz was written; re-run generate with --label-map or restore the labels",
                             path=manifest)
        sources.append(LesionSource(cohort=cohort, origin=str(folder), case_id=str(record.get("output_id")),
                                    organ=organ, ct=folder / outputs["ct"], lesion_file=folder / outputs["tumor"],
                                    organ_file=organ_file, organ_values=organ_values, exclude_values=exclude))
    return sources


def _from_lesion_csv(path: Path, cohort: str, organ: str | None, preset: str) -> list[LesionSource]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the CSV ({exc})", path=path) from None
    if not rows:
        raise InputError("the lesion CSV has a header but no rows", path=path)

    def resolve(text: str) -> Path:
        p = Path(text.strip())
        return p if p.is_absolute() else path.parent / p

    sources = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row.get("ct") or not row.get("lesion"):
            raise InputError(f"line {line}: empty ct or lesion", path=path)
        ct, lesion = resolve(row["ct"]), resolve(row["lesion"])
        organ_name = _check_organ(row.get("organ") or organ, path)
        case_id = row.get("case_id") or case_id_from_path(lesion)
        if row.get("organ_mask"):
            sources.append(LesionSource(cohort=cohort, origin=str(path), case_id=case_id, organ=organ_name, ct=ct,
                                        lesion_file=lesion, organ_file=resolve(row["organ_mask"])))
        else:
            sources.append(LesionSource(cohort=cohort, origin=str(path), case_id=case_id, organ=organ_name, ct=ct,
                                        lesion_file=lesion, organ_file=lesion, preset=preset))
    return sources


def find_sources(path: str | Path, *, cohort: str, organ: str | None = None, preset: str = "auto",
                 organ_labels: Sequence[int] | None = None, lesion_labels: Sequence[int] | None = None) -> list[LesionSource]:
    """The scans of one ``--real`` or ``--synthetic`` argument.

    Parameters
    ----------
    path : str or Path
        A tumorsyn output folder, a dataset (folder or ``ct,labels`` CSV) or a lesion CSV.
    cohort : {'real', 'synthetic'}
    organ : str, optional
        Organ of inputs that do not name it (datasets, CSV rows without ``organ``).
    preset : str
        Label preset of dataset label maps (see the module docstring).
    organ_labels, lesion_labels : sequence of int, optional
        Explicit label values; override the preset (not used for tumorsyn output folders).

    Raises
    ------
    InputError, ConfigError
        A missing input, an unknown layout, or a dataset without an organ name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"--{cohort} input not found; give a tumorsyn output folder, a dataset or a CSV", path=path)
    if preset not in LABEL_PRESET_CHOICES:
        raise ConfigError(f"unknown label preset {preset!r}; choose one of {', '.join(LABEL_PRESET_CHOICES)}")
    kind = source_kind(path)
    if kind == "run":
        return _from_run(path, cohort)
    if kind == "lesion_csv":
        sources = _from_lesion_csv(path, cohort, organ, preset)
    else:
        if path.is_file() and path.suffix.lower() != ".csv":
            raise InputError("a single file is not a dataset; give a folder, a ct,labels CSV or a ct,lesion CSV",
                             path=path)
        organ_name = _check_organ(organ, path)
        cases = discover_cases(path)
        require_label_maps(cases, command="tumorsyn realism")
        sources = [LesionSource(cohort=cohort, origin=str(path), case_id=c.case_id, organ=organ_name, ct=c.ct,
                                lesion_file=c.labels, organ_file=c.labels, preset=preset)
                   for c in cases]
    explicit = {}
    if organ_labels is not None:
        explicit["organ_values"] = tuple(int(v) for v in organ_labels)
    if lesion_labels is not None:
        explicit["lesion_values"] = tuple(int(v) for v in lesion_labels)
    return [replace(s, **explicit) for s in sources]


def _resolve_preset(source: LesionSource, values: np.ndarray) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """(organ values, lesion values) of a label map read with a preset."""
    organ_values, lesion_values = source.organ_values, source.lesion_values
    preset = source.preset
    if preset == "auto":
        present = set(np.unique(values).tolist())
        if present <= {0, 1, 2} and (organ_values is None or lesion_values is None):
            preset = "decathlon"
        elif organ_values is None or lesion_values is None:
            raise InputError(f"label values {sorted(present)[:12]} match no preset: give --label-preset or "
                             f"--organ-label and --lesion-label", path=source.lesion_file)
    if organ_values is None:
        organ_values = organ_label_values(source.organ, preset, None)
    if lesion_values is None:
        lesion_values = tuple(LABEL_PRESETS.get(preset, {}).get("lesion", ()))
        if not lesion_values:
            raise ConfigError(f"label preset {preset!r} marks no lesion; give --lesion-label K")
    return organ_values, lesion_values


def _mask(values: np.ndarray, labels: Sequence[int] | None) -> np.ndarray:
    return values != 0 if labels is None else np.isin(values, list(labels))


def load_source(source: LesionSource) -> dict:
    """Read one scan: ``ct_hu``, ``lesions`` (bool), ``organ`` (bool), ``exclude`` (bool), ``spacing_mm``.

    Raises
    ------
    InputError
        One line naming the case and the file: unreadable file, grid mismatch, empty organ.
    """
    from tumorsyn.errors import with_context

    try:
        scan = load_scan(source.ct)
        lesion_scan = load_labels(source.lesion_file)
        check_same_grid(scan, lesion_scan)
        lesion_map = label_values(lesion_scan)
        if source.organ_file == source.lesion_file:
            organ_map = lesion_map
        else:
            organ_scan = load_labels(source.organ_file)
            check_same_grid(scan, organ_scan)
            organ_map = label_values(organ_scan)
        organ_values, lesion_values = source.organ_values, source.lesion_values
        if source.preset is not None:
            organ_values, lesion_values = _resolve_preset(source, lesion_map)
        lesions = _mask(lesion_map, lesion_values)
        organ = _mask(organ_map, organ_values)
        exclude = (np.isin(organ_map, list(source.exclude_values)) if source.exclude_values
                   else np.zeros(organ.shape, dtype=bool))
        if source.organ_file == source.lesion_file:
            organ &= ~lesions  # the organ label of a decathlon map includes its tumours; lesions are added back later
        if not (organ | lesions).any():
            wanted = "any non-zero label" if organ_values is None else f"label(s) {list(organ_values)}"
            raise EmptyOrganError(f"no {source.organ} voxel ({wanted}); check --label-preset or --organ-label",
                                  path=source.organ_file)
    except TumorsynError as exc:
        raise with_context(exc, case_id=source.case_id) from None
    return {"ct_hu": scan.values(), "lesions": lesions, "organ": organ, "exclude": exclude & ~lesions,
            "spacing_mm": scan.spacing_mm}
