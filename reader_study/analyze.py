"""Join ratings with the answer key and write report.json, report.md, PNG plots and (optionally) ratings.csv."""
from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from tumorsyn.errors import InputError
from tumorsyn.io.writers import atomic_path
from tumorsyn.metrics.stats import proportion

from reader_study.build import KEY_PATH
from reader_study.stats import (auc_interval, binary_figures, binomial_test, fleiss_kappa, rating_score, roc_auc,
                                roc_curve)
from reader_study.store import ANSWERS, Store

__all__ = ["load_key", "rating_table", "summarize", "analyze_study"]


def load_key(study: str | Path, key: str | Path | None = None) -> dict:
    """The answer key (``STUDY/key/answer_key.json`` unless moved elsewhere)."""
    path = Path(key) if key is not None else Path(study) / KEY_PATH
    if not path.exists():
        raise InputError("answer key not found; give its place with --key if it was moved out of the study",
                         path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the answer key ({exc})", path=path) from None
    if not isinstance(data, dict) or "items" not in data or "design" not in data:
        raise InputError("not a reader-study answer key", path=path)
    return data


def rating_table(ratings: list[dict], key: dict) -> list[dict]:
    """One row per rating with its truth, correctness, score, organ, size bin and reading time."""
    rows = []
    for rating in ratings:
        truth = key["items"].get(rating["item_id"])
        if truth is None:
            raise InputError(f"rated case {rating['item_id']} is not in the answer key; is it this study's key?")
        seconds = rating["client_seconds"] if rating["client_seconds"] is not None else rating["server_seconds"]
        row = {**rating, "organ": truth["organ"], "size_bin": truth["size_bin"],
               "max_diameter_mm": truth["max_diameter_mm"], "seconds": seconds}
        if key["design"] == "single":
            row["truth"] = truth["kind"]
            row["correct"] = rating["answer"] == truth["kind"]
            row["score"] = rating_score(rating["answer"], rating["confidence"])
        else:
            row["truth"] = truth["synthetic_panel"]
            row["correct"] = rating["answer"] == truth["synthetic_panel"]
        rows.append(row)
    return rows


def _times(rows: list[dict]) -> dict:
    seconds = np.array([r["seconds"] for r in rows if r["seconds"] is not None], dtype=float)
    if seconds.size == 0:
        return {"n": 0, "median_s": None, "mean_s": None, "total_min": None}
    return {"n": int(seconds.size), "median_s": round(float(np.median(seconds)), 2),
            "mean_s": round(float(seconds.mean()), 2), "total_min": round(float(seconds.sum()) / 60, 2)}


def summarize(rows: list[dict], design: str) -> dict:
    """Figures of a set of ratings (one reader, a stratum, or all pooled)."""
    if design == "single":
        truth = [r["truth"] == "synthetic" for r in rows]
        said = [r["answer"] == "synthetic" for r in rows]
        figures = binary_figures(truth, said)
        scores = [r["score"] for r in rows]
        auc = roc_auc(truth, scores)
        figures["auc"] = auc
        figures["auc_ci95"] = auc_interval(auc, sum(truth), len(truth) - sum(truth))
    else:
        correct = sum(bool(r["correct"]) for r in rows)
        figures = {"accuracy": proportion(correct, len(rows)), "sensitivity": None, "specificity": None,
                   "binomial_p": binomial_test(correct, len(rows)), "auc": None, "auc_ci95": None}
    figures["n"] = len(rows)
    figures["reading_time"] = _times(rows)
    return figures


def _kappa(rows: list[dict], design: str) -> dict:
    categories = ANSWERS[design]
    per_item: dict[str, list[int]] = defaultdict(lambda: [0] * len(categories))
    for r in rows:
        per_item[r["item_id"]][categories.index(r["answer"])] += 1
    table = np.array(list(per_item.values()), dtype=float).reshape(-1, len(categories))
    used = int((table.sum(axis=1) >= 2).sum()) if table.size else 0
    kappa = fleiss_kappa(table) if table.size else None
    return {"fleiss_kappa": None if kappa is None else round(kappa, 4), "categories": list(categories),
            "items_with_2plus_ratings": used}


def analyze_study(study: str | Path, out: str | Path, *, key: str | Path | None = None,
                  export_csv: bool = False) -> dict:
    """Analyse the ratings of ``study`` and write the report into ``out``.

    Parameters
    ----------
    study : path
        Study folder (with ``ratings.sqlite``).
    out : path
        Report folder (created): ``report.json``, ``report.md``, ``roc.png`` (single design),
        ``accuracy_by_size.png``, and ``ratings.csv`` with ``export_csv``.
    key : path, optional
        Answer key, if it was moved out of the study folder.
    export_csv : bool
        Also write every rating, joined with its truth, as CSV.

    Returns
    -------
    dict
        The report (as in report.json).
    """
    study = Path(study)
    answer_key = load_key(study, key)
    if not (study / "ratings.sqlite").exists():
        raise InputError("no ratings.sqlite: add readers and collect ratings with `tumorsyn reader-study serve` first",
                         path=study)
    store = Store(study)
    try:
        if store.design != answer_key["design"]:
            raise InputError(f"answer key is for the {answer_key['design']} design, the study is {store.design}",
                             path=key or study / KEY_PATH)
        ratings = store.ratings()
        progress = store.all_progress()
    finally:
        store.close()
    if not ratings:
        raise InputError("no ratings yet; nothing to analyse", path=study / "ratings.sqlite")
    design = answer_key["design"]
    rows = rating_table(ratings, answer_key)

    by_reader, by_organ, by_size = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in rows:
        by_reader[r["reader"]].append(r)
        by_organ[r["organ"]].append(r)
        by_size[r["size_bin"]].append(r)
    size_order = [b for b in answer_key.get("size_bins", []) if b in by_size] + sorted(
        set(by_size) - set(answer_key.get("size_bins", [])))
    report = {
        "design": design,
        "positive": "synthetic",
        "items": len(answer_key["items"]),
        "readers": len(by_reader),
        "ratings": len(rows),
        "progress": progress,
        "pooled": summarize(rows, design),
        "per_reader": {name: summarize(rs, design) for name, rs in by_reader.items()},
        "by_organ": {organ: summarize(by_organ[organ], design) for organ in sorted(by_organ)},
        "by_size_bin": {b: summarize(by_size[b], design) for b in size_order},
        "per_reader_by_size_bin": {name: {b: summarize([r for r in rs if r["size_bin"] == b], design)
                                          for b in size_order if any(r["size_bin"] == b for r in rs)}
                                   for name, rs in by_reader.items()},
        "agreement": _kappa(rows, design),
        "conventions": {
            "accuracy": "share of correct answers; Wilson 95 % interval",
            "sensitivity": "synthetic cases called synthetic" if design == "single" else None,
            "specificity": "real cases called real" if design == "single" else None,
            "auc": ("empirical ROC AUC of the 10-step score (answer x confidence 1-5); Hanley-McNeil 95 % interval"
                    if design == "single" else None),
            "binomial_p": "two-sided exact binomial test of accuracy against 0.5",
            "kappa": "Fleiss' kappa of the answers over items rated by at least 2 readers",
            "reading_time": "seconds the case was on screen (client), else since it was first served",
        },
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    plots = _plots(rows, report, design, out, size_order)
    _write_text(out / "report.md", _markdown(report, design, plots))
    if export_csv:
        _write_csv(out / "ratings.csv", rows, design)
    return report


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_csv(path: Path, rows: list[dict], design: str) -> None:
    fields = ["reader", "order", "item_id", "answer", "confidence", "truth", "correct", "organ", "size_bin",
              "max_diameter_mm", "seconds", "client_seconds", "server_seconds", "created"]
    if design == "single":
        fields.insert(6, "score")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["created"])) + "Z"})
    _write_text(path, buffer.getvalue())


