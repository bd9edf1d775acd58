"""Realism report files: ``lesions.csv``, ``comparison.csv``, ``report.json``, ``report.md`` and two PNGs.

Everything is rendered in memory first and then written file by file under temporary names that are
renamed into place, so a failure leaves no partial report. The conventions travel with every file
(``#`` comment lines in the CSVs, a ``conventions`` object in the JSON, a section in the Markdown).
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorsyn.metrics.conventions import versions as _versions
from tumorsyn.metrics.realism.descriptors import DEFAULTS, DESCRIPTORS
from tumorsyn.metrics.report import to_jsonable
from tumorsyn.metrics.sizes import size_bin_labels

__all__ = ["REPORT_SCHEMA", "realism_conventions", "build_realism_report", "render_realism_markdown",
           "choose_gallery", "render_outputs", "write_outputs"]

REPORT_SCHEMA = "tumorsyn.realism/1"
ROW_COLUMNS = ["cohort", "source", "case_id", "organ", "lesion_id", "size_class", "described", "centroid_x_vox",
               "centroid_y_vox", "centroid_z_vox", "voxels", *DESCRIPTORS]


def realism_conventions(*, bins_mm: Sequence[float], min_voxels: int, comparison_settings: dict) -> dict:
    """Every choice behind the figures, as a JSON-able dict."""
    return {
        "lesion": "26-connected component of the lesion mask (tumorsyn outputs: the written <id>_tumor mask only)",
        "connectivity": 26,
        "orientation": "arrays in canonical RAS+ (X, Y, Z); all distances in mm from the CT's affine",
        "size_class": "by equivalent-sphere diameter 2*(3V/(4*pi))^(1/3)",
        "size_bins_mm": [float(b) for b in bins_mm],
        "size_class_labels": size_bin_labels(bins_mm),
        "size_bin_rule": "a diameter equal to an inner edge goes to the class above it; with several edges, one "
                         "equal to the last edge stays below (tumorsyn.metrics.sizes)",
        "min_voxels": int(min_voxels),
        "min_voxels_rule": "lesions with fewer voxels are listed (described = False) but neither described nor compared",
        "descriptors": {name: {"group": g, "unit": u, "definition": d} for name, (g, u, d) in DESCRIPTORS.items()},
        "parameters": dict(DEFAULTS),
        "local_work": f"each lesion is measured inside its bounding box plus {DEFAULTS['margin_mm']:g} mm",
        "comparison": comparison_settings,
        "groups": "each organ x size class, each organ with all sizes ('all'), and all organs together when "
                  "there are several",
        "library_note": "shape and texture computed with scikit-image/scipy (pyradiomics does not install on "
                        "Python 3.11 with numpy 2); shape definitions follow pyradiomics' where they overlap",
    }


def build_realism_report(described: dict, comparison: dict, *, conventions: dict, sources: dict,
                         command: str | None = None) -> dict:
    """The content of ``report.json`` (rows without their thumbnails)."""
    def plain(rows):
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]

    counts = {}
    for cohort in ("real", "synthetic"):
        rows = described[cohort]
        counts[cohort] = {"lesions": len(rows), "described": sum(bool(r["described"]) for r in rows),
                          "below_min_voxels": sum(not r["described"] for r in rows),
                          "scans": sum(1 for i in described["inputs"] if i["cohort"] == cohort)}
    return to_jsonable({
        "schema": REPORT_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": {**_versions(), "scikit-learn": _version("scikit-learn")},
        "conventions": conventions,
        "inputs": {"sources": sources, "scans": described["inputs"]},
        "counts": counts,
        "comparison": comparison,
        "lesions": plain(described["real"]) + plain(described["synthetic"]),
    })


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _csv(rows: Sequence[dict], columns: Sequence[str], header_lines: Sequence[str]) -> str:
    buffer = io.StringIO()
    for line in header_lines:
        buffer.write(f"# {line}\n")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def comparison_rows(comparison: dict) -> list[dict]:
    """One row per group and descriptor (the rows of ``comparison.csv``)."""
    rows = []
    for group in comparison["groups"]:
        reader = group["ai_reader"]
        for name, d in group["descriptors"].items():
            in_range = d["in_real_range"] or {}
            rows.append({
                "organ": group["organ"], "size_class": group["size_class"], "descriptor": name,
                "group": DESCRIPTORS[name][0], "unit": DESCRIPTORS[name][1],
                "n_real": d["n_real"], "n_synthetic": d["n_synthetic"],
                "real_median": d["real_median"], "real_q25": (d["real_iqr"] or [None])[0],
                "real_q75": (d["real_iqr"] or [None, None])[1],
                "synthetic_median": d["synthetic_median"], "synthetic_q25": (d["synthetic_iqr"] or [None])[0],
                "synthetic_q75": (d["synthetic_iqr"] or [None, None])[1],
                "real_p5": (d["real_p5_p95"] or [None])[0], "real_p95": (d["real_p5_p95"] or [None, None])[1],
                "in_real_range": in_range.get("value"), "in_real_range_low": (in_range.get("ci95") or [None])[0],
                "in_real_range_high": (in_range.get("ci95") or [None, None])[1],
                "ks_statistic": d["ks_statistic"], "ks_p": d["ks_p"], "auc_single": d["auc_single"],
                "ai_reader_auc": reader["auc"],
            })
    return rows


COMPARISON_COLUMNS = ["organ", "size_class", "descriptor", "group", "unit", "n_real", "n_synthetic", "real_median",
                      "real_q25", "real_q75", "synthetic_median", "synthetic_q25", "synthetic_q75", "real_p5",
                      "real_p95", "in_real_range", "in_real_range_low", "in_real_range_high", "ks_statistic", "ks_p",
                      "auc_single", "ai_reader_auc"]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    magnitude = abs(value)
    if magnitude and (magnitude >= 1e4 or magnitude < 1e-2):
        return f"{value:.{digits}g}"
    return f"{value:.{digits if magnitude < 10 else 1}f}"


def _reader_line(reader: dict) -> str:
    if reader["auc"] is None:
        return f"n/a ({reader['reason']}; n = {reader['n_real']} real, {reader['n_synthetic']} synthetic)"
    low, high = reader["ci95"]
    return (f"**{reader['auc']:.3f}** (95 % CI {low:.3f}-{high:.3f}; n = {reader['n_real']} real, "
            f"{reader['n_synthetic']} synthetic; {reader['folds']}-fold)")


def render_realism_markdown(report: dict) -> str:
    """The human-readable ``report.md``."""
    comp, conv, counts = report["comparison"], report["conventions"], report["counts"]
    lines = ["# tumorsyn realism report", "",
             f"Real: {counts['real']['described']} lesions described in {counts['real']['scans']} scans "
             f"({counts['real']['below_min_voxels']} below {conv['min_voxels']} voxels). Synthetic: "
             f"{counts['synthetic']['described']} lesions in {counts['synthetic']['scans']} scans "
             f"({counts['synthetic']['below_min_voxels']} below the minimum).", "",
             "## AI reader (0.5 = indistinguishable, 1 = always told apart)", "",
             f"Classifier: {comp['settings']['classifier']}; {comp['settings']['cross_validation']}; interval "
             f"{comp['settings']['auc_interval']}; seed {comp['settings']['seed']}. Descriptors used: "
             f"{', '.join(comp['settings']['classifier_features'])} (size descriptors "
             f"{'included' if comp['settings']['include_size'] else 'excluded'}, host descriptors "
             f"{'included' if comp['settings']['include_host'] else 'excluded'}, HU-unit (scanner) descriptors "
             f"{'included' if comp['settings'].get('include_scanner') else 'excluded'}).", "",
             "| organ | size class | AUC | most telling descriptors (standardised coefficient; + = synthetic) |",
             "|---|---|---|---|"]
    for group in comp["groups"]:
        reader = group["ai_reader"]
        top = ", ".join(f"{c['descriptor']} {c['coefficient']:+.2f}" for c in reader["coefficients"][:3]) or "-"
        lines.append(f"| {group['organ']} | {group['size_class']} | {_reader_line(reader)} | {top} |")
    for group in comp["groups"]:
        lines += ["", f"## {group['organ']}, {group['size_class']} ({group['n_real']} real, "
                      f"{group['n_synthetic']} synthetic)", "",
                  "| descriptor | unit | real median [IQR] | synthetic median [IQR] | synthetic in real 5-95 % | KS D (p) | AUC one descriptor |",
                  "|---|---|---|---|---|---|---|"]
        for name, d in group["descriptors"].items():
            def med(key):
                if d[f"{key}_median"] is None:
                    return "n/a"
                q25, q75 = d[f"{key}_iqr"]
                return f"{_fmt(d[f'{key}_median'])} [{_fmt(q25)}, {_fmt(q75)}]"

            rng = d["in_real_range"]
            in_range = "n/a" if not rng else (f"{100 * rng['value']:.0f} % ({100 * rng['ci95'][0]:.0f}-"
                                              f"{100 * rng['ci95'][1]:.0f}) of {rng['n']}")
            ks = "n/a" if d["ks_statistic"] is None else f"{d['ks_statistic']:.2f} ({d['ks_p']:.2g})"
            lines.append(f"| {name} | {DESCRIPTORS[name][1]} | {med('real')} | {med('synthetic')} | {in_range} | {ks} | "
                         f"{_fmt(d['auc_single'])} |")
    lines += ["", "## Descriptor definitions", ""]
    lines += [f"- **{n}** ({v['group']}, {v['unit']}): {v['definition']}" for n, v in conv["descriptors"].items()]
    lines += ["", "## Conventions", ""]
    lines += [f"- **{k}**: {v}" for k, v in conv.items() if k not in ("descriptors", "comparison")]
    lines += [f"- **comparison.{k}**: {v}" for k, v in comp["settings"].items()]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def choose_gallery(rows: Sequence[dict], count: int, *, seed: int) -> list[dict]:
    """Up to ``count`` described lesions with thumbnails, drawn with ``seed``, sorted by size."""
    pool = [r for r in rows if r.get("_thumbnail") is not None]
    if count <= 0 or not pool:
        return []
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return sorted((pool[i] for i in picked), key=lambda r: r["equivalent_diameter_mm"])


def _descriptors_png(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["lesions"]
    groups = sorted({(r["organ"], r["size_class"]) for r in rows if r["described"]})
    names = list(DESCRIPTORS)
    ncol = 5
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        data, positions, colours, ticks = [], [], [], []
        for g, (organ, size) in enumerate(groups):
            for k, (cohort, colour) in enumerate((("real", "#4477aa"), ("synthetic", "#ee6677"))):
                values = [r[name] for r in rows if r["described"] and r["cohort"] == cohort and r["organ"] == organ
                          and r["size_class"] == size and r.get(name) is not None]
                data.append(values if values else [math.nan])
                positions.append(3 * g + k)
                colours.append(colour)
            ticks.append((3 * g + 0.5, f"{organ}\n{size}"))
        parts = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=True,
                           flierprops={"markersize": 2})
        for patch, colour in zip(parts["boxes"], colours):
            patch.set_facecolor(colour)
            patch.set_alpha(0.6)
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=6)
        ax.set_title(f"{name} ({DESCRIPTORS[name][1]})", fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.set_axis_off()
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#4477aa", alpha=0.6),
                        plt.Rectangle((0, 0), 1, 1, color="#ee6677", alpha=0.6)],
               labels=["real", "synthetic"], loc="upper right")
    fig.suptitle("tumorsyn realism: real vs synthetic lesions per organ and size class", fontsize=10)
    # Fixed margins: tight_layout measures every tick label and costs seconds on a 25-panel figure.
    fig.subplots_adjust(left=0.04, right=0.93, bottom=0.05, top=0.93, wspace=0.3, hspace=0.55)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Description": json.dumps(
        to_jsonable({"size_class": report["conventions"]["size_class"], "min_voxels": report["conventions"]["min_voxels"]}))})
    plt.close(fig)
    return buffer.getvalue()


def render_outputs(report: dict, *, gallery_real: Sequence[dict] = (), gallery_synthetic: Sequence[dict] = (),
                   plots: bool = True) -> dict[str, bytes]:
    """File name -> content of every output, rendered in memory (nothing written yet)."""
    conv = report["conventions"]
    header = ["tumorsyn realism: one row per lesion (read with pandas.read_csv(path, comment='#'))",
              "conventions: " + json.dumps(to_jsonable({k: v for k, v in conv.items() if k != "descriptors"}),
                                            allow_nan=False)]
    files: dict[str, bytes] = {}
    if plots:
        try:
            files["descriptors.png"] = _descriptors_png(report)
            if gallery_real or gallery_synthetic:
                from tumorsyn.metrics.realism.gallery import gallery_png

                files["gallery.png"] = gallery_png(gallery_real, gallery_synthetic)
            report["plots"] = sorted(files)
        except ImportError as exc:
            report["plots"] = f"skipped: {exc}; install tumorsyn[plots]"
    files["lesions.csv"] = _csv(report["lesions"], ROW_COLUMNS, header).encode()
    files["comparison.csv"] = _csv(comparison_rows(report["comparison"]), COMPARISON_COLUMNS,
                                   ["tumorsyn realism: one row per organ, size class and descriptor", header[1]]).encode()
    files["report.md"] = render_realism_markdown(report).encode()
    files["report.json"] = (json.dumps(to_jsonable(report), indent=1, allow_nan=False) + "\n").encode()
    return files


def write_outputs(out_dir: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Write rendered files into ``out_dir`` (created) as one set: all renamed into place at the end, or none.

    Raises
    ------
    InputError
        ``out_dir`` is a file or cannot be created or written (one line).
    """
    from tumorsyn.io.writers import atomic_group
    from tumorsyn.metrics.report import make_report_folder

    out = make_report_folder(out_dir)
    with atomic_group() as stage:
        for name, content in files.items():
            stage(out / name).write_bytes(content)
    return [out / name for name in files]
