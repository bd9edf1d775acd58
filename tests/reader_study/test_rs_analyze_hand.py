"""`reader-study analyze` on a tiny constructed study, every figure against numbers worked out by hand.

Six scored items (S = synthetic, R = real) and one practice item:

    item  truth  organ   size bin
    i1    S      liver   <10 mm
    i2    S      liver   10-20 mm
    i3    S      kidney  10-20 mm
    i4    R      liver   <10 mm
    i5    R      liver   10-20 mm
    i6    R      kidney  10-20 mm

Answers (S/R + confidence, NV = not visible) and their 10-point scores (S c -> 5 + c, R c -> 6 - c):

    reader A (10 s, 5 slices):  i1 S5=10  i2 S3=8  i3 R2=4  i4 R4=2  i5 S1=6  i6 R5=1
    reader B (20 s, no slices): i1 S4=9   i2 R3=3  i3 S2=7  i4 R5=1  i5 R2=4  i6 NV
    reader C (30 s, 3 slices):  i1 S2=7   i2 S5=10 i3 R1=5  i4 S3=8
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reader_study.analyze import analyze_study
from reader_study.store import Store
from tumorsyn.cli.main import main

ITEMS = {"i1": ("synthetic", "liver", "<10 mm"), "i2": ("synthetic", "liver", "10-20 mm"),
         "i3": ("synthetic", "kidney", "10-20 mm"), "i4": ("real", "liver", "<10 mm"),
         "i5": ("real", "liver", "10-20 mm"), "i6": ("real", "kidney", "10-20 mm")}
ANSWERS = {
    "A": ({"i1": ("synthetic", 5), "i2": ("synthetic", 3), "i3": ("real", 2), "i4": ("real", 4),
           "i5": ("synthetic", 1), "i6": ("real", 5)}, 10.0, 5),
    "B": ({"i1": ("synthetic", 4), "i2": ("real", 3), "i3": ("synthetic", 2), "i4": ("real", 5),
           "i5": ("real", 2), "i6": ("not_visible", None)}, 20.0, None),
    "C": ({"i1": ("synthetic", 2), "i2": ("synthetic", 5), "i3": ("real", 1), "i4": ("synthetic", 3)}, 30.0, 3),
}
Z = 1.959963984540054


def _study(folder: Path, readers: tuple[str, ...]) -> Path:
    items = [{"id": "p1", "panels": ["a"], "views": {"axial": 1}, "practice": True, "truth": "real"}]
    items += [{"id": i, "panels": ["a"], "views": {"axial": 1}, "practice": False} for i in ITEMS]
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"format": "tumorsyn-reader-study/1", "design": "single",
                                                   "seed": 0, "items": items}))
    key = {"format": "tumorsyn-reader-study/1", "design": "single", "positive": "synthetic",
           "size_bins": ["<10 mm", "10-20 mm", ">=20 mm"],
           "items": {i: {"kind": k, "organ": o, "size_bin": b, "max_diameter_mm": 9.0, "position": n + 1}
                     for n, (i, (k, o, b)) in enumerate(ITEMS.items())}}
    (folder / "key").mkdir()
    (folder / "key" / "answer_key.json").write_text(json.dumps(key))
    store = Store(folder)
    try:
        for name in readers:
            answers, seconds, slices = ANSWERS[name]
            reader_id = store.authenticate(store.add_reader(name))["reader_id"]
            store.save_rating(reader_id, "p1", "synthetic", 2, 5.0)  # practice: in no figure
            for item, (answer, confidence) in answers.items():
                store.save_rating(reader_id, item, answer, confidence, seconds, slices_visited=slices,
                                  window_width=400.0, window_level=40.0)
    finally:
        store.close()
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    return analyze_study(_study(root / "abc", ("A", "B", "C")), root / "report", export_csv=True), root


def _binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Bin(n, 1/2), from the binomial coefficients."""
    return sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n


