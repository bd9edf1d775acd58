"""Join ratings with the answer key and write report.json, report.md, PNG plots and (optionally) ratings.csv.

Definitions (report.md states them in words):

* A **judged** answer is "real"/"synthetic" (single design) or "a"/"b" (2AFC); "not visible /
  cannot judge" is no judgement. Accuracy, sensitivity, specificity, the binomial test and the AUC
  use judged answers only; "not visible" answers are counted apart (how many, by truth and by
  reader), with accuracy over all answers (counting them as not correct) beside it.
* **Accuracy** against 50 %: two-sided exact binomial test; exact (Clopper-Pearson) 95 % intervals
  for every proportion.
* **Sensitivity** = synthetic cases called synthetic, **specificity** = real cases called real
  (positive = synthetic).
* **AUC**: ROC area of the 10-point synthetic-likelihood score (:func:`reader_study.stats.rating_score`),
  DeLong 95 % interval. Pooled figures treat every rating as one observation.
* **Agreement**: Cohen's kappa when two readers rated, Fleiss' kappa when three or more did, on the
  items every one of them rated, over the answer categories ("not visible" included).
* Splits by organ, by size bin (maximum 3D diameter), per reader by size bin.
* Practice answers are not part of any figure; their number is reported.
"""
from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from tumorsyn.errors import InputError
from tumorsyn.io.writers import atomic_path

from reader_study.build import KEY_PATH
from reader_study.stats import (auc_interval, binary_figures, binomial_test, cohen_kappa, exact_proportion,
                                fleiss_kappa, rating_score, roc_auc, roc_curve)
from reader_study.store import ANSWERS, NOT_VISIBLE, Store

__all__ = ["load_key", "rating_table", "summarize", "agreement", "analyze_study"]

# How the case was read (nullable columns; NULL in ratings made by older versions).
_READING = ("comment", "slices_visited", "window_width", "window_level", "zoom")


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
    """One row per rating with its truth, whether it was judged and correct, score, organ, size bin, time."""
    rows = []
    for rating in ratings:
        truth = key["items"].get(rating["item_id"])
        if truth is None:
            raise InputError(f"rated case {rating['item_id']} is not in the answer key; is it this study's key?")
        seconds = rating["client_seconds"] if rating.get("client_seconds") is not None else rating.get("server_seconds")
        judged = rating["answer"] != NOT_VISIBLE
        row = {**{name: None for name in _READING}, **rating, "organ": truth["organ"], "size_bin": truth["size_bin"],
               "max_diameter_mm": truth["max_diameter_mm"], "seconds": seconds, "judged": judged}
        row["truth"] = truth["kind"] if key["design"] == "single" else truth["synthetic_panel"]
        row["correct"] = judged and rating["answer"] == row["truth"]
        row["score"] = rating_score(rating["answer"], rating["confidence"]) \
            if key["design"] == "single" and judged else None
        rows.append(row)
    return rows


