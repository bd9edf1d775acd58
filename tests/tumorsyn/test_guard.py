"""The one rule every writing command calls: outputs never over, into or instead of inputs; ids are plain names."""
from __future__ import annotations

import os

import pytest

from tumorsyn.errors import InputError
from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside, safe_case_id


@pytest.mark.parametrize("case_id", ["p1", "liver_007", "case-1.b", "a..b", "Ünïcode"])
def test_plain_case_ids_pass(case_id):
    assert safe_case_id(case_id) == case_id


@pytest.mark.parametrize("case_id, problem", [
    ("", "empty"), (" ", "empty"), (" p1", "blank"), ("..", "folder reference"), (".", "folder reference"),
    ("../data/a", "separator"), ("a/b", "separator"), ("a\\b", "separator"), ("/etc/x", "separator"),
    ("a\x00b", "control"), ("a\nb", "control"), ("a\x7fb", "control"),
])
def test_bad_case_ids_are_one_line_errors_naming_the_source(tmp_path, case_id, problem):
    with pytest.raises(InputError) as info:
        safe_case_id(case_id, path=tmp_path / "cases.csv")
    text = str(info.value)
    assert text.startswith(str(tmp_path / "cases.csv")) and problem in text and "\n" not in text


def test_output_path_inside(tmp_path):
    assert output_path_inside(tmp_path, "a_ct.nii.gz") == tmp_path / "a_ct.nii.gz"
    assert output_path_inside(tmp_path, "probabilities/a_pred.nii.gz") == tmp_path / "probabilities" / "a_pred.nii.gz"
    for name in ("../a_ct.nii.gz", "x/../../a.nii.gz", str(tmp_path.parent / "a.nii.gz"), "."):
        with pytest.raises(InputError, match="outside the output folder"):
            output_path_inside(tmp_path, name)


def test_out_folder_that_is_a_file(tmp_path):
    (tmp_path / "f.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="names an existing file"):
        check_out_folder(tmp_path / "f.nii.gz")
    assert check_out_folder(tmp_path / "new") == tmp_path / "new"


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.nii.gz").write_bytes(b"ct")
    (folder / "labels.nii.gz").write_bytes(b"labels")
    return folder


def test_no_collision_passes(data, tmp_path):
    check_outputs_spare_inputs([tmp_path / "out" / "ct.nii.gz", data / "ct_ct.nii.gz"],
                               [data / "ct.nii.gz", data / "labels.nii.gz"])


def test_same_path_spelled_differently(data, tmp_path):
    other_spelling = tmp_path / "in" / "sub" / ".." / "labels.nii.gz"
    with pytest.raises(InputError) as info:
        check_outputs_spare_inputs([other_spelling], [data / "ct.nii.gz", data / "labels.nii.gz"])
    text = str(info.value)
    assert text.startswith(str(other_spelling)) and str(data / "labels.nii.gz") in text and "overwrite" in text


def test_symlinked_input(data, tmp_path):
    link = tmp_path / "link.nii.gz"
    link.symlink_to(data / "ct.nii.gz")
    with pytest.raises(InputError, match="overwrite the input"):
        check_outputs_spare_inputs([data / "ct.nii.gz"], [link])
    # and the other way round: an output name that is a link to an input
    with pytest.raises(InputError, match="overwrite the input"):
        check_outputs_spare_inputs([link], [data / "ct.nii.gz"])


def test_hard_linked_input(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.link(data / "ct.nii.gz", out / "p1_ct.nii.gz")
    with pytest.raises(InputError, match="same file"):
        check_outputs_spare_inputs([out / "p1_ct.nii.gz"], [data / "ct.nii.gz"])


def test_output_inside_an_input_folder(data, tmp_path):
    series = tmp_path / "dicom"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"d")
    with pytest.raises(InputError, match="inside the input folder"):
        check_outputs_spare_inputs([series / "x_ct.nii.gz"], [series, data / "labels.nii.gz"])


def test_folder_replaced_whole_may_not_hold_an_input(data, tmp_path):
    with pytest.raises(InputError, match="holds the input"):
        check_outputs_spare_inputs([], [data / "ct.nii.gz"], folders=[tmp_path])
    check_outputs_spare_inputs([], [data / "ct.nii.gz"], folders=[tmp_path / "run"])


def test_input_matching_a_pattern_the_run_rewrites(data, tmp_path):
    (data / "manifest.jsonl").write_text("{}\n")
    with pytest.raises(InputError, match=r"manifest\*\.jsonl"):
        check_outputs_spare_inputs([], [data / "manifest.jsonl"], patterns=[(data, "manifest*.jsonl")])


def test_output_name_taken_by_a_folder(data, tmp_path):
    (tmp_path / "p1_ct.nii.gz").mkdir()
    with pytest.raises(InputError, match="taken by a folder"):
        check_outputs_spare_inputs([tmp_path / "p1_ct.nii.gz"], [data / "ct.nii.gz"])