def test_per_reader_figures(report):
    report, _ = report
    a, b, c = (report["per_reader"][name] for name in "ABC")
    # A: right on i1 i2 i4 i6 -> 4/6; sensitivity i1 i2 of 3 synthetic; specificity i4 i6 of 3 real.
    assert (a["accuracy"]["k"], a["accuracy"]["n"]) == (4, 6)
    assert (a["sensitivity"]["k"], a["sensitivity"]["n"], a["specificity"]["k"], a["specificity"]["n"]) == (2, 3, 2, 3)
    # Two-sided binomial p of 4/6: 2 * (15 + 6 + 1) / 64 = 0.6875.
    assert a["binomial_p"] == pytest.approx(44 / 64)
    # Clopper-Pearson bounds of 4/6: the p at which P(X >= 4 | 6, p) = 0.025, and at which P(X <= 4 | 6, p) = 0.025.
    low, high = a["accuracy"]["ci95"]
    assert low == pytest.approx(0.22278, abs=1e-4) and high == pytest.approx(0.95673, abs=1e-4)
    assert sum(math.comb(6, j) * low ** j * (1 - low) ** (6 - j) for j in range(4, 7)) == pytest.approx(0.025, abs=1e-6)
    assert sum(math.comb(6, j) * high ** j * (1 - high) ** (6 - j) for j in range(0, 5)) == pytest.approx(0.025, abs=1e-6)
    # AUC of A: synthetic scores 10, 8, 4 against real 2, 6, 1: 3 + 3 + 2 of 9 pairs won.
    assert a["auc"] == pytest.approx(8 / 9)
    # DeLong: placement values V10 = 1, 1, 2/3 and V01 = 1, 2/3, 1; each has variance (1/81 + 1/81 + 4/81) / 2
    # = 1/27, so var(AUC) = 1/27 / 3 + 1/27 / 3 = 2/81 and SE = sqrt(2) / 9; the upper bound is clipped to 1.
    assert a["auc_ci95"][0] == pytest.approx(8 / 9 - Z * math.sqrt(2) / 9) and a["auc_ci95"][1] == 1.0
    # B: i6 not visible; right on i1 i3 i4 i5 -> 4/5 judged; counting i6 as wrong 4/6.
    assert (b["n"], b["n_judged"], b["not_visible"]) == (6, 5, 1)
    assert (b["accuracy"]["k"], b["accuracy"]["n"]) == (4, 5) and b["binomial_p"] == pytest.approx(12 / 32)
    assert (b["accuracy_all_answers"]["k"], b["accuracy_all_answers"]["n"]) == (4, 6)
    assert (b["specificity"]["k"], b["specificity"]["n"]) == (2, 2)
    # Clopper-Pearson of 2/2 (all correct): lower = 0.025 ** (1/2) = 0.158114, upper 1.
    assert b["specificity"]["ci95"] == pytest.approx([0.025 ** 0.5, 1.0])
    # AUC of B: synthetic 9, 3, 7 against real 1, 4: 2 + 1 + 2 of 6.
    assert b["auc"] == pytest.approx(5 / 6)
    # C: right on i1 i2 -> 2/4, p = 1.
    assert (c["accuracy"]["k"], c["accuracy"]["n"]) == (2, 4) and c["binomial_p"] == pytest.approx(1.0)


