"""One case reader: the naming rule, the layouts (mask folders, pairs, registered ones) and the mask reader."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import real_path
from tumorsyn.errors import InputError
from tumorsyn.io.cases import Case, case_ids, cases_from_entries, read_case_masks, require_label_maps
from tumorsyn.io.layouts import LAYOUTS, discover_cases, register_layout


def _nifti(path, data, spacing=(1.0, 1.0, 2.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.diag([*spacing, 1.0])), str(path))
    return path


def _patient(folder, *, tumour=True, with_ct=True):
    """A tiny ``<patient>/ct.nii.gz`` + ``masks/`` case: liver block, a tumour in it, two kidneys."""
    shape = (12, 10, 8)
    if with_ct:
        ct = np.full(shape, 40, np.int16)
        ct[0] = -1000  # air beside the body: a CT's HU range
        _nifti(folder / "ct.nii.gz", ct)
    liver = np.zeros(shape, np.uint8)
    liver[2:8, 2:8, 2:6] = 1
    _nifti(folder / "masks" / "liver.nii.gz", liver)
    tumor = np.zeros(shape, np.uint8)
    if tumour:
        tumor[4:6, 4:6, 3:5] = 1
        _nifti(folder / "masks" / "livertumor01.nii.gz", tumor)
    for side, x in (("leftkidney", 9), ("rightkidney", 10)):
        kidney = np.zeros(shape, np.uint8)
        kidney[x, 1:3, 1:3] = 1
        _nifti(folder / "masks" / f"{side}.nii.gz", kidney)
    stray = np.zeros(shape, np.uint8)
    stray[0, 0, 0] = 1
    _nifti(folder / "masks" / "tumor.nii.gz", stray)  # names no organ: never a liver tumour


@pytest.mark.parametrize("paths, expected", [
    (["d/liver_7_0000.nii.gz", "d/liver_8.nii.gz"], ["liver_7", "liver_8"]),          # file names, as before
    (["p1/ct.nii.gz", "p2/ct.nii.gz"], ["p1", "p2"]),                               # issue 19
    (["a/liver.nii.gz", "b/liver.nii.gz", "c/kidney.nii.gz"], ["a", "b", "kidney"]),  # repeats named by folder
    (["a/x/ct.nii.gz", "b/x/ct.nii.gz"], ["a_x", "b_x"]),                           # the nearest folders that differ
    (["3Dircadb1.7/image.nii.gz"], ["3Dircadb1.7"]),                                # generic scan names
    (["ds/imagesTr/ct.nii.gz"], ["ct"]),                                            # imagesTr never names a case
    (["same/ct.nii.gz", "same/ct.nii.gz"], ["same", "same"]),                       # left for the caller to refuse
])
def test_case_ids(paths, expected):
    assert case_ids(paths) == expected


def test_csv_of_patient_folders_named_by_folder(tmp_path):
    """Issue 19: every scan is <patient>/ct.nii.gz; the old reader refused 'case id ct appears twice'."""
    table = tmp_path / "cases.csv"
    table.write_text("ct,labels\np1/ct.nii.gz,p1/labels.nii.gz\np2/ct.nii.gz,p2/labels.nii.gz\n")
    assert [(c.case_id, c.ct) for c in discover_cases(table)] == [("p1", tmp_path / "p1" / "ct.nii.gz"),
                                                                  ("p2", tmp_path / "p2" / "ct.nii.gz")]
    # A case_id column still wins, and a repeated given id is still refused.
    table.write_text("ct,labels,case_id\np1/ct.nii.gz,a.nii.gz,x\np2/ct.nii.gz,b.nii.gz,x\n")
    with pytest.raises(InputError, match="case id x appears twice"):
        discover_cases(table)


def test_dataset_json_with_repeated_names(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [
        {"image": "./a/image.nii.gz", "label": "./a/label.nii.gz"},
        {"image": "./b/image.nii.gz", "label": "./b/label.nii.gz"}]}))
    assert [c.case_id for c in discover_cases(tmp_path)] == ["a", "b"]


def test_mask_folders_layout(tmp_path):
    _patient(tmp_path / "data" / "p1")
    _patient(tmp_path / "data" / "p2", tumour=False)
    cases = discover_cases(tmp_path / "data")
    assert [c.case_id for c in cases] == ["p1", "p2"]
    assert cases[0].labels is None and dict(cases[0].masks)["liver"].name == "liver.nii.gz"
    scan, liver, tumour = read_case_masks(cases[0], "liver")
    assert liver.sum() == 6 * 6 * 4 and tumour.sum() == 2 * 2 * 2 and not tumour[0, 0, 0]
    _, kidney, no_tumour = read_case_masks(cases[0], "kidney")
    assert kidney.sum() == 2 * 2 * 2 and not no_tumour.any()  # left and right kidney together
    assert not read_case_masks(cases[1], "liver")[2].any()
    assert not read_case_masks(cases[0], "liver", lesions=False)[2].any()
    with pytest.raises(InputError, match="no pancreas mask among"):
        read_case_masks(cases[0], "pancreas")
    # Commands that read one label map per scan say so, naming the case.
    with pytest.raises(InputError, match="case p1 has separate masks, not one label map; tumorsyn generate"):
        require_label_maps(cases, command="tumorsyn generate")


def test_mask_folder_without_ct_is_refused(tmp_path):
    _patient(tmp_path / "data" / "p1")
    _patient(tmp_path / "data" / "p3", with_ct=False)
    with pytest.raises(InputError, match=r"p3: case folder holds no CT file beside its masks"):
        discover_cases(tmp_path / "data")


def test_generate_refuses_a_mask_folder_dataset(tmp_path, capsys):
    from tumorsyn.cli.main import main

    _patient(tmp_path / "data" / "p1")
    code = main(["generate", "--dataset", str(tmp_path / "data"), "--organ", "liver", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "case p1 has separate masks, not one label map; tumorsyn generate" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_pairs_layout(tmp_path):
    for name in ("a_ct.nii.gz", "a_tumor.nii.gz", "b_ct.nii.gz", "b_mask.nii.gz"):
        _nifti(tmp_path / name, np.zeros((2, 2, 2), np.uint8))
    cases = discover_cases(tmp_path, layouts=("pairs",))
    assert [(c.case_id, c.tumor_masks[0].name) for c in cases] == [("a", "a_tumor.nii.gz"), ("b", "b_mask.nii.gz")]
    (tmp_path / "b_mask.nii.gz").unlink()
    with pytest.raises(InputError, match="b_ct.nii.gz has no b_tumor.nii.gz"):
        discover_cases(tmp_path)


def test_a_new_layout_is_one_function(tmp_path):
    """A layout registered from outside: ``<id>.scan.nii.gz`` + ``<id>.seg.nii.gz`` in one folder."""
    def detect(path):
        return path.is_dir() and any(p.name.endswith(".scan.nii.gz") for p in path.iterdir())

    def read(path):
        return [Case(p.name[: -len(".scan.nii.gz")], p, p.with_name(p.name.replace(".scan.", ".seg.")))
                for p in sorted(path.glob("*.scan.nii.gz"))]

    (tmp_path / "k1.scan.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="not a dataset: expected a CSV file"):
        discover_cases(tmp_path)
    layout = register_layout("scan-seg", detect, read, description="<id>.scan + <id>.seg files")
    try:
        (case,) = discover_cases(tmp_path)
        assert case.case_id == "k1" and case.labels.name == "k1.seg.nii.gz"
        with pytest.raises(ValueError, match="already registered"):
            register_layout("scan-seg", detect, read, description="again")
    finally:
        LAYOUTS.remove(layout)


def test_config_entries_follow_the_one_rule(tmp_path):
    """segment and train-diffusion name entries alike (they differed for image.nii.gz and for repeats)."""
    entries = [{"ct": tmp_path / "p1" / "image.nii.gz", "labels": tmp_path / "p1" / "l.nii.gz"},
               {"ct": tmp_path / "p2" / "image.nii.gz", "organ": tmp_path / "p2" / "liver.nii.gz",
                "tumor": str(tmp_path / "p2" / "t.nii.gz")},
               {"ct": tmp_path / "p3" / "ct.nii.gz", "labels": tmp_path / "p3" / "l.nii.gz", "id": "own"}]
    cases = cases_from_entries(entries, source="data.real", label_preset="decathlon")
    assert [c.case_id for c in cases] == ["p1", "p2", "own"]
    assert [c.label_preset for c in cases] == ["decathlon", "binary", "decathlon"]
    assert cases[1].organ_mask.name == "liver.nii.gz" and [t.name for t in cases[1].tumor_masks] == ["t.nii.gz"]
    # train-diffusion: "organ" names the organ, not a mask
    (td,) = cases_from_entries([{"ct": tmp_path / "p1" / "image.nii.gz", "labels": "l.nii.gz", "organ": "liver"}],
                               organ_mask_key=None)
    assert td.case_id == "p1" and td.organ_mask is None and td.label_preset == "binary"


def test_segment_sources_read_patient_folders(tmp_path):
    from segment.data import source_cases

    _patient(tmp_path / "data" / "p1")
    _patient(tmp_path / "data" / "p2")
    entries = [{"ct": str(tmp_path / "data" / p / "ct.nii.gz"), "organ": str(tmp_path / "data" / p / "masks" / "liver.nii.gz")}
               for p in ("p1", "p2")]
    # a dataset of mask folders, and two entries whose scans are both ct.nii.gz
    assert [c.case_id for c in source_cases({"dataset": str(tmp_path / "data")}, "data.real")] == ["p1", "p2"]
    assert [c.case_id for c in source_cases({"cases": entries}, "data.real")] == ["p1", "p2"]


@pytest.mark.real
def test_ircadb_patient_folders_as_a_dataset(tmp_path):
    """3D-IRCADb's own layout (links to patients 1 and 7): ids from the folders, masks found by name."""
    data = tmp_path / "ircad"
    data.mkdir()
    for patient in ("3Dircadb1.1", "3Dircadb1.7"):
        (data / patient).symlink_to(real_path("3dircadb1", patient), target_is_directory=True)
    p1, p7 = discover_cases(data)
    assert (p1.case_id, p7.case_id) == ("3Dircadb1.1", "3Dircadb1.7")
    _, liver, tumours = read_case_masks(p1, "liver")
    assert liver.any() and tumours.any() and not (tumours & ~liver).sum() > 0.05 * tumours.sum()
    # patient 7's only tumour mask is called 'tumor' and lies outside the liver: not a liver tumour
    assert not read_case_masks(p7, "liver")[2].any()