def _fmt(p: dict | None) -> str:
    if not p or p.get("value") is None:
        return "n/a"
    low, high = p["ci95"]
    return f"{100 * p['value']:.1f} % ({100 * low:.1f}-{100 * high:.1f}; {p['k']}/{p['n']})"


def _fmt_auc(f: dict) -> str:
    if f.get("auc") is None:
        return "n/a"
    ci = f.get("auc_ci95")
    return f"{f['auc']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def _table(title: str, groups: dict, design: str) -> list[str]:
    lines = [f"## {title}", ""]
    if design == "single":
        lines += ["| | n | accuracy (95 % CI) | sensitivity | specificity | AUC (95 % CI) | binomial p | median s |",
                  "|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| | n | proportion correct (95 % CI) | binomial p | median s |", "|---|---|---|---|---|"]
    for name, f in groups.items():
        median = f["reading_time"]["median_s"]
        median = "n/a" if median is None else f"{median:.1f}"
        if design == "single":
            lines.append(f"| {name} | {f['n']} | {_fmt(f['accuracy'])} | {_fmt(f['sensitivity'])} | "
                         f"{_fmt(f['specificity'])} | {_fmt_auc(f)} | {f['binomial_p']:.3g} | {median} |")
        else:
            lines.append(f"| {name} | {f['n']} | {_fmt(f['accuracy'])} | {f['binomial_p']:.3g} | {median} |")
    return lines + [""]


