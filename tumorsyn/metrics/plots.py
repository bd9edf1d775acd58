"""PNG plots of a report: sensitivity by size bin with Wilson intervals, FROC, and A-vs-B comparison.

matplotlib is optional (extra ``tumorsyn[plots]``) and imported on first use. Figures are drawn on
the Agg canvas directly, without pyplot, so the caller's backend and open figures stay untouched.
Each PNG carries the conventions as JSON in its ``Description`` metadata.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tumorsyn.io.writers import atomic_path

__all__ = ["plot_sensitivity_by_size", "plot_froc", "plot_comparison", "write_report_plots"]


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, conventions: dict) -> Path:
    meta = {"Software": "tumorsyn evaluate", "Description": json.dumps(conventions, default=str)}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=meta)
    return path


def _errors(rows: Sequence[dict]) -> tuple[list[float], list[list[float]]]:
    values, low, high = [], [], []
    for row in rows:
        v = row["value"] if row["value"] is not None else 0.0
        lo, hi = row["ci95"] if row["ci95"] else (v, v)
        values.append(v)
        low.append(v - lo)
        high.append(hi - v)
    return values, [low, high]


def _bars_with_intervals(ax, xs: Sequence[float], rows: Sequence[dict], capsize: float, **bar_kw) -> list[float]:
    """Bars of the sensitivities with Wilson error bars on non-empty bins only; returns the interval tops.

    An empty bin (n = 0) has no sensitivity and no interval: it gets a zero-height bar and no
    error bar (matplotlib would otherwise draw the caps of a zero-length bar at 0).
    """
    values, (low, high) = _errors(rows)
    ax.bar(xs, values, **bar_kw)
    shown = [i for i, row in enumerate(rows) if row["n"]]
    if shown:
        ax.errorbar([xs[i] for i in shown], [values[i] for i in shown], yerr=[[low[i] for i in shown],
                    [high[i] for i in shown]], fmt="none", ecolor="black", capsize=capsize, elinewidth=1)
    return [v + h for v, h in zip(values, high)]


def plot_sensitivity_by_size(summary: dict, path: str | Path, *, conventions: dict, title: str | None = None) -> Path:
    """Bar chart of per-lesion sensitivity per size bin, with Wilson 95 % error bars and counts."""
    rows = summary["lesion_sensitivity"]["by_size"]
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    tops = _bars_with_intervals(ax, xs, rows, 5, color="#4477aa")
    # Counts in dark text just above each interval (or the empty bar), never on the bar itself:
    # inside a bar the text would have to contrast with its colour, and a 0 % bar has no inside.
    for x, row, top in zip(xs, rows, tops):
        ax.annotate(f"{row['k']}/{row['n']}", (x, top + 0.02), ha="center", va="bottom", color="black")
    ax.set_xticks(xs, [r["bin"] for r in rows])
    ax.set_ylim(0, 1.12)
    # The measure the size convention bins (reports without the key predate conventions: max diameter).
    ax.set_xlabel(f"reference lesion size ({conventions.get('size_measure', 'maximum 3D diameter')})")
    ax.set_ylabel("per-lesion sensitivity (95 % Wilson CI)")
    ax.set_title(title or f"Detection by size (match: {conventions.get('match')})")
    fig.tight_layout()
    return _save(fig, Path(path), conventions)


def plot_froc(froc: dict, path: str | Path, *, conventions: dict) -> Path:
    """FROC curve: lesion sensitivity against false positives per scan (log axis)."""
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    fps, sens = froc["fp_per_scan"], froc["sensitivity"]
    ax.step(fps, sens, where="post", color="#aa3377")
    ax.plot(fps, sens, "o", ms=3, color="#aa3377")
    positive = [f for f in fps if f > 0]
    if positive:
        ax.set_xscale("symlog", linthresh=min(positive))
    else:
        ax.set_xlim(-0.05, 1.0)  # no false positive at any threshold: keep a readable axis
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("per-lesion sensitivity")
    ax.set_title(f"FROC (component score = max probability), {froc['n_lesions']} lesions, {froc['n_scans']} scans",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path), conventions)


def plot_comparison(comparison: dict, path: str | Path) -> Path:
    """Side-by-side bars of two models' sensitivity per size bin, with intervals and McNemar p."""
    rows = comparison["by_size"]
    names = comparison["names"]
    fig = _figure((6.5, 4.2))
    ax = fig.add_subplot()
    width = 0.38
    for offset, key, colour in ((-width / 2, "a", "#4477aa"), (width / 2, "b", "#ee6677")):
        _bars_with_intervals(ax, [i + offset for i in range(len(rows))], [r[key] for r in rows], 4, width=width,
                             color=colour, label=names[key])
    for i, row in enumerate(rows):
        p = row["mcnemar"]["exact_p"]  # null where no lesion of the bin is discordant
        ax.annotate("p n/a" if p is None else f"p={p:.3g}", (i, 1.07), ha="center", fontsize=8)
    ax.set_xticks(list(range(len(rows))), [r["bin"] for r in rows])
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("reference lesion size (maximum 3D diameter)")
    ax.set_ylabel("per-lesion sensitivity (95 % Wilson CI)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Detection by size: paired McNemar exact p per bin", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path), comparison["conventions"])


def write_report_plots(out_dir: Path, report: dict, *, stage=None) -> list[Path]:
    """``sensitivity_by_size.png`` and, with probabilities, ``froc.png``; raises ImportError without matplotlib.

    ``stage`` (from :func:`tumorsyn.io.writers.atomic_group`) maps each final path to the temporary
    path to draw into, so that the plots join the report's set; the final paths are returned.
    """
    import matplotlib  # noqa: F401  (a clear ImportError before any work)

    stage = stage or (lambda path: path)
    conv = report["conventions"]
    paths = [out_dir / "sensitivity_by_size.png"]
    plot_sensitivity_by_size(report["summary"], stage(paths[0]), conventions=conv)
    if report["summary"].get("froc"):
        paths.append(out_dir / "froc.png")
        plot_froc(report["summary"]["froc"], stage(paths[1]), conventions=conv)
    return paths
