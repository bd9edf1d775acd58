"""Issue #19: undefined tests print "n/a (why)", conventions read as sentences, the size plot is legible."""
import json

import numpy as np
import pytest

from tumorsyn.metrics import build_report, compare_reports, conventions, evaluate_case, summarize, versions
from tumorsyn.metrics import plots
from tumorsyn.metrics.compare import WILCOXON_MIN_PAIRS, render_comparison, write_comparison
from tumorsyn.metrics.conventions import describe_conventions
from tumorsyn.metrics.report import render_markdown

SHAPE = (24, 24, 12)


def _box(lo, hi):
    mask = np.zeros(SHAPE, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def _report(tmp_path, name, predictions):
    """A report over len(predictions) cases, each with one small (< 10 mm) reference tumour."""
    ref = _box((6, 6, 4), (12, 12, 8))
    results = [evaluate_case(ref, pred, spacing_mm=(1, 1, 1), case_id=f"c{i}") for i, pred in enumerate(predictions)]
    report = build_report(results, summary=summarize(results), conventions=conventions(), versions=versions())
    return {**report, "_path": str(tmp_path / name / "report.json")}


def _exact(n):
    return [_box((6, 6, 4), (12, 12, 8))] * n


def _smaller(n):
    # Still detects the lesion (shares voxels), with a different Dice in every case.
    return [_box((6, 6, 4), (11 - i % 3, 12, 8 - i // 3 % 2)) for i in range(n)]


def test_mcnemar_without_discordant_lesions_is_na_not_one(tmp_path):
    a, b = _report(tmp_path, "a", _exact(2)), _report(tmp_path, "b", _exact(2))
    cmp = compare_reports(a, b)
    for row in [*cmp["by_size"], cmp["overall"], cmp["early_lt_20mm"]]:
        test = row["mcnemar"]
        assert (test["only_a"], test["only_b"]) == (0, 0)  # the counts stay numbers
        assert test["exact_p"] is None and test["chi2_cc_p"] is None and test["reason"] == "no discordant lesions"
    assert cmp["patient"]["sensitivity"]["mcnemar"]["reason"] == "no discordant scans"
    md = render_comparison(cmp)
    assert md.count("| n/a (no discordant lesions) |") == 5  # three size bins (two empty), early, all
    assert "McNemar exact p n/a (no discordant scans)" in md
    # The files and the comparison plot (p shown as "n/a") are written from nulls.
    write_comparison(tmp_path / "cmp", cmp)
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["overall"]["mcnemar"]["exact_p"] is None


def test_mcnemar_with_discordant_lesions_keeps_its_p(tmp_path):
    missed = [np.zeros(SHAPE, bool), *_exact(1)]
    cmp = compare_reports(_report(tmp_path, "a", missed), _report(tmp_path, "b", _exact(2)))
    assert cmp["overall"]["mcnemar"]["exact_p"] == 1.0 and cmp["overall"]["mcnemar"]["reason"] is None
    assert "| all |" in render_comparison(cmp) and "| +50.0 pts | 1 |" in render_comparison(cmp)


def test_wilcoxon_needs_six_paired_cases(tmp_path):
    n = WILCOXON_MIN_PAIRS - 1
    seg = compare_reports(_report(tmp_path, "a", _exact(n)), _report(tmp_path, "b", _smaller(n)))["segmentation"]
    assert seg["n_paired_cases"] == 5 and seg["wilcoxon_p"] is None and seg["wilcoxon_reason"] == "n < 6"
    cmp = compare_reports(_report(tmp_path, "a", _exact(n)), _report(tmp_path, "b", _smaller(n)))
    assert "(Wilcoxon p n/a (n < 6))" in render_comparison(cmp)
    # Six cases with six non-zero differences: a p-value.
    n = WILCOXON_MIN_PAIRS
    seg = compare_reports(_report(tmp_path, "a", _exact(n)), _report(tmp_path, "b", _smaller(n)))["segmentation"]
    assert 0 < seg["wilcoxon_p"] <= 1 and seg["wilcoxon_reason"] is None
    # Six cases, all differences zero: scipy would drop every pair, so no p either.
    seg = compare_reports(_report(tmp_path, "a", _exact(n)), _report(tmp_path, "b", _exact(n)))["segmentation"]
    assert seg["wilcoxon_p"] is None and seg["wilcoxon_reason"] == "fewer than 6 non-zero differences"


def test_report_md_conventions_are_sentences(tmp_path):
    report = _report(tmp_path, "a", _exact(1))
    md = render_markdown(report)
    section = md.split("## Conventions\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(section) == len(report["conventions"])  # one sentence per convention, none dropped
    for line in section:
        assert line.startswith("- ") and "**" not in line and line.endswith(".") and line[2].isupper(), line
    assert "- A lesion is a 26-connected component of the reference tumour mask." in section
    assert "- Lesions are matched with the `any` criterion." in section
    assert "- Evaluation is not restricted to an organ mask." in section
    # report.json keeps the raw dict.
    assert report["conventions"]["match"] == "any" and report["conventions"]["organ_restricted"] is False


def test_unknown_convention_key_still_gets_a_sentence():
    assert describe_conventions({"future_rule": "something new", "tumour_labels": [2, 3]}) == [
        "Future rule: something new.", "Tumour labels: 2, 3."]


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figure each plot function would save."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, conventions: figures.append(fig) or path)
    return figures


def test_size_plot_counts_legible_and_no_interval_for_empty_bin(tmp_path, drawn):
    from matplotlib.colors import to_rgb

    rows = [{"bin": "<10 mm", "n": 4, "k": 3, "value": 0.75, "ci95": [0.3, 0.95]},
            {"bin": "10-20 mm", "n": 2, "k": 2, "value": 1.0, "ci95": [0.34, 1.0]},
            {"bin": ">20 mm", "n": 0, "k": 0, "value": None, "ci95": None}]
    plots.plot_sensitivity_by_size({"lesion_sensitivity": {"by_size": rows}}, tmp_path / "s.png",
                                   conventions={"match": "any"})
    ax = drawn[0].axes[0]
    labels = {t.get_text(): t for t in ax.texts}
    assert set(labels) == {"3/4", "2/2", "0/0"}
    for row in rows:
        text = labels[f"{row['k']}/{row['n']}"]
        r, g, b = to_rgb(text.get_color())
        assert 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # dark text ...
        assert text.xy[1] >= (row["value"] or 0.0)  # ... above its bar, on the white background
    # Error bars: one per non-empty bin; nothing at the empty bin's x (= 2), caps included.
    xs = [x for coll in ax.collections for seg in coll.get_segments() for x in seg[:, 0]]
    xs += [x for line in ax.lines for x in line.get_xdata()]
    assert sorted(set(np.round(xs, 6))) == [0.0, 1.0]