def _markdown(report: dict, design: str, plots: list[str]) -> str:
    kappa = report["agreement"]["fleiss_kappa"]
    what = ("single cases rated real / synthetic with confidence 1-5" if design == "single"
            else "pairs (one real, one synthetic); the reader picks the synthetic one")
    lines = [
        "# Reader study report", "",
        f"Design: {what}. Positive = synthetic. {report['items']} items, {report['readers']} reader(s), "
        f"{report['ratings']} rating(s).", "",
        "Accuracy 50 % is chance: readers who cannot tell synthetic from real tumours score near it. "
        "Intervals are Wilson 95 % (AUC: Hanley-McNeil); p is the two-sided exact binomial test against 0.5.", "",
    ]
    lines += _table("Pooled", {"all readers": report["pooled"]}, design)
    lines += _table("Per reader", report["per_reader"], design)
    lines += _table("By organ (pooled)", report["by_organ"], design)
    lines += _table("By size bin (pooled, maximum 3D diameter)", report["by_size_bin"], design)
    lines += ["## Agreement between readers", "",
              f"Fleiss' kappa: {'n/a (needs 2+ readers on the same items and both answers used)' if kappa is None else f'{kappa:.3f}'}"
              f" over {report['agreement']['items_with_2plus_ratings']} item(s) rated by at least two readers.", ""]
    lines += ["## Progress", "", "| reader | rated | of |", "|---|---|---|"]
    lines += [f"| {p['reader']} | {p['rated']} | {p['total']} |" for p in report["progress"]]
    lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(lines)


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": "tumorsyn reader-study analyze"})


def _plots(rows: list[dict], report: dict, design: str, out: Path, size_order: list[str]) -> list[str]:
    """roc.png (single design) and accuracy_by_size.png; returns the file names written."""
    written = []
    if design == "single":
        fig = _figure((5.5, 5))
        ax = fig.add_subplot()
        groups = defaultdict(list)
        for r in rows:
            groups[r["reader"]].append(r)
        for name, rs in [*groups.items(), ("pooled", rows)]:
            truth = [r["truth"] == "synthetic" for r in rs]
            fpr, tpr = roc_curve(truth, [r["score"] for r in rs])
            auc = roc_auc(truth, [r["score"] for r in rs])
            label = f"{name} (AUC {auc:.2f})" if auc is not None else f"{name} (AUC n/a)"
            ax.plot(fpr, tpr, marker="o", markersize=3, linewidth=2.5 if name == "pooled" else 1.2,
                    color="black" if name == "pooled" else None, label=label)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
        ax.set_xlabel("1 - specificity (real called synthetic)")
        ax.set_ylabel("sensitivity (synthetic called synthetic)")
        ax.set_title("ROC per reader (score: answer x confidence)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.legend(fontsize=7, loc="lower right")
        _save(fig, out / "roc.png")
        written.append("roc.png")
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    values, lows, highs = [], [], []
    for b in size_order:
        p = report["by_size_bin"][b]["accuracy"]
        values.append(p["value"] or 0.0)
        lows.append((p["value"] or 0.0) - p["ci95"][0] if p["ci95"] else 0.0)
        highs.append(p["ci95"][1] - (p["value"] or 0.0) if p["ci95"] else 0.0)
    x = np.arange(len(size_order))
    ax.bar(x, values, yerr=[lows, highs], capsize=4, color="#6a8caf")
    ax.axhline(0.5, linestyle=":", color="grey", label="chance")
    ax.set_xticks(x, [f"{b}\n(n={report['by_size_bin'][b]['n']})" for b in size_order])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy" if design == "single" else "proportion correct")
    ax.set_title("Accuracy by tumour size (pooled; Wilson 95 %)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "accuracy_by_size.png")
    written.append("accuracy_by_size.png")
    return written
