"""benchmarks/realdata.py: the real tumours' calibration/test split and its refusals."""
from __future__ import annotations

import sys

import pytest

from tests.conftest import REAL, REPO, real_path

sys.path.insert(0, str(REPO / "benchmarks"))
import realdata  # noqa: E402


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(realdata, "_CACHE", {})


def test_lits_split_is_by_slab():
    assert realdata.lits_split(63.99) == "calibration"
    assert realdata.lits_split(64.0) == "test"


def test_kidney_has_no_real_tumours(monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(tmp_path))  # nothing there: nothing may be read
    assert realdata.real_lesion_rows("kidney", "all") == []


@pytest.mark.parametrize("organ, split", [("lung", "all"), ("liver", "train")])
def test_unknown_organ_or_split_refused(organ, split):
    with pytest.raises(ValueError, match="unknown"):
        realdata.real_lesion_rows(organ, split)


def test_absent_data_named(monkeypatch, tmp_path, fresh_cache):
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(tmp_path))
    assert set(realdata.missing_sources()) == set(realdata.SOURCES)
    assert set(realdata.missing_sources("pancreas")) == {"msd_pancreas"}
    with pytest.raises(realdata.RealDataMissing, match=str(tmp_path / "lits117")):
        realdata.real_lesion_rows("liver", "test")


def test_lits_rows_follow_the_split(monkeypatch, fresh_cache):
    real_path("lits117", "label.nii.gz")
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(REAL))
    rows = realdata.real_lesion_rows("liver", "all", sources=("lits117",), workers=1)
    assert rows and all(r["source"] == "lits117" and r["has_ct"] and r["voxels"] >= realdata.MIN_VOXELS for r in rows)
    for row in rows:
        assert row["split"] == ("calibration" if row["centroid_z_vox"] < 64 else "test")
    test = realdata.real_lesion_rows("liver", "test", sources=("lits117",))
    calib = realdata.real_lesion_rows("liver", "calibration", sources=("lits117",))
    assert len(test) + len(calib) == len(rows) and test and calib
    test[0]["size_class"] = "changed"  # callers get copies: the cache stays as described
    assert realdata.real_lesion_rows("liver", "test", sources=("lits117",))[0]["size_class"] != "changed"


def test_lits_rows_on_a_coarser_grid_keep_each_lesions_split(monkeypatch, fresh_cache):
    real_path("lits117", "label.nii.gz")
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(REAL))
    native = realdata.real_lesion_rows("liver", "all", sources=("lits117",), workers=1)
    coarse = realdata.lits_rows_on_grid((3.0, 3.0, 3.0))
    assert coarse and len(coarse) < len(native)  # the smallest lesions do not survive 3 mm voxels
    assert all(r["spacing_mm"] == (3.0, 3.0, 3.0) and r["split"] in ("calibration", "test") for r in coarse)
    split_native = {r["lesion_id"]: r["split"] for r in native}
    assert all(r["split"] == split_native[r["lesion_id"]] for r in coarse)  # the same lesion, the same half
    test = realdata.lits_rows_on_grid((3.0, 3.0, 3.0), "test")
    assert test and {r["lesion_id"] for r in test} < {r["lesion_id"] for r in coarse}
    with pytest.raises(ValueError, match="unknown split"):
        realdata.lits_rows_on_grid((3.0, 3.0, 3.0), "train")
