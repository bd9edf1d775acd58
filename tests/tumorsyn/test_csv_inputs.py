"""CSV inputs: Excel's byte-order mark, columns by header name in any order, and the missing column named."""
from __future__ import annotations

import pytest

from tumorsyn.errors import InputError
from tumorsyn.io.datasets import discover_cases

BOM = "\ufeff"


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_dataset_csv_with_bom_reads_its_header(tmp_path):
    table = _write(tmp_path / "cases.csv", f"{BOM}ct,labels\nscans/a.nii.gz,scans/a_seg.nii.gz\n")
    (case,) = discover_cases(table)
    assert case.case_id == "a" and case.ct == tmp_path / "scans" / "a.nii.gz"


def test_dataset_csv_columns_by_name_in_any_order(tmp_path):
    table = _write(tmp_path / "cases.csv", f"{BOM} Labels ,notes,CASE_ID,ct\nb_seg.nii.gz,x,first,b.nii.gz\n"
                                           "c_seg.nii.gz,y,,c.nii.gz\n")
    cases = discover_cases(table)
    assert [(c.case_id, c.ct.name, c.labels.name) for c in cases] == [("c", "c.nii.gz", "c_seg.nii.gz"),
                                                                      ("first", "b.nii.gz", "b_seg.nii.gz")]


def test_dataset_csv_without_header_stays_positional(tmp_path):
    table = _write(tmp_path / "cases.csv", "d.nii.gz,d_seg.nii.gz\ne.nii.gz,e_seg.nii.gz,own_id\n")
    assert [(c.case_id, c.labels.name) for c in discover_cases(table)] == [("d", "d_seg.nii.gz"),
                                                                          ("own_id", "e_seg.nii.gz")]


@pytest.mark.parametrize("text, message", [
    ("ct,case_id\na.nii.gz,a\n", "CSV header ct,case_id lacks the column 'labels'"),
    ("case_id,labels\na,a_seg.nii.gz\n", "lacks the column 'ct'"),
    ("ct,labels\na.nii.gz,\n", "line 2: no value in column 'labels'"),
    ("ct,labels,ct\na,b,c\n", "names column 'ct' twice"),
])
def test_dataset_csv_says_what_is_missing(tmp_path, text, message):
    table = _write(tmp_path / "cases.csv", text)
    with pytest.raises(InputError, match=message) as info:
        discover_cases(table)
    assert str(info.value).startswith(f"{table}: ")


def test_dataset_csv_not_utf8(tmp_path):
    table = tmp_path / "cases.csv"
    table.write_bytes("ct,labels\nbüro.nii.gz,b.nii.gz\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text"):
        discover_cases(table)


def test_evaluate_csv_with_bom_and_any_order(tmp_path):
    from tumorsyn.metrics.dataset import list_cases

    table = _write(tmp_path / "pred.csv", f"{BOM}Path,Case_ID\nx/p1.nii.gz,c1\n")
    assert list_cases(table) == {"c1": tmp_path / "x" / "p1.nii.gz"}
    bad = _write(tmp_path / "bad.csv", f"{BOM}case_id,file\nc1,x\n")
    with pytest.raises(InputError, match="lacks the column 'path'; it needs a header with the columns case_id,path"):
        list_cases(bad)


def test_reader_study_csv_with_bom(tmp_path):
    from reader_study.cases import read_real_sources

    for name in ("ct.nii.gz", "m.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    table = _write(tmp_path / "real.csv", f"{BOM}ct,mask\nct.nii.gz,m.nii.gz\n")
    (source,) = read_real_sources(table)
    assert source.ct == (tmp_path / "ct.nii.gz").resolve()
