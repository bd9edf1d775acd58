"""Case ids from file names, pairing, and CSV inputs."""
import nibabel as nib
import numpy as np
import pytest

from tumorsyn.errors import InputError
from tumorsyn.metrics import case_id_from_name, list_cases, pair_cases, sha256_file


@pytest.mark.parametrize("name, expected", [
    ("case_001.nii.gz", "case_001"), ("case_001_0000.nii.gz", "case_001"), ("case_001_pred.nii", "case_001"),
    ("liver_3_seg.nii.gz", "liver_3"), ("p1_tumor_label.nii.gz", "p1"), ("_seg.nii.gz", "_seg"),
    ("case_0001.nii.gz", "case_0001"),  # only a trailing "_0000" is a channel suffix
])
def test_case_ids(name, expected):
    assert case_id_from_name(name) == expected


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), str(path))


def test_duplicate_ids_and_empty_folders(tmp_path):
    _touch(tmp_path / "a" / "c1.nii.gz")
    _touch(tmp_path / "a" / "c1_pred.nii.gz")
    with pytest.raises(InputError, match="both give case id c1"):
        list_cases(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .nii"):
        list_cases(tmp_path / "empty")


def test_csv_and_pairing(tmp_path):
    _touch(tmp_path / "r" / "c1.nii.gz")
    _touch(tmp_path / "elsewhere" / "x.nii.gz")
    (tmp_path / "p.csv").write_text("case_id,path\nc1,elsewhere/x.nii.gz\n")
    (cp,) = pair_cases(tmp_path / "r", tmp_path / "p.csv")
    assert cp.case_id == "c1" and cp.prediction == tmp_path / "elsewhere" / "x.nii.gz"
    (tmp_path / "bad.csv").write_text("id,file\nc1,x\n")
    with pytest.raises(InputError, match="case_id,path"):
        list_cases(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="case c1: no organ mask"):
        pair_cases(tmp_path / "r", tmp_path / "p.csv", tmp_path / "elsewhere")


def test_sha256_of_file_and_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"abc")
    assert sha256_file(tmp_path / "d" / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    before = sha256_file(tmp_path / "d")
    (tmp_path / "d" / "b").write_bytes(b"")
    assert sha256_file(tmp_path / "d") != before
