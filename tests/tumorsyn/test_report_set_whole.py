"""A report is written as one set: a failed write (full disk) leaves the old report or nothing, in one line."""
from __future__ import annotations

import errno
import pathlib

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.cli.main import main
from tumorsyn.errors import InputError
from tumorsyn.io.writers import atomic_group, atomic_path


def _case(tmp_path):
    mask = np.zeros((24, 24, 8), np.uint8)
    mask[4:10, 4:10, 2:5] = 1
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(mask, np.diag([1.0, 1.0, 2.0, 1.0])), str(tmp_path / folder / "c1.nii.gz"))
    return tmp_path / "ref", tmp_path / "pred"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.fixture
def full_disk_on_json(monkeypatch):
    """Writing report.json (the last file of the set) fails as on a full disk."""
    original = pathlib.Path.write_text

    def write_text(self, data, *args, **kwargs):
        if data.startswith("{"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def test_full_disk_leaves_no_partial_report(tmp_path, capsys, full_disk_on_json):
    ref, pred = _case(tmp_path)
    out = tmp_path / "report"
    code = main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(out) in err
    assert _files(out) == {}  # no lesions.csv without report.json, no temporary files


def test_full_disk_keeps_the_previous_report(tmp_path, capsys, monkeypatch):
    ref, pred = _case(tmp_path)
    out = tmp_path / "report"
    args = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(args) == 0
    before = _files(out)
    assert {"report.json", "report.md", "lesions.csv"} <= set(before)
    original = pathlib.Path.write_text
    monkeypatch.setattr(pathlib.Path, "write_text", lambda self, data, *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")) if data.startswith("{") else original(self, data, *a, **k))
    assert main(args) == 1
    assert _files(out) == before
    capsys.readouterr()


def test_atomic_group_renames_all_or_none(tmp_path):
    with pytest.raises(InputError, match="No space"):
        with atomic_group() as stage:
            stage(tmp_path / "a.txt").write_text("a")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with atomic_group() as stage:
        stage(tmp_path / "a.txt").write_text("a")
        stage(tmp_path / "b.txt").write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_atomic_path_onto_a_folder_is_one_line(tmp_path):
    (tmp_path / "x_ct.nii.gz").mkdir()
    with pytest.raises(InputError, match="cannot write output"):
        with atomic_path(tmp_path / "x_ct.nii.gz") as tmp:
            tmp.write_bytes(b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["x_ct.nii.gz"]