def test_pooled_and_splits(report):
    report, _ = report
    pooled = report["pooled"]
    # 4 + 4 + 2 = 10 of 15 judged; 16 answers with the one 'not visible'.
    assert (pooled["accuracy"]["k"], pooled["accuracy"]["n"], pooled["n"]) == (10, 15, 16)
    # Two-sided binomial p of 10/15: 2 * (3003 + 1365 + 455 + 105 + 15 + 1) / 32768 = 0.30176.
    assert pooled["binomial_p"] == pytest.approx(2 * _binomial_tail(10, 15)) == pytest.approx(9888 / 32768)
    # Synthetic judged 9 (6 called synthetic), real judged 6 (4 called real).
    assert (pooled["sensitivity"]["k"], pooled["sensitivity"]["n"]) == (6, 9)
    assert (pooled["specificity"]["k"], pooled["specificity"]["n"]) == (4, 6)
    # Pooled AUC: synthetic 10 8 4 9 3 7 7 10 5 vs real 2 6 1 1 4 8; wins (ties 1/2)
    # 6 + 5.5 + 3.5 + 6 + 3 + 5 + 5 + 6 + 4 = 44 of 54.
    assert pooled["auc"] == pytest.approx(44 / 54)
    # Organs: liver 8 of 11 judged, kidney 2 of 4 (plus B's not-visible i6).
    liver, kidney = report["by_organ"]["liver"], report["by_organ"]["kidney"]
    assert (liver["accuracy"]["k"], liver["accuracy"]["n"]) == (8, 11)
    assert (kidney["accuracy"]["k"], kidney["accuracy"]["n"], kidney["not_visible"]) == (2, 4, 1)
    # Size bins: <10 mm (i1, i4) 5 of 6; 10-20 mm 5 of 9; no >=20 mm bin.
    assert list(report["by_size_bin"]) == ["<10 mm", "10-20 mm"]
    assert (report["by_size_bin"]["<10 mm"]["accuracy"]["k"], report["by_size_bin"]["<10 mm"]["accuracy"]["n"]) == (5, 6)
    assert report["by_size_bin"]["10-20 mm"]["accuracy"]["value"] == pytest.approx(5 / 9)
    assert report["per_reader_by_size_bin"]["C"]["<10 mm"]["accuracy"]["value"] == pytest.approx(1 / 2)
    # Not visible: one answer, on a real case, by B; accuracy excluding it 10/15, counting it wrong 10/16.
    hidden = report["not_visible"]
    assert (hidden["n"], hidden["by_truth"], hidden["by_reader"]) == (1, {"real": 1}, {"B": 1})
    assert hidden["accuracy_excluding_them"]["value"] == pytest.approx(10 / 15)
    assert hidden["accuracy_counting_them_wrong"]["value"] == pytest.approx(10 / 16)
    # Reading: seconds 6 x 10, 6 x 20, 4 x 30 -> median 20; slices 6 x 5 and 4 x 3 (B's unknown) -> median 5.
    assert pooled["reading"]["median_s"] == 20.0 and pooled["reading"]["median_slices_visited"] == 5.0
    assert pooled["reading"]["final_windows"] == {"W400/L40": 16}
    # The practice answers are counted, never scored.
    assert report["practice_answers"] == 3 and report["ratings"] == 16


def test_fleiss_kappa_for_three_readers(report):
    report, _ = report
    agree = report["agreement"]
    # Items every reader rated: i1..i4. Counts (real, synthetic, not visible): i1 0/3/0, i2 1/2/0, i3 2/1/0,
    # i4 2/1/0. P_i = 1, 1/3, 1/3, 1/3 -> mean 1/2; shares 5/12, 7/12 -> chance 74/144;
    # kappa = (72 - 74) / (144 - 74) = -1/35.
    assert agree["method"] == "fleiss" and agree["items"] == 4 and agree["readers"] == ["A", "B", "C"]
    assert agree["kappa"] == pytest.approx(-1 / 35, abs=1e-4)


def test_cohen_kappa_for_two_readers(tmp_path):
    report = analyze_study(_study(tmp_path / "ab", ("A", "B")), tmp_path / "report")
    agree = report["agreement"]
    # A: S S R R S R, B: S R S R R NV on i1..i6. Observed agreement 2/6; A's marginals S 3 R 3, B's S 2 R 3 NV 1:
    # chance (3*2 + 3*3 + 0*1) / 36 = 5/12; kappa = (1/3 - 5/12) / (7/12) = -1/7.
    assert agree["method"] == "cohen" and agree["items"] == 6
    assert agree["kappa"] == pytest.approx(-1 / 7, abs=1e-4)


def test_report_files_and_cli(report, capsys):
    data, root = report
    md = (root / "report" / "report.md").read_text()
    assert "Pooled, readers were right in 10 of 15 judged answers (66.7 %" in md
    assert "This is no evidence that they could tell synthetic from real tumours better than chance" in md
    assert "1 of 16 answers" in md and "1 on real cases; by reader: B 1" in md
    assert "Fleiss' kappa (3 readers): -0.029, on the 4 item(s) every reader rated" in md
    assert "3 practice answer(s) are not part of any figure" in md
    assert json.loads((root / "report" / "report.json").read_text())["pooled"]["accuracy"]["k"] == 10
    rows = (root / "report" / "ratings.csv").read_text().splitlines()
    assert len(rows) == 17 and "slices_visited" in rows[0]
    assert main(["reader-study", "analyze", str(root / "abc"), "--out", str(root / "cli")]) == 0
    out = capsys.readouterr().out
    assert "16 ratings by 3 reader(s): accuracy 66.7 % of 15 judged" in out and "1 'not visible'" in out
