"""Report files: ``report.json`` (everything), ``report.md`` (tables), ``lesions.csv`` (one row per lesion).

Every file carries the conventions: a ``conventions`` object in JSON, a section in Markdown, and
``#`` comment lines at the top of the CSV (read it with ``pandas.read_csv(path, comment="#")``).
Files are written to a temporary name and renamed, so a failed run leaves no partial report.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tumorsyn.errors import InputError
from tumorsyn.io.writers import atomic_group, atomic_path
from tumorsyn.metrics.case import CaseResult
from tumorsyn.metrics.case_metrics import CASE_METRICS
from tumorsyn.metrics.conventions import describe_conventions

__all__ = ["REPORT_SCHEMA", "build_report", "to_jsonable", "write_text", "write_json", "lesion_rows",
           "write_lesions_csv", "render_markdown", "write_report", "make_report_folder"]

REPORT_SCHEMA = "tumorsyn.evaluate/1"

LESION_COLUMNS = ["case_id", "kind", "lesion_id", "status", "size_bin", "max_diameter_mm", "equivalent_diameter_mm",
                  "volume_mm3", "voxels", "centroid_x_vox", "centroid_y_vox", "centroid_z_vox", "partners",
                  "best_iou", "best_dice", "score"]


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: NaN/inf -> None, numpy scalars -> Python, tuples/Paths -> lists/str."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, slice):
        return [value.start, value.stop]
    return value


def _status(lesion) -> str:
    if lesion.kind == "reference":
        return "detected" if lesion.matched else "missed"
    if not lesion.counted:
        return lesion.ignored or "ignored_small"  # picai: "unassigned_overlap"
    return "true_positive" if lesion.matched else "false_positive"


def lesion_rows(results: Sequence[CaseResult]) -> list[dict]:
    """One dict per reference lesion and per predicted component (the rows of ``lesions.csv``)."""
    rows = []
    for result in results:
        for lesion in [*result.reference, *result.predicted]:
            x, y, z = lesion.centroid_vox
            rows.append({
                "case_id": result.case_id, "kind": lesion.kind, "lesion_id": lesion.lesion_id,
                "status": _status(lesion), "size_bin": lesion.size_bin,
                "max_diameter_mm": round(lesion.max_diameter_mm, 4),
                "equivalent_diameter_mm": round(lesion.equivalent_diameter_mm, 4),
                "volume_mm3": round(lesion.volume_mm3, 4), "voxels": lesion.voxels,
                "centroid_x_vox": round(x, 2), "centroid_y_vox": round(y, 2), "centroid_z_vox": round(z, 2),
                "partners": ";".join(str(p) for p in lesion.partners),
                "best_iou": round(lesion.best_iou, 6), "best_dice": round(lesion.best_dice, 6),
                "score": None if lesion.score is None else round(lesion.score, 6),
            })
    return rows


def build_report(results: Sequence[CaseResult], *, summary: dict, conventions: dict, versions: dict,
                 sources: dict | None = None, command: str | None = None) -> dict:
    """The content of ``report.json``.

    Parameters
    ----------
    results : sequence of CaseResult
    summary : dict
        From :func:`tumorsyn.metrics.summarize`.
    conventions, versions : dict
        From :func:`tumorsyn.metrics.conventions` and :func:`tumorsyn.metrics.versions`.
    sources : dict, optional
        The ``--pred``/``--ref``/``--organ-mask`` arguments.
    command : str, optional
        The command line that produced the report.
    """
    return to_jsonable({
        "schema": REPORT_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": versions,
        "conventions": conventions,
        "inputs": {"sources": sources or {}, "cases": [{"case_id": r.case_id, **r.inputs} for r in results]},
        "summary": summary,
        "cases": [r.summary_row() for r in results],
        "lesions": lesion_rows(results),
    })


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically (temporary name, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, data: dict) -> Path:
    return write_text(path, json.dumps(to_jsonable(data), indent=1, allow_nan=False) + "\n")


def write_lesions_csv(path: str | Path, rows: Sequence[dict], *, conventions: dict) -> Path:
    """``lesions.csv`` with the conventions as leading ``#`` comment lines."""
    buffer = io.StringIO()
    buffer.write("# tumorsyn evaluate: one row per reference lesion and predicted component\n")
    buffer.write("# conventions: " + json.dumps(to_jsonable(conventions), allow_nan=False) + "\n")
    writer = csv.DictWriter(buffer, fieldnames=LESION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return write_text(path, buffer.getvalue())


def _pct(prop: dict | None) -> str:
    if not prop or prop.get("value") is None:
        return "n/a"
    low, high = prop["ci95"]
    return f"{100 * prop['value']:.1f} % ({100 * low:.1f}-{100 * high:.1f})"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict) -> str:
    """The human-readable ``report.md`` of a report dict."""
    s, conv = report["summary"], report["conventions"]
    lines = ["# tumorsyn evaluate report", "",
             f"{s['n_cases']} scans ({s['n_tumour_positive']} with tumour, {s['n_tumour_free']} tumour-free), "
             f"{s['n_lesions']} reference lesions; match `{conv['match']}`, minimum predicted volume "
             f"{conv['min_volume_mm3']:g} mm³, organ-restricted: {'yes' if conv['organ_restricted'] else 'no'}.", "",
             "## Per-lesion sensitivity (Wilson 95 % interval)", "",
             f"| size ({_SIZE_HEADERS.get(conv.get('size_convention', 'max-diameter'), 'size')}) | lesions | "
             f"detected | sensitivity |", "|---|---:|---:|---|"]
    ls = s["lesion_sensitivity"]
    for row in ls["by_size"]:
        lines.append(f"| {row['bin']} | {row['n']} | {row['k']} | {_pct(row)} |")
    lines.append(f"| early (< 20 mm) | {ls['early_lt_20mm']['n']} | {ls['early_lt_20mm']['k']} | {_pct(ls['early_lt_20mm'])} |")
    lines.append(f"| all | {ls['overall']['n']} | {ls['overall']['k']} | {_pct(ls['overall'])} |")
    fp, pt, seg = s["false_positives"], s["patient"], s["segmentation"]
    lines += ["", "## Per patient and false positives", "",
              f"- Sensitivity (≥ 1 lesion found): {_pct(pt['sensitivity'])} of {pt['sensitivity']['n']} tumour-positive scans",
              f"- Specificity (no predicted component in a tumour-free scan): {_pct(pt['specificity'])} of {pt['specificity']['n']} tumour-free scans",
              f"- False positives: {fp['total']} in all, {_num(fp['per_scan'], 2)} per scan "
              f"({_num(fp['per_tumour_free_scan'], 2)} per tumour-free scan)",
              "", "## Segmentation (tumour-positive scans)", ""]
    # Metrics the report holds (one registered after the run, or dropped since, is not printed).
    shown = [m for m in CASE_METRICS.values() if f"{m.name}_per_case" in seg]
    for metric in shown:
        stats = seg[f"{metric.name}_per_case"]
        params = {p: conv.get(f"{metric.name}_{p}", v) for p, v in metric.parameters.items()}
        lines.append("- " + metric.report_line({"mean": _num(stats["mean"]), "median": _num(stats["median"]),
                                                "n": stats["n"]}, params))
    lines.append(f"- Global Dice (pooled voxels): {_num(seg['global_dice'])}")
    froc = s.get("froc")
    lines += ["", "## FROC", ""]
    if froc:
        pts = froc["sensitivity_at_fp_per_scan"]
        lines += ["| FP per scan | " + " | ".join(pts["points"]) + " | mean |",
                  "|---|" + "---:|" * (len(pts["points"]) + 1),
                  "| sensitivity | " + " | ".join(f"{v:.3f}" for v in pts["points"].values()) + f" | {pts['mean']:.3f} |"]
    else:
        lines.append("Not computed: the predictions are binary (an FROC needs probability maps in [0, 1]).")
    lines += _picai_lines(s.get("picai")) + _volume_sweep_lines(s.get("patient_volume_sweep"))
    lines += ["", "## Per case", "",
              "| " + " | ".join(["case", "lesions", "detected", "FP", *(m.column for m in shown)]) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(shown)]
    for c in report["cases"]:
        cells = [c["case_id"], c["n_lesions"], c["n_detected"], c["n_false_positives"],
                 *(_num(c.get(m.name)) for m in shown)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += ["", "## Conventions", ""]
    lines += [f"- {sentence}" for sentence in describe_conventions(conv)]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


# The size column's header per size convention (max-diameter's is the one reports always had).
_SIZE_HEADERS = {"max-diameter": "max 3D diameter", "radius": "equivalent-sphere radius",
                 "diameter": "equivalent-sphere diameter"}


def _picai_lines(picai: dict | None) -> list[str]:
    """The picai_eval figures of a ``--match picai`` report."""
    if not picai:
        return []
    pts = picai["froc"]["sensitivity_at_fp_per_case"]
    return ["", "## picai_eval figures", "",
            f"- AP (lesion level): {_num(picai['AP'], 4)}; AUROC (case level, case score = maximum of the "
            f"detection map): {_num(picai['AUROC'], 4)}; score (AP + AUROC) / 2: {_num(picai['score'], 4)}",
            f"- {picai['num_cases']} cases, {picai['num_lesions']} lesions", "",
            "| FP per case | " + " | ".join(pts["points"]) + " | mean |",
            "|---|" + "---:|" * (len(pts["points"]) + 1),
            "| sensitivity | " + " | ".join(f"{v:.3f}" for v in pts["points"].values()) + f" | {_num(pts['mean'])} |"]


def _volume_sweep_lines(sweep: dict | None) -> list[str]:
    """The patient-level volume-threshold table."""
    if not sweep:
        return []
    lines = ["", "## Patient level by predicted tumour volume", "",
             f"A scan is positive when its predicted tumour volume is >= T. AUC of the volume as a score: "
             f"{_num(sweep['auc'])}.", "", "| T (mm³) | sensitivity | specificity |", "|---:|---|---|"]
    lines += [f"| {p['threshold_mm3']:g} | {_pct(p['sensitivity'])} | {_pct(p['specificity'])} |" for p in sweep["points"]]
    return lines


def write_report(out_dir: str | Path, report: dict, *, plots: bool = True) -> list[Path]:
    """Write ``report.json``, ``report.md``, ``lesions.csv`` and the PNG plots into ``out_dir``, as one set.

    Every file goes to a temporary name first and all are renamed at the end, so a failure (a full
    disk) leaves the previous report, or nothing, never ``lesions.csv`` without ``report.json``.

    Returns
    -------
    list of Path
        The files written. Plots are skipped (and the fact recorded) when matplotlib is missing.

    Raises
    ------
    InputError
        ``out_dir`` cannot be created or written (one line).
    """
    out = make_report_folder(out_dir)
    written: list[Path] = []
    with atomic_group() as stage:
        if plots:
            from tumorsyn.metrics import plots as _plots

            try:
                names = _plots.write_report_plots(out, report, stage=stage)
                report["plots"] = [p.name for p in names]
                written += names
            except ImportError as exc:
                report["plots"] = f"skipped: {exc}; install tumorsyn[plots]"
        for name, write in (("lesions.csv", lambda p: write_lesions_csv(p, report["lesions"],
                                                                        conventions=report["conventions"])),
                            ("report.md", lambda p: write_text(p, render_markdown(report))),
                            ("report.json", lambda p: write_json(p, report))):
            write(stage(out / name))
            written.append(out / name)
    return written


def make_report_folder(out_dir: str | Path) -> Path:
    """Create the report folder; a path that is a file, or a folder that cannot be made, is a one-line error."""
    from tumorsyn.io.guard import check_out_folder

    out = check_out_folder(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the report folder ({exc.strerror or exc})", path=out) from None
    return out