def _median(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return round(float(np.median(values)), 2) if values else None


def _reading(rows: list[dict]) -> dict:
    """Reading time and behaviour: seconds, slices visited, final window and zoom, comments."""
    seconds = [r["seconds"] for r in rows if r["seconds"] is not None]
    windows = Counter(f"W{r['window_width']:g}/L{r['window_level']:g}" for r in rows
                      if r["window_width"] is not None and r["window_level"] is not None)
    return {
        "n_timed": len(seconds), "median_s": _median(seconds),
        "mean_s": round(float(np.mean(seconds)), 2) if seconds else None,
        "total_min": round(float(np.sum(seconds)) / 60, 2) if seconds else None,
        "median_slices_visited": _median(r["slices_visited"] for r in rows),
        "median_zoom": _median(r["zoom"] for r in rows),
        "final_windows": dict(windows.most_common()),
        "comments": sum(bool((r["comment"] or "").strip()) for r in rows),
    }


def summarize(rows: list[dict], design: str) -> dict:
    """Figures of a set of ratings (one reader, a stratum, or all pooled); see the module docstring."""
    judged = [r for r in rows if r["judged"]]
    if design == "single":
        truth = [r["truth"] == "synthetic" for r in judged]
        figures = binary_figures(truth, [r["answer"] == "synthetic" for r in judged])
        scores = [r["score"] for r in judged]
        figures["auc"] = roc_auc(truth, scores)
        figures["auc_ci95"] = auc_interval(truth, scores) if figures["auc"] is not None else None
    else:
        correct = sum(r["correct"] for r in judged)
        figures = {"accuracy": exact_proportion(correct, len(judged)), "sensitivity": None, "specificity": None,
                   "binomial_p": binomial_test(correct, len(judged)), "auc": None, "auc_ci95": None}
    figures["n"] = len(rows)
    figures["n_judged"] = len(judged)
    figures["not_visible"] = len(rows) - len(judged)
    figures["accuracy_all_answers"] = exact_proportion(sum(r["correct"] for r in rows), len(rows))
    figures["reading"] = _reading(rows)
    return figures


def agreement(rows: list[dict], design: str) -> dict:
    """Inter-reader agreement on the items every reader rated: Cohen's kappa (2 readers), Fleiss' (3+)."""
    categories = list(ANSWERS[design])
    if NOT_VISIBLE not in categories:
        categories.append(NOT_VISIBLE)
    answers: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        answers[r["reader"]][r["item_id"]] = r["answer"]
    readers = sorted(answers)
    common = sorted(set.intersection(*(set(a) for a in answers.values()))) if readers else []
    result = {"method": None, "kappa": None, "readers": readers, "items": len(common), "categories": categories,
              "reason": None}
    if len(readers) < 2:
        result["reason"] = "needs two or more readers"
        return result
    if not common:
        result["reason"] = "no item was rated by every reader"
        return result
    if len(readers) == 2:
        first, second = ([answers[name][item] for item in common] for name in readers)
        kappa = cohen_kappa(first, second, categories)
        result["method"] = "cohen"
    else:
        table = np.array([[sum(answers[name][item] == c for name in readers) for c in categories]
                          for item in common])
        kappa = fleiss_kappa(table)
        result["method"] = "fleiss"
    if kappa is None:
        result["reason"] = "undefined: every answer was the same, so chance agreement is 100 %"
    result["kappa"] = None if kappa is None else round(kappa, 4)
    return result


def _not_visible(rows: list[dict], pooled: dict) -> dict:
    hidden = [r for r in rows if not r["judged"]]
    return {"n": len(hidden), "share": exact_proportion(len(hidden), len(rows)),
            "by_truth": dict(sorted(Counter(r["truth"] for r in hidden).items())),
            "by_reader": dict(sorted(Counter(r["reader"] for r in hidden).items())),
            "accuracy_excluding_them": pooled["accuracy"], "accuracy_counting_them_wrong": pooled["accuracy_all_answers"]}


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
        practice = store.practice_ratings() if hasattr(store, "practice_ratings") else []
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
    pooled = summarize(rows, design)
    report = {
        "design": design,
        "positive": "synthetic",
        "items": len(answer_key["items"]),
        "readers": len(by_reader),
        "ratings": len(rows),
        "practice_answers": len(practice),
        "progress": progress,
        "pooled": pooled,
        "per_reader": {name: summarize(rs, design) for name, rs in by_reader.items()},
        "by_organ": {organ: summarize(by_organ[organ], design) for organ in sorted(by_organ)},
        "by_size_bin": {b: summarize(by_size[b], design) for b in size_order},
        "per_reader_by_size_bin": {name: {b: summarize([r for r in rs if r["size_bin"] == b], design)
                                          for b in size_order if any(r["size_bin"] == b for r in rs)}
                                   for name, rs in by_reader.items()},
        "not_visible": _not_visible(rows, pooled),
        "agreement": agreement(rows, design),
        "conventions": _conventions(design),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "report.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    plots = _plots(rows, report, design, out, size_order)
    _write_text(out / "report.md", _markdown(report, design, plots))
    if export_csv:
        _write_csv(out / "ratings.csv", rows, design)
    return report


def _conventions(design: str) -> dict:
    """What each figure means, one sentence each (report.json; report.md says the same)."""
    single = design == "single"
    return {
        "judged": "'Not visible / cannot judge' answers are no judgement: accuracy, sensitivity, specificity, the "
                  "binomial test and the AUC use the other answers only; accuracy_all_answers counts them as not "
                  "correct.",
        "accuracy": "Share of judged answers that were correct, with its exact (Clopper-Pearson) 95 % interval."
                    if single else "Share of judged pairs in which the reader picked the synthetic case, with its "
                                   "exact (Clopper-Pearson) 95 % interval.",
        "binomial_p": "Two-sided exact binomial test of accuracy against 50 % (chance).",
        "sensitivity": "Share of synthetic cases called synthetic (positive = synthetic)." if single else None,
        "specificity": "Share of real cases called real." if single else None,
        "auc": "ROC area of the 10-point synthetic-likelihood score (real, confidence 5 = 1 ... synthetic, "
               "confidence 5 = 10), with DeLong's 95 % interval; pooled figures treat each rating as one observation."
               if single else None,
        "agreement": "Cohen's kappa for two readers, Fleiss' kappa for three or more, on the items every reader "
                     "rated, over all answer categories including 'not visible'.",
        "reading": "Seconds the case was on screen (the page's count, else the server's since it was first shown); "
                   "distinct slices visited, final window and zoom as the page recorded them.",
        "practice": "Practice answers are not part of any figure.",
    }


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_csv(path: Path, rows: list[dict], design: str) -> None:
    fields = ["reader", "order", "item_id", "answer", "confidence", "truth", "correct", "organ", "size_bin",
              "max_diameter_mm", "seconds", "client_seconds", "server_seconds", *_READING, "created"]
    if design == "single":
        fields.insert(6, "score")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "correct": row["correct"] if row["judged"] else "",
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["created"])) + "Z"})
    _write_text(path, buffer.getvalue())


