"""`reader-study analyze` on a phantom study rated by simulated readers whose answers are known."""
from __future__ import annotations

import csv
import json

import pytest

from reader_study.analyze import analyze_study
from reader_study.build import build_study
from reader_study.store import Store
from tumorsyn.cli.main import main
from tumorsyn.errors import InputError


def _rate(study, name, answer_of, confidence_of=lambda truth: 4, seconds=2.0):
    """Register ``name`` and rate every item, in the reader's own order, with ``answer_of(truth)``."""
    key = json.loads((study / "key" / "answer_key.json").read_text())["items"]
    store = Store(study)
    try:
        reader_id = store.authenticate(store.add_reader(name))["reader_id"]
        while (item := store.next_item(reader_id)) is not None:
            truth = key[item["item_id"]]
            store.save_rating(reader_id, item["item_id"], answer_of(truth), confidence_of(truth), seconds)
    finally:
        store.close()


@pytest.fixture
def study(sources, small_settings, tmp_path):
    real, synthetic = sources
    return build_study(real, synthetic, tmp_path / "study", seed=21, settings=small_settings)


def test_perfect_always_real_and_chance_readers(study, tmp_path):
    _rate(study, "perfect", lambda t: t["kind"])
    _rate(study, "always-real", lambda t: "real", lambda t: 3, seconds=4.0)
    # Right on the small lesions only: 2 of 4 synthetic and 2 of 4 real correct (the phantom has 2 bins).
    _rate(study, "small-only", lambda t: t["kind"] if t["size_bin"] == "<10 mm" else
          ("real" if t["kind"] == "synthetic" else "synthetic"), lambda t: 2)
    report = analyze_study(study, tmp_path / "report", export_csv=True)
    perfect, always, small = (report["per_reader"][n] for n in ("perfect", "always-real", "small-only"))
    assert perfect["accuracy"]["value"] == 1.0 and perfect["auc"] == 1.0
    assert perfect["binomial_p"] == pytest.approx(2 * 0.5 ** 8)
    assert always["accuracy"]["value"] == 0.5 and always["sensitivity"]["value"] == 0.0
    assert always["specificity"]["value"] == 1.0 and always["auc"] == 0.5
    assert always["reading"]["median_s"] == 4.0
    assert small["accuracy"]["value"] == 0.5 and small["binomial_p"] == pytest.approx(1.0)
    assert report["per_reader_by_size_bin"]["small-only"]["<10 mm"]["accuracy"]["value"] == 1.0
    assert report["per_reader_by_size_bin"]["small-only"]["10-20 mm"]["accuracy"]["value"] == 0.0
    # Pooled: 8 + 4 + 4 correct of 24.
    assert report["pooled"]["accuracy"]["k"] == 16 and report["pooled"]["accuracy"]["n"] == 24
    assert report["by_organ"]["liver"]["n"] == 24
    assert set(report["by_size_bin"]) == {"<10 mm", "10-20 mm"}
    # Kappa over 8 items x 3 readers, computed by hand from the answer table.
    import numpy as np

    from reader_study.stats import fleiss_kappa

    rows = list(csv.DictReader(open(tmp_path / "report" / "ratings.csv")))
    assert len(rows) == 24 and {"reader", "item_id", "answer", "truth", "correct", "seconds"} <= set(rows[0])
    table = {}
    for row in rows:
        table.setdefault(row["item_id"], [0, 0])[row["answer"] == "synthetic"] += 1
    assert report["agreement"]["method"] == "fleiss"
    assert report["agreement"]["kappa"] == pytest.approx(fleiss_kappa(np.array(list(table.values()))), abs=1e-4)
    for name in ("report.json", "report.md", "roc.png", "accuracy_by_size.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| perfect | 8 | 0 | 100.0 %" in md and "Fleiss' kappa" in md


def test_disagreeing_readers_kappa(study, tmp_path):
    _rate(study, "yes", lambda t: "synthetic")
    _rate(study, "no", lambda t: "real")
    report = analyze_study(study, tmp_path / "r")
    # Two readers: Cohen's kappa, from each reader's own marginals. Observed agreement 0; chance agreement
    # 1 * 0 + 0 * 1 = 0 ("yes" always says synthetic, "no" always real) -> kappa 0 (Fleiss' pooled one: -1).
    assert report["agreement"]["method"] == "cohen"
    assert report["agreement"]["kappa"] == pytest.approx(0.0)


def test_2afc_analysis(sources, small_settings, tmp_path):
    real, synthetic = sources
    study = build_study(real, synthetic, tmp_path / "pairs", design="2afc", seed=22, settings=small_settings)
    _rate(study, "sharp", lambda t: t["synthetic_panel"])
    _rate(study, "blind", lambda t: "a")
    report = analyze_study(study, tmp_path / "r2")
    assert report["per_reader"]["sharp"]["accuracy"]["value"] == 1.0
    key = json.loads((study / "key" / "answer_key.json").read_text())["items"]
    expected = sum(v["synthetic_panel"] == "a" for v in key.values()) / len(key)
    assert report["per_reader"]["blind"]["accuracy"]["value"] == pytest.approx(expected)
    assert report["pooled"]["auc"] is None and report["pooled"]["sensitivity"] is None
    assert (tmp_path / "r2" / "accuracy_by_size.png").exists() and not (tmp_path / "r2" / "roc.png").exists()


def test_analyze_errors_and_cli(study, tmp_path, capsys):
    with pytest.raises(InputError, match="ratings"):
        analyze_study(study, tmp_path / "none")
    _rate(study, "only", lambda t: t["kind"])
    moved = tmp_path / "elsewhere.json"
    (study / "key" / "answer_key.json").rename(moved)
    assert main(["reader-study", "analyze", str(study), "--out", str(tmp_path / "rep")]) == 1
    assert "answer key not found" in capsys.readouterr().err
    assert main(["reader-study", "analyze", str(study), "--out", str(tmp_path / "rep"), "--key", str(moved),
                 "--csv"]) == 0
    assert "accuracy 100.0 %" in capsys.readouterr().out
    assert (tmp_path / "rep" / "ratings.csv").exists()
