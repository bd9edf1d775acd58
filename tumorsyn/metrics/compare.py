"""Two reports of the same reference side by side: per-bin sensitivity, difference, paired tests.

Typical use: model A trained on real tumours only, model B on real + synthetic, both evaluated on
the same real test set. Lesions are paired by (case id, lesion id); that is valid only when both
reports used the same reference files (checked by SHA-256) and the same conventions (checked).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from tumorsyn.errors import ConfigError, CorruptFileError, InputError
from tumorsyn.metrics.case_metrics import metric_parameters
from tumorsyn.metrics.report import REPORT_SCHEMA, to_jsonable, write_json, write_text
from tumorsyn.metrics.sizes import EARLY_MAX_DIAMETER_MM
from tumorsyn.metrics.stats import mcnemar_test, proportion

__all__ = ["load_report", "compare_reports", "render_comparison", "write_comparison", "WILCOXON_MIN_PAIRS"]

# Fewest paired cases for which the Wilcoxon signed-rank p is reported. With n non-zero differences
# the smallest exact two-sided p is 2 / 2**n: 0.0625 for n = 5, above 0.05 whatever the data, so a
# smaller sample can never show a difference and its p would only look like evidence of none.
WILCOXON_MIN_PAIRS = 6

# Conventions that change which lesions exist or count as found: they must agree to compare.
_MUST_AGREE = ("connectivity", "size_convention", "size_bins_mm", "match", "min_volume_mm3", "organ_restricted",
               "organ_labels", "tumour_labels", "probability_threshold")
# What a report written before a convention key existed used (so old and new reports still compare).
_BEFORE_THE_KEY = {"size_convention": "max-diameter"}


def load_report(path: str | Path) -> dict:
    """Read a ``report.json`` (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise CorruptFileError("report not found; give a report folder or its report.json", path=path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"cannot be read as JSON ({exc})", path=path) from None
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        raise InputError(f"not a tumorsyn evaluate report (schema {REPORT_SCHEMA} expected)", path=path)
    report["_path"] = str(path)
    return report


def _reference_lesions(report: dict) -> dict[tuple[str, int], dict]:
    return {(row["case_id"], int(row["lesion_id"])): row for row in report["lesions"] if row["kind"] == "reference"}


def _check_comparable(a: dict, b: dict) -> None:
    # Every parameter of a per-case metric (e.g. surface_dice_tolerance_mm) must agree too.
    metric_keys = [f"{name}_{p}" for name, params in metric_parameters().items() for p in params]
    def value(report: dict, key: str):
        return report["conventions"].get(key, _BEFORE_THE_KEY.get(key))

    differ = [k for k in (*_MUST_AGREE, *metric_keys) if value(a, k) != value(b, k)]
    if differ:
        detail = "; ".join(f"{k}: {value(a, k)} vs {value(b, k)}" for k in differ)
        raise ConfigError(f"the reports used different conventions ({detail}); evaluate both with the same options",
                          path=b["_path"])
    refs_a = {c["case_id"]: (c.get("reference") or {}).get("sha256") for c in a["inputs"]["cases"]}
    refs_b = {c["case_id"]: (c.get("reference") or {}).get("sha256") for c in b["inputs"]["cases"]}
    if set(refs_a) != set(refs_b):
        only = sorted(set(refs_a) ^ set(refs_b))
        raise InputError(f"the reports cover different cases (e.g. {', '.join(only[:3])}); compare reports "
                         f"of the same test set", path=b["_path"])
    for case_id in sorted(refs_a):
        if refs_a[case_id] and refs_b[case_id] and refs_a[case_id] != refs_b[case_id]:
            raise InputError(f"case {case_id}: the reference files differ (SHA-256); lesions cannot be paired",
                             path=b["_path"])
    if _reference_lesions(a).keys() != _reference_lesions(b).keys():
        raise InputError("the reports list different reference lesions; lesions cannot be paired", path=b["_path"])


def _paired(a_rows: dict, b_rows: dict, keys: Sequence) -> dict:
    hit_a = [a_rows[k]["status"] == "detected" for k in keys]
    hit_b = [b_rows[k]["status"] == "detected" for k in keys]
    only_a = sum(x and not y for x, y in zip(hit_a, hit_b))
    only_b = sum(y and not x for x, y in zip(hit_a, hit_b))
    pa, pb = proportion(sum(hit_a), len(keys)), proportion(sum(hit_b), len(keys))
    diff = pb["value"] - pa["value"] if keys else None
    return {"a": pa, "b": pb, "difference_b_minus_a": diff, "mcnemar": _mcnemar(only_a, only_b, "lesions")}


def _mcnemar(only_a: int, only_b: int, units: str) -> dict:
    """McNemar's test, with null p-values and a ``reason`` when no pair is discordant.

    Without a discordant pair (an empty bin, or both models agree on every item) the test has no
    data: its p of 1 would read as "no difference shown" rather than "nothing to test".
    ``reason`` is null when the test was run.
    """
    test = {**mcnemar_test(only_a, only_b), "reason": None}
    if only_a + only_b == 0:
        test.update(exact_p=None, chi2_cc=None, chi2_cc_p=None, reason=f"no discordant {units}")
    return test


def _wilcoxon(a: list[float], b: list[float]) -> tuple[float | None, str | None]:
    """Wilcoxon signed-rank p of paired values, or ``(None, reason)`` where it is undefined or meaningless."""
    if len(a) < WILCOXON_MIN_PAIRS:
        return None, f"n < {WILCOXON_MIN_PAIRS}"
    # scipy drops zero differences (zero_method="wilcox"), so they do not count towards n either.
    if sum(y != x for x, y in zip(a, b)) < WILCOXON_MIN_PAIRS:
        return None, f"fewer than {WILCOXON_MIN_PAIRS} non-zero differences"
    from scipy.stats import wilcoxon

    return float(wilcoxon(a, b).pvalue), None


def compare_reports(a: dict, b: dict, *, names: Sequence[str] | None = None) -> dict:
    """Compare two loaded reports of the same reference.

    Parameters
    ----------
    a, b : dict
        From :func:`load_report`.
    names : (str, str), optional
        Display names (default: the report folders' names).

    Returns
    -------
    dict
        ``by_size``, ``overall`` and ``early_lt_20mm``: both sensitivities with Wilson 95 %
        intervals, B - A, and McNemar's test on the paired lesions (p-values null, with a
        ``reason``, when no lesion is discordant); ``patient``: the same on tumour-positive scans;
        ``segmentation``: per-case Dice means, difference and a Wilcoxon signed-rank p (null, with
        ``wilcoxon_reason``, below :data:`WILCOXON_MIN_PAIRS` cases or non-zero differences);
        ``false_positives_per_scan``.
    """
    _check_comparable(a, b)
    if names is None:
        names = [Path(r["_path"]).parent.name or Path(r["_path"]).name for r in (a, b)]
        if names[0] == names[1]:
            names = [f"A ({names[0]})", f"B ({names[1]})"]
    rows_a, rows_b = _reference_lesions(a), _reference_lesions(b)
    keys = sorted(rows_a)
    by_size = [{"bin": label, **_paired(rows_a, rows_b, [k for k in keys if rows_a[k]["size_bin"] == label])}
               for label in a["conventions"]["size_bin_labels"]]
    early = [k for k in keys if rows_a[k]["max_diameter_mm"] < EARLY_MAX_DIAMETER_MM]

    cases_a = {c["case_id"]: c for c in a["cases"]}
    cases_b = {c["case_id"]: c for c in b["cases"]}
    positive = sorted(cid for cid, c in cases_a.items() if c["has_tumour"])
    found_a = [cases_a[c]["n_detected"] > 0 for c in positive]
    found_b = [cases_b[c]["n_detected"] > 0 for c in positive]
    dice_pairs = [(cases_a[c]["dice"], cases_b[c]["dice"]) for c in positive
                  if cases_a[c]["dice"] is not None and cases_b[c]["dice"] is not None]
    da, db = [p[0] for p in dice_pairs], [p[1] for p in dice_pairs]
    mean = (lambda v: sum(v) / len(v) if v else None)
    wilcoxon_p, wilcoxon_reason = _wilcoxon(da, db)
    return to_jsonable({
        "schema": "tumorsyn.evaluate.compare/1",
        "names": {"a": names[0], "b": names[1]},
        "reports": {"a": a["_path"], "b": b["_path"]},
        "conventions": a["conventions"],
        "by_size": by_size,
        "early_lt_20mm": _paired(rows_a, rows_b, early),
        "overall": _paired(rows_a, rows_b, keys),
        "patient": {
            "sensitivity": {"a": proportion(sum(found_a), len(positive)), "b": proportion(sum(found_b), len(positive)),
                            "mcnemar": _mcnemar(sum(x and not y for x, y in zip(found_a, found_b)),
                                                sum(y and not x for x, y in zip(found_a, found_b)), "scans")},
            "specificity": {"a": a["summary"]["patient"]["specificity"], "b": b["summary"]["patient"]["specificity"]},
        },
        "segmentation": {"n_paired_cases": len(dice_pairs), "dice_mean_a": mean(da), "dice_mean_b": mean(db),
                         "dice_difference_b_minus_a": (mean(db) - mean(da)) if dice_pairs else None,
                         "wilcoxon_p": wilcoxon_p, "wilcoxon_reason": wilcoxon_reason},
        "false_positives_per_scan": {"a": a["summary"]["false_positives"]["per_scan"],
                                     "b": b["summary"]["false_positives"]["per_scan"]},
    })


def _p_text(p: float | None, reason: str | None, spec: str = ".3g") -> str:
    """A p-value for the Markdown, or "n/a (why)" where the test is undefined or meaningless."""
    return f"n/a ({reason or 'undefined'})" if p is None else format(p, spec)


def _pct(prop: dict) -> str:
    if prop["value"] is None:
        return "n/a"
    return f"{100 * prop['value']:.1f} % ({100 * prop['ci95'][0]:.1f}-{100 * prop['ci95'][1]:.1f}) [{prop['k']}/{prop['n']}]"


def render_comparison(comparison: dict) -> str:
    """Markdown table of a comparison (also what the command prints)."""
    na, nb = comparison["names"]["a"], comparison["names"]["b"]
    lines = [f"# {na} vs {nb}", "", f"| size | {na} | {nb} | B - A | McNemar exact p |", "|---|---|---|---:|---:|"]
    for row in [*comparison["by_size"], {"bin": "early (< 20 mm)", **comparison["early_lt_20mm"]},
                {"bin": "all", **comparison["overall"]}]:
        diff = row["difference_b_minus_a"]
        diff_text = "n/a" if diff is None or (isinstance(diff, float) and math.isnan(diff)) else f"{100 * diff:+.1f} pts"
        test = row["mcnemar"]
        lines.append(f"| {row['bin']} | {_pct(row['a'])} | {_pct(row['b'])} | {diff_text} | "
                     f"{_p_text(test['exact_p'], test.get('reason'))} |")
    pat, seg, fp = comparison["patient"], comparison["segmentation"], comparison["false_positives_per_scan"]
    patient_test = pat["sensitivity"]["mcnemar"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
    lines += ["", f"- Patient sensitivity: {_pct(pat['sensitivity']['a'])} vs {_pct(pat['sensitivity']['b'])} "
                  f"(McNemar exact p {_p_text(patient_test['exact_p'], patient_test.get('reason'))})",
              f"- Patient specificity: {_pct(pat['specificity']['a'])} vs {_pct(pat['specificity']['b'])}",
              f"- Dice per case (mean over {seg['n_paired_cases']} paired cases): {fmt(seg['dice_mean_a'])} vs "
              f"{fmt(seg['dice_mean_b'])} (Wilcoxon p {_p_text(seg['wilcoxon_p'], seg.get('wilcoxon_reason'), '.3f')})",
              f"- False positives per scan: {fmt(fp['a'])} vs {fmt(fp['b'])}",
              "", f"Match `{comparison['conventions']['match']}`; lesions paired by case and lesion id; "
                  f"McNemar on discordant lesions (exact binomial, two-sided); Wilcoxon signed-rank only from "
                  f"{WILCOXON_MIN_PAIRS} paired cases with non-zero differences (fewer cannot reach p < 0.05).", ""]
    return "\n".join(lines)


def write_comparison(out_dir: str | Path, comparison: dict, *, plots: bool = True) -> list[Path]:
    """Write ``compare.json``, ``compare.md`` and ``compare_sensitivity.png`` into ``out_dir``, as one set."""
    from tumorsyn.io.writers import atomic_group
    from tumorsyn.metrics.report import make_report_folder

    out = make_report_folder(out_dir)
    written = []
    with atomic_group() as stage:
        if plots:
            try:
                from tumorsyn.metrics.plots import plot_comparison

                plot_comparison(comparison, stage(out / "compare_sensitivity.png"))
                written.append(out / "compare_sensitivity.png")
            except ImportError as exc:
                comparison["plots"] = f"skipped: {exc}; install tumorsyn[plots]"
        write_text(stage(out / "compare.md"), render_comparison(comparison))
        write_json(stage(out / "compare.json"), comparison)
    return written + [out / "compare.md", out / "compare.json"]
