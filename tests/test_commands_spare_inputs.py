"""Every command that writes files refuses, before any work, to write over or inside what it reads.

Each scenario below sets up inputs in ``tmp_path`` and a command line whose outputs would hit one of
them (same name, a symlink or hard link, a DICOM or model folder, a pattern the run rewrites, a
case id that climbs out of ``--out``). The command must exit 1 with one line naming the files, and
``tmp_path`` must be exactly as before: no input changed, nothing written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tumorsyn.cli.main import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CT = REPO / "tumorsyn" / "data" / "example_ct.nii.gz"
EXAMPLE_LABELS = REPO / "tumorsyn" / "data" / "example_labels.nii.gz"


def _ct(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_CT, path)
    return path


def _labels(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_LABELS, path)
    return path


def _state(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by SHA-256, folders and links by kind (symlinks not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = "link -> " + os.readlink(path)
            elif path.is_dir():
                state[rel] = "folder"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# --- tumorsyn generate -------------------------------------------------------------------------------

def generate_label_map_over_labels(d: Path):
    ct, labels = _ct(d / "case7.nii.gz"), _labels(d / "case7_label.nii.gz")
    return ["generate", ct, "--labels", labels, "--label-map", "--organ", "liver", "--out", d], [labels]


def generate_case_id_over_ct(d: Path):
    ct, labels = _ct(d / "p1_ct.nii.gz"), _labels(d / "seg.nii.gz")
    return ["generate", ct, "--labels", labels, "--case-id", "p1", "--organ", "liver", "--out", d], [ct]


def generate_csv_id_over_labels(d: Path):
    _ct(d / "scan.nii.gz")
    labels = _labels(d / "p1_tumor.nii.gz")
    (d / "cases.csv").write_text("ct,labels,case_id\nscan.nii.gz,p1_tumor.nii.gz,p1\n")
    return ["generate", "--dataset", d / "cases.csv", "--organ", "liver", "--out", d], [labels]


def generate_csv_id_traversal(d: Path):
    _ct(d / "data" / "scan.nii.gz")
    _labels(d / "data" / "seg.nii.gz")
    (d / "data" / "cases.csv").write_text("ct,labels,case_id\nscan.nii.gz,seg.nii.gz,../data/a\n")
    return ["generate", "--dataset", d / "data" / "cases.csv", "--organ", "liver", "--out", d / "run"], ["../data/a"]


def generate_case_id_traversal(d: Path):
    ct, labels = _ct(d / "scan.nii.gz"), _labels(d / "seg.nii.gz")
    return ["generate", ct, "--labels", labels, "--case-id", "../scan", "--organ", "liver", "--out", d / "run"], \
        ["../scan"]


def generate_out_is_the_ct(d: Path):
    ct, labels = _ct(d / "scan.nii.gz"), _labels(d / "seg.nii.gz")
    return ["generate", ct, "--labels", labels, "--organ", "liver", "--out", ct], [ct]


def generate_hard_linked_output(d: Path):
    ct, labels = _ct(d / "in" / "scan.nii.gz"), _labels(d / "in" / "seg.nii.gz")
    (d / "out").mkdir()
    os.link(ct, d / "out" / "in_ct.nii.gz")  # in/scan.nii.gz is case "in" (tumorsyn.io.cases.case_ids)
    return ["generate", ct, "--labels", labels, "--organ", "liver", "--out", d / "out"], [ct]


def generate_symlinked_input(d: Path):
    target = _ct(d / "out" / "in_ct.nii.gz")
    labels = _labels(d / "in" / "seg.nii.gz")
    (d / "in" / "scan.nii.gz").symlink_to(target)
    return ["generate", d / "in" / "scan.nii.gz", "--labels", labels, "--organ", "liver", "--out", d / "out"], \
        [d / "in" / "scan.nii.gz"]


def generate_into_dicom_folder(d: Path):
    series = d / "series"
    series.mkdir()
    (series / "IM0001.dcm").write_bytes(b"\0" * 256)
    labels = _labels(d / "seg.nii.gz")
    return ["generate", series, "--labels", labels, "--organ", "liver", "--out", series], [series]


def generate_into_dataset_images(d: Path):
    _ct(d / "ds" / "imagesTr" / "liver_1.nii.gz")
    _labels(d / "ds" / "labelsTr" / "liver_1.nii.gz")
    return ["generate", "--dataset", d / "ds", "--organ", "liver", "--out", d / "ds" / "imagesTr"], \
        [d / "ds" / "imagesTr"]


def generate_input_named_like_a_manifest(d: Path):
    ct, labels = _ct(d / "scan.nii.gz"), _labels(d / "seg.nii.gz")
    (d / "cases.csv").write_text(f"ct,labels\n{ct},{labels}\n")
    os.replace(d / "cases.csv", d / "manifest.old.jsonl")  # a CSV under a name the run rewrites
    return ["generate", "--dataset", d / "manifest.old.jsonl", "--organ", "liver", "--out", d], \
        [d / "manifest.old.jsonl"]


def generate_output_name_is_a_folder(d: Path):
    ct, labels = _ct(d / "in" / "scan.nii.gz"), _labels(d / "in" / "seg.nii.gz")
    (d / "out" / "in_ct.nii.gz").mkdir(parents=True)
    return ["generate", ct, "--labels", labels, "--organ", "liver", "--out", d / "out"], \
        [d / "out" / "in_ct.nii.gz", "folder"]


# --- tumorsyn evaluate -------------------------------------------------------------------------------

def evaluate_report_over_pred_csv(d: Path):
    ref = _labels(d / "ref" / "c1.nii.gz")
    pred = _labels(d / "pred" / "c1.nii.gz")
    (d / "out").mkdir()
    (d / "out" / "lesions.csv").write_text(f"case_id,path\nc1,{pred}\n")
    return ["evaluate", "--pred", d / "out" / "lesions.csv", "--ref", ref.parent, "--out", d / "out"], \
        [d / "out" / "lesions.csv"]


def evaluate_out_is_a_file(d: Path):
    ref, pred = _labels(d / "ref" / "c1.nii.gz"), _labels(d / "pred" / "c1.nii.gz")
    return ["evaluate", "--pred", pred.parent, "--ref", ref.parent, "--out", ref], [ref, "existing file"]


def evaluate_compare_over_its_input(d: Path):
    minimal = {"schema": "tumorsyn.evaluate/1"}
    (d / "a").mkdir()
    (d / "b").mkdir()
    (d / "a" / "compare.json").write_text(json.dumps(minimal))
    (d / "b" / "report.json").write_text(json.dumps(minimal))
    return ["evaluate", "--compare", d / "a" / "compare.json", d / "b", "--out", d / "a"], [d / "a" / "compare.json"]


# --- tumorsyn segment --------------------------------------------------------------------------------

def _fake_model(folder: Path) -> Path:
    # The refusal comes before the model is loaded: a folder with the two file names is enough.
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0")
    return folder


def segment_predict_over_organ_mask(d: Path):
    model = _fake_model(d / "run" / "model")
    ct, organ = _ct(d / "in" / "a.nii.gz"), _labels(d / "in" / "a_organ.nii.gz")
    return ["segment", "predict", ct, "--organ-mask", organ, "--model", model.parent, "--out", d / "in",
            "--device", "cpu"], [organ]


def segment_predict_into_model_folder(d: Path):
    model = _fake_model(d / "run" / "model")
    ct = _ct(d / "in" / "a.nii.gz")
    return ["segment", "predict", ct, "--model", model, "--out", model, "--device", "cpu"], [model]


def segment_train_over_its_config(d: Path):
    run = d / "run"
    run.mkdir()
    ct, labels = _ct(d / "data" / "h0.nii.gz"), _labels(d / "data" / "h0_seg.nii.gz")
    config = run / "config.yaml"
    config.write_text(f"organ: liver\noutput_dir: {run}\ndata:\n  healthy:\n    label_preset: totalsegmentator\n"
                      f"    cases:\n      - {{ct: {ct}, labels: {labels}}}\n")
    return ["segment", "train", config, "--out", run], [config]


# --- tumorsyn train-diffusion ------------------------------------------------------------------------

def train_diffusion_over_its_config(d: Path):
    run = d / "run"
    run.mkdir()
    ct, labels, tumor = _ct(d / "data" / "ct.nii.gz"), _labels(d / "data" / "liver.nii.gz"), \
        _labels(d / "data" / "tumor.nii.gz")
    config = run / "config.yaml"
    config.write_text((REPO / "configs" / "diffusion" / "tiny_test.yaml").read_text())
    return ["train-diffusion", config, "--out", run, "--set",
            f"data.tumor_sources=[{{ct: {ct}, labels: {labels}, tumor: [{tumor}]}}]"], [config]


def train_diffusion_data_inside_the_model_folder(d: Path):
    run = d / "run"
    ct, labels = _ct(run / "model" / "ct.nii.gz"), _labels(run / "model" / "liver.nii.gz")
    tumor = _labels(run / "model" / "tumor.nii.gz")
    return ["train-diffusion", REPO / "configs" / "diffusion" / "tiny_test.yaml", "--out", run, "--set",
            f"data.tumor_sources=[{{ct: {ct}, labels: {labels}, tumor: [{tumor}]}}]"], [run / "model"]


# --- tumorsyn reader-study ---------------------------------------------------------------------------

def reader_study_analyze_over_its_key(d: Path):
    (d / "study").mkdir()
    key = d / "out" / "report.json"
    key.parent.mkdir()
    key.write_text("{}")
    return ["reader-study", "analyze", d / "study", "--key", key, "--out", d / "out"], [key]


def reader_study_build_into_its_inputs(d: Path):
    ct, mask = _ct(d / "in" / "a_ct.nii.gz"), _labels(d / "in" / "a_tumor.nii.gz")
    (d / "in" / "real.csv").write_text(f"ct,mask\n{ct},{mask}\n")
    return ["reader-study", "build", "--real", d / "in" / "real.csv", "--synthetic", d / "in", "--out", d / "in"], \
        [d / "in"]


# --- tumorsyn realism --------------------------------------------------------------------------------

def realism_report_over_its_lesion_csv(d: Path):
    ct, lesion = _ct(d / "in" / "a.nii.gz"), _labels(d / "in" / "a_lesion.nii.gz")
    (d / "out").mkdir()
    listing = d / "out" / "comparison.csv"
    listing.write_text(f"ct,lesion,organ\n{ct},{lesion},liver\n")
    return ["realism", "--real", listing, "--synthetic", listing, "--out", d / "out"], [listing]


# --- tumorsyn nnunet ---------------------------------------------------------------------------------

def nnunet_configure_over_dataset_json(d: Path):
    (d / "in").mkdir()
    dataset_json = d / "in" / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumor": 2}}))
    return ["nnunet", "configure", "--out", dataset_json, "--organ", "liver"], [dataset_json]


SCENARIOS = [
    generate_label_map_over_labels, generate_case_id_over_ct, generate_csv_id_over_labels, generate_csv_id_traversal,
    generate_case_id_traversal, generate_out_is_the_ct, generate_hard_linked_output, generate_symlinked_input,
    generate_into_dicom_folder, generate_into_dataset_images, generate_input_named_like_a_manifest,
    generate_output_name_is_a_folder,
    evaluate_report_over_pred_csv, evaluate_out_is_a_file, evaluate_compare_over_its_input,
    segment_predict_over_organ_mask, segment_predict_into_model_folder, segment_train_over_its_config,
    train_diffusion_over_its_config, train_diffusion_data_inside_the_model_folder,
    reader_study_analyze_over_its_key, reader_study_build_into_its_inputs,
    realism_report_over_its_lesion_csv, nnunet_configure_over_dataset_json,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_command_refuses_to_touch_its_inputs(scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, named = scenario(tmp_path)
    before = _state(tmp_path)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("tumorsyn: error:"), err
    for part in named:
        assert str(part) in err, (part, err)
    assert _state(tmp_path) == before  # no input changed, nothing written, nothing deleted


# The commands above, by name: a new writing command must be walked here too.
WRITING_COMMANDS = {"generate", "evaluate", "segment", "train-diffusion", "reader-study", "realism", "nnunet"}


def test_every_writing_command_is_walked():
    from importlib.metadata import entry_points

    walked = {f.__name__.split("_")[0].replace("reader", "reader-study").replace("train", "train-diffusion")
              for f in SCENARIOS}
    assert walked == WRITING_COMMANDS
    registered = {ep.name for ep in entry_points(group="tumorsyn.commands")}
    assert registered <= WRITING_COMMANDS, f"walk the new command(s) {registered - WRITING_COMMANDS} here"


def test_generate_into_the_input_folder_without_a_clash_keeps_inputs(tmp_path, capsys):
    ct, labels = _ct(tmp_path / "case7.nii.gz"), _labels(tmp_path / "case7_seg.nii.gz")
    before = _state(tmp_path)
    code = main(["generate", str(ct), "--labels", str(labels), "--organ", "liver", "--label-map", "--out",
                 str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    after = _state(tmp_path)
    assert {k: after[k] for k in before} == before
    assert {"case7_ct.nii.gz", "case7_tumor.nii.gz", "case7_label.nii.gz", "manifest.jsonl"} <= set(after)
