"""benchmarks/bench_example_figures.py: generators side by side on issue 16's figures in the bundled example."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_example_figures as bench  # noqa: E402


class _Reference:
    """Stands in for HeldoutReference (no real data needed): four real rows, on every grid."""

    def __init__(self, config):
        self.native = [{"contrast_noise": c, "internal_iqr_noise": s, "edge_sharpness": e, "edge_gradient_noise_per_mm": -1.0,
                        "contrast_hu": -30.0, "internal_iqr_hu": 15.0}
                       for c, s, e in ((-4.0, 1.0, 0.7), (-3.5, 1.2, 0.75), (-3.0, 1.4, 0.8), (-2.5, 1.6, 0.85),
                                       (-2.0, 1.8, 0.9))]
        self.on_grid = {}

    def __call__(self, spacing_mm):
        return self.native

    def rows_on_grid(self, spacing_mm):
        return [{**row, "equivalent_diameter_mm": d, "has_ct": True} for row, d in zip(self.native, (6, 9, 12, 15, 18))]


def test_side_by_side_rows_tables_and_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "HeldoutReference", _Reference)
    monkeypatch.setattr(bench, "load_config", lambda path: {})
    out = tmp_path / "figures.json"
    assert bench.main(["--generators", "rules,ca", "--n", "1", "--seeds", "0,1", "--sizes", "uniform",
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no --model: the diffusion row is skipped" not in printed  # diffusion was not asked for
    assert printed.count("| rules |") == 4 and printed.count("| ca |") == 4  # two seeds, pooled, descriptors
    assert "every descriptor of tumorsyn realism against the 5 held-out real early tumours" in printed
    saved = json.loads(out.read_text())
    assert set(saved["runs"]) == {"0", "1"} and set(saved["pooled"]) == {"rules", "ca"}
    assert set(saved["descriptors_liver"]) == {"rules", "ca"}
    assert saved["descriptors_liver"]["rules"]["n_syn"] >= 1 and saved["descriptors_liver"]["rules"]["n_real"] == 5
    for seed in ("0", "1"):
        for organ in bench.ORGANS:
            cell = saved["runs"][seed]["rules"][organ]
            assert len(cell["tumours"]) == 1 and set(bench.FIGURES) <= set(cell["figures"])
    # Seeds draw different tumours; one seed draws the same ones again.
    assert saved["runs"]["0"]["rules"]["liver"]["tumours"] != saved["runs"]["1"]["rules"]["liver"]["tumours"]
    again = bench.run_generator("rules", model=None, n=1, seed=0, reference=_Reference(None))
    assert json.dumps(again["liver"]["tumours"]) == json.dumps(saved["runs"]["0"]["rules"]["liver"]["tumours"])  # NaN too


def test_unknown_generator_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--generators", "gan"])
    assert "unknown generator(s) gan" in capsys.readouterr().err


def test_heldout_host_writes_into_the_held_out_region_on_its_own_grid(tmp_path, monkeypatch, capsys):
    """--heldout-host: the generators' liver tumours in the held-out scan region (a phantom stands in), compared with
    that region's real tumours; the temporary NIfTI files are gone afterwards."""
    from tests.conftest import make_phantom

    ct, organ, spacing = make_phantom(shape=(48, 48, 32), radii_mm=(20.0, 18.0, 18.0), seed=5)
    real_tumour = np.zeros_like(organ)
    real_tumour[10:14, 24:28, 14:18] = organ[10:14, 24:28, 14:18]
    scan = {"case_id": "phantom", "hu": ct, "organ": organ & ~real_tumour, "tumour": real_tumour,
            "spacing_mm": tuple(spacing), "organ_name": "liver"}
    written = []

    def scans(config):
        return [scan]

    real = _Reference(None).rows_on_grid(None)
    monkeypatch.setattr(bench, "HeldoutReference", _Reference)
    monkeypatch.setattr(bench, "load_config", lambda path: {})
    monkeypatch.setattr(bench, "heldout_scans", scans)
    monkeypatch.setattr(bench, "holdout_native_rows", lambda config: real)
    original = bench.HeldoutHost.__init__

    def remember(self, config, folder):
        original(self, config, folder)
        written.append(folder)

    monkeypatch.setattr(bench.HeldoutHost, "__init__", remember)
    out = tmp_path / "figures.json"
    monkeypatch.setattr(bench, "early_liver_pool", lambda workers=1: np.array([7.0, 9.0, 11.0]))
    assert bench.main(["--generators", "rules", "--n", "2", "--seeds", "0,1", "--heldout-host", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out host: phantom's held-out region, liver, 1 x 1 x 1.5 mm; 5 real tumours there" in printed
    assert "on the held-out scan's own grid (pooled)" in printed
    saved = json.loads(out.read_text())["heldout_host"]
    assert saved["host"] == {"case": "phantom", "spacing_mm": [1.0, 1.0, 1.5]}
    assert set(saved["runs"]) == {"0", "1"} and set(saved["pooled"]) == {"rules"}
    rows = saved["runs"]["0"]["rules"]["tumours"]
    assert len(rows) == 2 and all(r["visible"] for r in rows) and set(bench.FIGURES) <= set(saved["pooled"]["rules"]["figures"])
    assert saved["descriptors_liver"]["rules"]["n_real"] == 5
    assert written and not any(p.exists() for p in written)  # the scan's copy is not left behind
    # --sizes real (the default): the held-out host's tumours are asked for the example's targets, seed by seed.
    targets = json.loads(out.read_text())["targets_mm"]
    for seed in ("0", "1"):
        for row, target in zip(saved["runs"][seed]["rules"]["tumours"], targets[seed]):
            assert target / 1.05 - 0.01 <= row["size_mm"] <= target * 1.05 + 0.01  # size_mm is rounded to 0.01


def test_real_sizes_are_one_list_for_every_generator_and_organ(tmp_path, monkeypatch, capsys):
    """--sizes real: tumour i of rules, CA and every organ is asked for the same target diameter, drawn from the
    real pool (jittered by 5 %, inside the class) and recorded; a seed draws its own list, again the same."""
    monkeypatch.setattr(bench, "HeldoutReference", _Reference)
    monkeypatch.setattr(bench, "load_config", lambda path: {})
    pool = np.array([6.0, 8.0, 10.0, 13.0])
    monkeypatch.setattr(bench, "early_liver_pool", lambda workers=1: pool)
    out = tmp_path / "figures.json"
    assert bench.main(["--generators", "rules,ca", "--n", "2", "--seeds", "0,1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sizes: drawn from 4 real early liver tumours of the calibration half, median 9.0 mm" in printed
    assert "at real early liver tumours' sizes" in printed
    saved = json.loads(out.read_text())
    assert saved["sizes"] == "real"
    targets = saved["targets_mm"]
    assert targets["0"] == bench.size_targets(pool, 2, 0) and targets["0"] != targets["1"]
    for seed, listed in targets.items():
        assert len(listed) == 2
        assert all(any(abs(t / d - 1.0) < 0.25 for d in pool) for t in listed)
        for name in ("rules", "ca"):
            for organ in bench.ORGANS:
                sizes = [row["size_mm"] for row in saved["runs"][seed][name][organ]["tumours"]]
                assert all(t / 1.05 - 0.01 <= s <= t * 1.05 + 0.01 for s, t in zip(sizes, listed)), (name, organ)


def test_real_sizes_without_real_data_fall_back_to_uniform(monkeypatch, capsys):
    monkeypatch.setattr(bench, "HeldoutReference", _Reference)
    monkeypatch.setattr(bench, "load_config", lambda path: {})
    monkeypatch.setattr(bench, "early_liver_pool", lambda workers=1: None)
    assert bench.main(["--generators", "rules", "--n", "1"]) == 0
    printed = capsys.readouterr().out
    assert "sizes: no real calibration tumours to draw from (real data absent): uniform in 5-20 mm" in printed
    assert "tumours per organ, of 5-20 mm" in printed