def _pct(p: dict | None) -> str:
    if not p or p.get("value") is None:
        return "n/a"
    low, high = p["ci95"]
    return f"{100 * p['value']:.1f} % ({100 * low:.1f}-{100 * high:.1f}; {p['k']}/{p['n']})"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _fmt_auc(f: dict) -> str:
    if f.get("auc") is None:
        return "n/a"
    ci = f.get("auc_ci95")
    return f"{f['auc']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else " (interval n/a)")


def _table(title: str, groups: dict, design: str) -> list[str]:
    lines = [f"## {title}", ""]
    if design == "single":
        lines += ["| | answers | not visible | accuracy (95 % CI) | binomial p | sensitivity | specificity | "
                  "AUC (95 % CI) | median s |", "|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| | answers | not visible | proportion correct (95 % CI) | binomial p | median s |",
                  "|---|---|---|---|---|---|"]
    for name, f in groups.items():
        median = f["reading"]["median_s"]
        median = "n/a" if median is None else f"{median:.1f}"
        if design == "single":
            lines.append(f"| {name} | {f['n']} | {f['not_visible']} | {_pct(f['accuracy'])} | {_p(f['binomial_p'])} | "
                         f"{_pct(f['sensitivity'])} | {_pct(f['specificity'])} | {_fmt_auc(f)} | {median} |")
        else:
            lines.append(f"| {name} | {f['n']} | {f['not_visible']} | {_pct(f['accuracy'])} | {_p(f['binomial_p'])} "
                         f"| {median} |")
    return lines + [""]


def _verdict(f: dict) -> str:
    """One sentence on the pooled accuracy against chance."""
    acc, p = f["accuracy"], f["binomial_p"]
    if acc["value"] is None:
        return "No answer was judged, so there is no accuracy to test."
    said = (f"Pooled, readers were right in {acc['k']} of {acc['n']} judged answers ({100 * acc['value']:.1f} %, "
            f"95 % CI {100 * acc['ci95'][0]:.1f}-{100 * acc['ci95'][1]:.1f} %; binomial p = {p:.3g} against 50 %). ")
    if p >= 0.05:
        return said + ("This is no evidence that they could tell synthetic from real tumours better than chance; it "
                       "does not prove that they cannot (see the interval).")
    if acc["value"] > 0.5:
        return said + "They told synthetic from real tumours apart better than chance."
    return said + "They were wrong more often than chance: they took synthetic tumours for real and real for synthetic."


