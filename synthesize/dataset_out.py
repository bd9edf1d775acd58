"""Finishing an enriched dataset (``--out-layout nnunet|decathlon``): the plan of its cases and ``dataset.json``.

A dataset folder is also the run folder: ``run.json``, the manifest(s) and ``dataset_plan.json``
(every output id the whole dataset will hold, all shards together) lie beside ``imagesTr/``.
``dataset.json`` is what makes a folder look like a finished dataset to nnU-Net, so it is written
last and atomically, only when every planned output has its manifest line and its files, and it is
removed before a run changes the dataset. A killed run therefore never leaves a ``dataset.json``
that lists a case whose files are missing or half written.
"""
from __future__ import annotations

import json
from pathlib import Path

import tumorsyn
from tumorsyn.errors import InputError
from tumorsyn.io.dataset_layouts import DatasetLayout, write_dataset_json
from tumorsyn.io.writers import atomic_path
from tumorsyn.organs import LABEL_PRESETS
from synthesize.manifest import merge_manifests, read_records

__all__ = ["PLAN_NAME", "DATASET_JSON", "layout_of_run", "write_plan", "remove_dataset_json", "finish_dataset"]

PLAN_NAME = "dataset_plan.json"
DATASET_JSON = "dataset.json"


def layout_of_run(run_dir: str | Path) -> DatasetLayout | None:
    """The layout a run folder was made with (its ``run.json``), or None for the flat layout or no run."""
    try:
        recorded = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    layout = recorded.get("out_layout") if isinstance(recorded, dict) else None
    return DatasetLayout(**layout) if isinstance(layout, dict) else None


def write_plan(run_dir: Path, output_ids: list[str]) -> None:
    """Record every output id of the dataset (all shards): ``dataset.json`` waits until each one is finished.

    Every shard computes the same plan from the same cases, so concurrent shards write the same
    bytes; a later run over a changed dataset replaces it.
    """
    text = json.dumps({"outputs": sorted(output_ids)}, indent=1) + "\n"
    path = run_dir / PLAN_NAME
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_dataset_json(run_dir: Path) -> None:
    """Before a run changes the dataset: it no longer looks complete until the run has finished."""
    (run_dir / DATASET_JSON).unlink(missing_ok=True)


def _provenance(run: dict, records: list[dict], layout: DatasetLayout) -> dict:
    """What ``dataset.json`` says about how the dataset was made (the manifest holds every spec)."""
    presets = sorted({r.get("label_preset") for r in records if r.get("label_preset")})
    lesion_values = run.get("lesion_labels")
    if lesion_values is None and len(presets) == 1:
        lesion_values = list(LABEL_PRESETS.get(presets[0], {}).get("lesion", ()))
    synthetic = [r for r in records if not r.get("original")]
    return {
        "tool": "tumorsyn", "version": tumorsyn.__version__, "manifest": "manifest.jsonl", "run": "run.json",
        "organ": run.get("organ"), "method": run.get("method"), "size_mm": run.get("size_mm"),
        "count": run.get("count"), "per_scan": run.get("per_scan"), "seed": run.get("seed"),
        "label_preset": presets[0] if len(presets) == 1 else presets,
        "input_lesion_values": lesion_values,  # these input label values are written as the tumour class
        "labels": layout.labels, "synthetic_cases": len(synthetic), "original_cases": len(records) - len(synthetic),
        "output_seeds": {r["output_id"]: r.get("output_seed") for r in sorted(synthetic, key=lambda r: r["output_id"])},
    }


def finish_dataset(run_dir: str | Path) -> tuple[Path | None, str]:
    """Write ``dataset.json`` if every planned output of the dataset in ``run_dir`` is finished.

    Shard manifests, if any, are merged into ``manifest.jsonl`` first (the one manifest the dataset
    names). Nothing is written while an output is missing, or while ``imagesTr/``/``labelsTr/``
    hold a file the plan does not name (nnU-Net would count it as a case).

    Returns
    -------
    (Path or None, str)
        The ``dataset.json`` written (None if not) and, when not, why, in one line.
    """
    run_dir = Path(run_dir)
    layout = layout_of_run(run_dir)
    if layout is None:
        raise InputError("not a dataset run folder (its run.json names no --out-layout)", path=run_dir)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    try:
        planned = json.loads((run_dir / PLAN_NAME).read_text(encoding="utf-8"))["outputs"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None, f"{DATASET_JSON} not written: {PLAN_NAME} is missing or unreadable; run generate again"
    if any(run_dir.glob("manifest.shard-*.jsonl")):
        merge_manifests(run_dir)
    records = {r["output_id"]: r for r in read_records(run_dir / "manifest.jsonl")}
    missing = [i for i in planned if i not in records
               or not all((run_dir / name).exists() for name in records[i].get("outputs", {}).values())]
    if missing:
        listed = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        return None, (f"{DATASET_JSON} not written: {len(missing)} of {len(planned)} outputs are not finished "
                      f"({listed}); run the same command again (every shard, then --merge)")
    wanted = {name for i in planned for role, name in records[i]["outputs"].items() if role in ("ct", "label")}
    stray = sorted(f"{folder}/{p.name}" for folder in ("imagesTr", "labelsTr") if (run_dir / folder).is_dir()
                   for p in (run_dir / folder).iterdir()
                   if p.name.endswith(".nii.gz") and not p.name.startswith(".") and f"{folder}/{p.name}" not in wanted)
    if stray:
        listed = ", ".join(stray[:3]) + (" ..." if len(stray) > 3 else "")
        return None, (f"{DATASET_JSON} not written: {len(stray)} file(s) in the dataset are not outputs of this run "
                      f"({listed}; a case removed from the input?); nnU-Net would train on them: move them away "
                      f"and run again")
    if layout.kind == "decathlon":
        (run_dir / "imagesTs").mkdir(exist_ok=True)  # the MSD layout (and nnU-Net's converter) expects it
    finished = [records[i] for i in sorted(planned)]
    data = layout.dataset_json(sorted(planned), run["organ"], _provenance(run, finished, layout))
    path = run_dir / DATASET_JSON
    write_dataset_json(path, data)
    return path, ""
