"""``output_files`` (what the input guard checks before a run) names exactly the files an output writes."""
from __future__ import annotations

import json

import pytest

from synthesize.generate import GenerateOptions, output_files


@pytest.mark.parametrize("extra, options", [
    (["--label-map", "--preview"], dict(label_map=True, preview=True)),
    (["--method", "ca", "--save-steps", "3,6"], dict(method="ca", save_steps=(3, 6))),
])
def test_output_files_match_what_is_written(cli, phantom_case, tmp_path, extra, options):
    ct, labels = phantom_case
    out = tmp_path / "out"
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--size-mm", "8-10", "--out", out,
                       "--quiet", *extra)
    assert code == 0, err
    (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    expected = output_files(record["output_id"], GenerateOptions(organ="liver", **options))
    assert sorted(record["outputs"].values()) == sorted(expected)
    assert {p.name for p in out.iterdir()} == {*expected, "manifest.jsonl", "run.json"}


# ---------------------------------------------------------------- one naming rule for generate, predict, evaluate
# tumorsyn.io.names: <case>_<role>, the case id as tumorsyn.io.cases derives it, a role word never doubled.

def _generate_one(cli, ct, labels, out, *extra):
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--size-mm", "8-10", "--out", out,
                       "--quiet", *extra)
    assert code == 0, err
    (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return record


@pytest.mark.parametrize("ct_name, case_id, ct_out, tumour_out", [
    ("3Dircadb1.7/ct.nii.gz", "3Dircadb1.7", "3Dircadb1.7_ct.nii.gz", "3Dircadb1.7_tumor.nii.gz"),  # was ct_ct
    ("p1_ct.nii.gz", "p1_ct", "p1_ct.nii.gz", "p1_tumor.nii.gz"),  # was p1_ct_ct, p1_ct_tumor
    ("liver_7.nii.gz", "liver_7", "liver_7_ct.nii.gz", "liver_7_tumor.nii.gz"),  # unchanged
    ("liver_7_0000.nii.gz", "liver_7", "liver_7_ct.nii.gz", "liver_7_tumor.nii.gz"),  # unchanged
])
def test_generate_names_outputs_by_the_one_rule(cli, tmp_path, ct_name, case_id, ct_out, tumour_out):
    from generate_helpers import write_phantom

    ct, labels = write_phantom(tmp_path / "in", ct_name=ct_name, labels_name="seg/liver.nii.gz")
    record = _generate_one(cli, ct, labels, tmp_path / "out", "--label-map")
    assert record["case_id"] == case_id
    label_out = tumour_out.replace("_tumor.", "_label.")
    assert record["outputs"] == {"ct": ct_out, "tumor": tumour_out, "label": label_out}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {ct_out, tumour_out, label_out, "manifest.jsonl",
                                                             "run.json"}


def test_generate_outputs_read_back_as_one_case(cli, tmp_path):
    """<id>_ct + <id>_tumor written for p1_ct.nii.gz are one case of the pairs layout (p1), as evaluate reads them."""
    from generate_helpers import write_phantom

    from tumorsyn.io.layouts import discover_cases
    from tumorsyn.metrics.dataset import case_id_from_name

    ct, labels = write_phantom(tmp_path / "in", ct_name="p1_ct.nii.gz", labels_name="p1_seg.nii.gz")
    _generate_one(cli, ct, labels, tmp_path / "out")
    (case,) = discover_cases(tmp_path / "out")
    assert (case.case_id, case.ct.name) == ("p1", "p1_ct.nii.gz")
    assert case_id_from_name("p1_tumor.nii.gz") == "p1"


def test_two_cases_one_file_name_is_refused(cli, tmp_path):
    from generate_helpers import write_phantom

    rows = ["ct,labels"]
    for k, name in enumerate(("a", "a_ct")):
        ct, labels = write_phantom(tmp_path / "in", seed=k, ct_name=f"{name}.nii.gz", labels_name=f"{name}_m.nii.gz")
        rows.append(f"{ct},{labels}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    code, _, err = cli("generate", "--dataset", tmp_path / "cases.csv", "--organ", "liver", "--out", tmp_path / "out")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "outputs a and a_ct would both be written as a_ct.nii.gz" in err
    assert not (tmp_path / "out").exists()


def test_output_name_rule():
    from tumorsyn.io.names import case_id_of_file, output_name

    assert output_name("3Dircadb1.7", "ct") == "3Dircadb1.7_ct.nii.gz"
    assert output_name("p1_ct", "ct") == "p1_ct.nii.gz" and output_name("p1_ct", "tumor") == "p1_tumor.nii.gz"
    assert output_name("p1_tumor", "tumor") == "p1_tumor.nii.gz"
    assert output_name("ct", "ct") == "ct_ct.nii.gz"  # nothing would be left of the id: kept whole
    assert output_name("x", "ct", "") == "x_ct" and output_name("x", "tumor", ".dcm") == "x_tumor.dcm"
    assert case_id_of_file("p1_ct_tumor") == "p1_ct" and case_id_of_file("liver_7_0000") == "liver_7"
    with pytest.raises(ValueError):
        output_name("x", "mask")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from segment.config import load_config
    from segment.train import train
    from tests.segment.segment_helpers import tiny_config

    tmp = tmp_path_factory.mktemp("names_model")
    return train(load_config(None, data=tiny_config(tmp, steps=1)), quiet=True)


def test_predict_and_evaluate_use_the_same_rule(cli, tmp_path, tiny_model):
    """generate's tumour, predict's outputs and evaluate's case ids agree for 3Dircadb1.7/ct and p1_ct inputs."""
    import shutil

    from generate_helpers import write_phantom

    refs = tmp_path / "refs"
    refs.mkdir()
    cts = []
    for k, ct_name in enumerate(("3Dircadb1.7/ct.nii.gz", "p/p1_ct.nii.gz")):
        ct, labels = write_phantom(tmp_path / "in", seed=k, ct_name=ct_name, labels_name=f"seg{k}.nii.gz")
        record = _generate_one(cli, ct, labels, tmp_path / f"gen{k}")
        shutil.copy(tmp_path / f"gen{k}" / record["outputs"]["tumor"], refs / record["outputs"]["tumor"])
        cts.append(tmp_path / f"gen{k}" / record["outputs"]["ct"])
    assert sorted(p.name for p in refs.iterdir()) == ["3Dircadb1.7_tumor.nii.gz", "p1_tumor.nii.gz"]
    # predict names the generated CTs' outputs by the same rule ...
    code, _, err = cli("segment", "predict", "--model", tiny_model, *cts, "--out", tmp_path / "pred", "--quiet",
                       "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "3Dircadb1.7_organ.nii.gz", "3Dircadb1.7_tumor.nii.gz", "p1_organ.nii.gz", "p1_tumor.nii.gz"]
    # ... and evaluate pairs them with the references by it, reading predict's folder as it is.
    code, _, err = cli("evaluate", "--pred", tmp_path / "pred", "--ref", refs, "--organ-mask", tmp_path / "pred",
                       "--out", tmp_path / "report", "--workers", "1", "--no-plots")
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted(c["case_id"] for c in report["cases"]) == ["3Dircadb1.7", "p1"]