def _markdown(report: dict, design: str, plots: list[str]) -> str:
    pooled, hidden, agree = report["pooled"], report["not_visible"], report["agreement"]
    what = ("single cases, each rated real or synthetic with a confidence of 1-5" if design == "single"
            else "pairs of one real and one synthetic case, in which the reader picks the synthetic one")
    lines = [
        "# Reader study report", "",
        f"The study showed {what}. It has {report['items']} scored items; {report['readers']} reader(s) gave "
        f"{report['ratings']} rating(s). {report['practice_answers']} practice answer(s) are not part of any figure.",
        "",
        _verdict(pooled), "",
        "## How to read the figures", "",
        "- A 'not visible / cannot judge' answer is no judgement: accuracy, the binomial test"
        + (", sensitivity, specificity and the AUC" if design == "single" else "")
        + " use the other (judged) answers only, and the 'not visible' answers are counted in their own section.",
        "- Accuracy of 50 % is chance. p is the two-sided exact binomial test of accuracy against 50 %. Intervals "
        "are exact (Clopper-Pearson) 95 % intervals" + ("; the AUC's is DeLong's." if design == "single" else "."),
    ]
    if design == "single":
        lines += [
            "- Positive means synthetic: sensitivity is the share of synthetic cases called synthetic, specificity "
            "the share of real cases called real.",
            "- The AUC is the area under the ROC curve of a 10-point score from 1 (real, confidence 5) to 10 "
            "(synthetic, confidence 5); 0.5 is chance. Pooled figures treat every rating as one observation.",
        ]
    lines.append("")
    lines += _table("Pooled", {"all readers": pooled}, design)
    lines += _table("Per reader", report["per_reader"], design)
    lines += _table("By organ (pooled)", report["by_organ"], design)
    lines += _table("By size bin (pooled, maximum 3D diameter)", report["by_size_bin"], design)
    share = hidden["share"]
    by_truth = ", ".join(f"{n} on {truth} cases" for truth, n in hidden["by_truth"].items()) or "none"
    by_reader = ", ".join(f"{name} {n}" for name, n in hidden["by_reader"].items()) or "none"
    lines += ["## 'Not visible / cannot judge' answers", "",
              f"{hidden['n']} of {report['ratings']} answers ({_pct(share)}) said the lesion was not visible or could "
              f"not be judged ({by_truth}; by reader: {by_reader}). Accuracy excluding them is "
              f"{_pct(hidden['accuracy_excluding_them'])}; counting them as wrong it is "
              f"{_pct(hidden['accuracy_counting_them_wrong'])}.", ""]
    lines += ["## Agreement between readers", ""]
    if agree["kappa"] is None:
        lines.append(f"Kappa: n/a ({agree['reason']}).")
    else:
        name = "Cohen's kappa (two readers)" if agree["method"] == "cohen" else \
            f"Fleiss' kappa ({len(agree['readers'])} readers)"
        lines.append(f"{name}: {agree['kappa']:.3f}, on the {agree['items']} item(s) every reader rated, over the "
                     f"answers {', '.join(agree['categories'])}. 1 is perfect agreement, 0 what chance gives.")
    reading = pooled["reading"]
    lines += ["", "## Reading", ""]
    if reading["median_s"] is not None:
        lines.append(f"Median reading time {reading['median_s']:.1f} s per case ({reading['total_min']:.1f} min in "
                     "all).")
    if reading["median_slices_visited"] is not None:
        lines.append(f"Readers visited a median of {reading['median_slices_visited']:g} distinct slices per case.")
    if reading["final_windows"]:
        lines.append("Final windows: " + ", ".join(f"{w} ({n})" for w, n in reading["final_windows"].items()) + ".")
    lines.append(f"{reading['comments']} rating(s) carry a comment (in ratings.csv with --csv).")
    lines += ["", "## Progress", "", "| reader | rated | of |", "|---|---|---|"]
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
    judged = [r for r in rows if r["judged"]]
    if design == "single":
        fig = _figure((5.5, 5))
        ax = fig.add_subplot()
        groups = defaultdict(list)
        for r in judged:
            groups[r["reader"]].append(r)
        for name, rs in [*groups.items(), ("pooled", judged)]:
            truth = [r["truth"] == "synthetic" for r in rs]
            fpr, tpr = roc_curve(truth, [r["score"] for r in rs])
            auc = roc_auc(truth, [r["score"] for r in rs])
            label = f"{name} (AUC {auc:.2f})" if auc is not None else f"{name} (AUC n/a)"
            ax.plot(fpr, tpr, marker="o", markersize=3, linewidth=2.5 if name == "pooled" else 1.2,
                    color="black" if name == "pooled" else None, label=label)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
        ax.set_xlabel("1 - specificity (real called synthetic)")
        ax.set_ylabel("sensitivity (synthetic called synthetic)")
        ax.set_title("ROC per reader (10-point score; judged answers)")
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
        value = p["value"] if p["value"] is not None else 0.0
        values.append(value)
        lows.append(value - p["ci95"][0] if p["ci95"] else 0.0)
        highs.append(p["ci95"][1] - value if p["ci95"] else 0.0)
    x = np.arange(len(size_order))
    ax.bar(x, values, yerr=[lows, highs], capsize=4, color="#6a8caf")
    ax.axhline(0.5, linestyle=":", color="grey", label="chance")
    ax.set_xticks(x, [f"{b}\n(n={report['by_size_bin'][b]['n_judged']})" for b in size_order])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy" if design == "single" else "proportion correct")
    ax.set_title("Accuracy by tumour size (pooled judged answers; exact 95 %)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "accuracy_by_size.png")
    written.append("accuracy_by_size.png")
    return written
