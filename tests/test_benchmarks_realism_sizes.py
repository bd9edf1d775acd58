"""benchmarks/bench_realism.py: synthetic tumours drawn at the real tumours' sizes, the same targets for every generator."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_realism as bench  # noqa: E402

EARLY = bench.CLASSES["early"]


def test_targets_come_from_the_pool_and_stay_in_the_class():
    pool = np.array([5.1, 6.0, 7.0, 8.0, 19.9])
    targets = bench.target_diameters(pool, EARLY, 400, np.random.default_rng(0))
    assert len(targets) == 400
    assert all(EARLY[0] * 1.05 <= d <= EARLY[1] / 1.05 for d in targets)
    # Each target lies within a few jitter widths of a pooled size; most of them near 5-8 mm, as in the pool.
    assert all(np.min(np.abs(np.log(d / pool))) < 5 * bench.SIZE_JITTER for d in targets)
    assert 6.0 <= float(np.median(targets)) <= 8.0


def test_targets_repeat_with_the_seed_and_without_a_pool_the_class_decides():
    one, two = (bench.target_diameters(np.array([6.0, 9.0]), EARLY, 5, bench._rng(3, bench.SIZE_STREAM, 0, 0))
                for _ in range(2))
    assert one == two
    assert bench.target_diameters(None, EARLY, 3, np.random.default_rng(0)) == [None, None, None]
    assert bench.size_range(EARLY, None) == EARLY
    lo, hi = bench.size_range(EARLY, 8.0)
    assert lo == pytest.approx(8.0 / 1.05) and hi == pytest.approx(8.4)


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_a_target_size_is_the_written_size(method):
    """The bundled example's liver: a tumour asked at a target diameter is written at it (+-5 %)."""
    from tumorsyn.io import load_labels, load_scan, organ_mask_from_labels
    from tumorsyn.io.labels import label_values
    from tumorsyn.lesion_size import equivalent_diameter_mm

    scan = load_scan(bench.EXAMPLE_DIR / "example_ct.nii.gz")
    liver = organ_mask_from_labels(label_values(load_labels(bench.EXAMPLE_DIR / "example_labels.nii.gz")), "liver")
    host = bench._host("example", "example", "liver", scan.values(), liver, scan.spacing_mm)
    for i, target in enumerate((9.0, 14.0)):
        _, tumour = bench.synth_ours(host, method, bench.size_range(EARLY, target), np.random.default_rng(i))
        assert target / 1.05 - 1e-6 <= equivalent_diameter_mm(tumour, host.spacing_mm) <= target * 1.05 + 1e-6


def _rows(rng, n: int, shift: float = 0.0) -> list[dict]:
    from tumorsyn.metrics.realism.descriptors import DESCRIPTORS

    return [{**{name: float(v) + shift for name, v in zip(DESCRIPTORS, rng.normal(0.0, 1.0, len(DESCRIPTORS)))},
             "equivalent_diameter_mm": 10.0, "organ": "liver", "size_class": "early", "has_ct": True}
            for _ in range(n)]


def test_real_vs_real_descriptor_floor_by_hand():
    """The goal's in-IQR and in-range figures between real collections: same draws inside, far draws outside."""
    rng = np.random.default_rng(0)
    real = _rows(rng, 60)
    alike = bench._descriptor_floor(real, _rows(rng, 60), "early", 0)
    apart = bench._descriptor_floor(real, _rows(rng, 60, shift=10.0), "early", 0)
    assert alike["of"] == apart["of"] > 0
    assert alike["in_iqr"] >= alike["of"] - 2 and alike["in_range"] > 0.8
    assert apart["in_iqr"] == 0 and apart["in_range"] == 0.0 and len(apart["outside_iqr"]) == apart["of"]
    assert bench._iqr_floor(alike).startswith(f" in IQR {alike['in_iqr']} of {alike['of']}, in-range ")
    assert bench._iqr_floor({"auc": 0.7}) == ""
