"""``tumorsyn generate --out-layout nnunet|decathlon``: datasets that nnU-Net v2 and MSD tools take as they are."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from generate_helpers import make_dataset, phantom_arrays, save_nifti, sha256, stored_data, tree_digest

NNUNET = ["--out-layout", "nnunet", "--dataset-id", "501", "--dataset-name", "LiverTumorSyn"]
DATASET = "Dataset501_LiverTumorSyn"
# Files of a dataset that must not depend on how it was made (one run, shards, workers, a resume).
DATA_FOLDERS = ("imagesTr", "labelsTr", "tumorsTr")


def dataset_digest(folder: Path) -> dict[str, str]:
    """Checksums of the dataset's images, labels, tumour masks and dataset.json."""
    digest = {f"{sub}/{k}": v for sub in DATA_FOLDERS for k, v in tree_digest(folder / sub).items()}
    digest["dataset.json"] = sha256(folder / "dataset.json")
    return digest


def lesion_dataset(root: Path, n_cases: int = 2) -> Path:
    """imagesTr/ + labelsTr/ phantoms in the decathlon convention: liver 1, and an existing lesion 2 in each liver."""
    for k in range(n_cases):
        ct, liver = phantom_arrays(seed=k)
        labels = liver.copy()
        labels[30:34, 22:26, 14:18] = 2  # inside the phantom's liver, away from its centre
        assert liver[30:34, 22:26, 14:18].all()
        save_nifti(root / "imagesTr" / f"case_{k:03d}_0000.nii.gz", ct)
        save_nifti(root / "labelsTr" / f"case_{k:03d}.nii.gz", labels)
    return root


def labels_of(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_cli_choices_are_the_layout_module_s():
    import synthesize.cli as cli
    from tumorsyn.io import dataset_layouts

    assert cli.OUT_LAYOUTS == dataset_layouts.OUT_LAYOUTS
    assert cli.DATASET_LABELS == dataset_layouts.DATASET_LABELS


def test_nnunet_dataset_files_and_dataset_json(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", "--seed", "4", *NNUNET, "--quiet",
                       "--out", tmp_path / "raw")
    assert code == 0, err
    folder = tmp_path / "raw" / DATASET
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["case_000_0000.nii.gz", "case_001_0000.nii.gz"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    prov = meta["tumorsyn"]
    assert prov["manifest"] == "manifest.jsonl" and prov["seed"] == 4 and prov["version"]
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert prov["output_seeds"] == {r["output_id"]: r["output_seed"] for r in records}
    for record in records:
        # The manifest names every file relative to the dataset folder, and the label map holds the tumour as 2.
        assert record["outputs"] == {"ct": f"imagesTr/{record['output_id']}_0000.nii.gz",
                                     "tumor": f"tumorsTr/{record['output_id']}.nii.gz",
                                     "label": f"labelsTr/{record['output_id']}.nii.gz"}
        tumour = labels_of(folder / record["outputs"]["tumor"]) > 0
        label = labels_of(folder / record["outputs"]["label"])
        assert tumour.any() and (label[tumour] == 2).all() and set(np.unique(label)) == {0, 1, 2}
        assert record["outputs_sha256"]["ct"] == sha256(folder / record["outputs"]["ct"])


def test_existing_lesions_stay_tumour_never_organ(cli, tmp_path):
    src = lesion_dataset(tmp_path / "in")
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", *NNUNET, "--include-originals", "--quiet",
                       "--out", tmp_path / "raw")
    assert code == 0, err
    folder = tmp_path / "raw" / DATASET
    for k in range(2):
        given = labels_of(src / "labelsTr" / f"case_{k:03d}.nii.gz")
        original = labels_of(folder / "labelsTr" / f"case_{k:03d}_orig.nii.gz")
        np.testing.assert_array_equal(original, given)  # decathlon 1/2 is the dataset's 1/2 already
        synthetic = labels_of(folder / "labelsTr" / f"case_{k:03d}.nii.gz")
        tumour = labels_of(folder / "tumorsTr" / f"case_{k:03d}.nii.gz") > 0
        assert (synthetic[given == 2] == 2).all(), "an existing lesion was relabelled"
        assert (synthetic[tumour] == 2).all()
        assert (synthetic[(given == 1) & ~tumour] == 1).all() and (synthetic[given == 0 & ~tumour] == 0).all()
    # --dataset-labels tumor: the organ is background, every tumour (own lesions too) is 1.
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", *NNUNET, "--dataset-labels", "tumor",
                       "--quiet", "--out", tmp_path / "raw2")
    assert code == 0, err
    folder = tmp_path / "raw2" / DATASET
    assert json.loads((folder / "dataset.json").read_text())["labels"] == {"background": 0, "tumor": 1}
    given = labels_of(src / "labelsTr" / "case_000.nii.gz")
    label = labels_of(folder / "labelsTr" / "case_000.nii.gz")
    tumour = labels_of(folder / "tumorsTr" / "case_000.nii.gz") > 0
    np.testing.assert_array_equal(label, ((given == 2) | tumour).astype(np.uint8))


def test_include_originals_with_per_scan_gives_distinct_ids(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", "--per-scan", "2", *NNUNET,
                       "--include-originals", "--quiet", "--out", tmp_path / "raw")
    assert code == 0, err
    folder = tmp_path / "raw" / DATASET
    ids = [f"case_00{k}_{s}" for k in range(2) for s in ("000", "001", "orig")]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{i}_0000.nii.gz" for i in ids]
    assert sorted(p.name for p in (folder / "tumorsTr").iterdir()) == [f"{i}.nii.gz" for i in ids if "orig" not in i]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 6
    assert (meta["tumorsyn"]["synthetic_cases"], meta["tumorsyn"]["original_cases"]) == (4, 2)
    for k in range(2):
        # The original keeps every stored value of the input CT (and its data type).
        given = stored_data(src / "imagesTr" / f"case_00{k}_0000.nii.gz")
        copied = stored_data(folder / "imagesTr" / f"case_00{k}_orig_0000.nii.gz")
        assert copied.dtype == given.dtype
        np.testing.assert_array_equal(copied, given)
    originals = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    originals = [r for r in originals if r.get("original")]
    assert sorted(r["output_id"] for r in originals) == ["case_000_orig", "case_001_orig"]
    assert all(r["tumors"] == [] and set(r["outputs"]) == {"ct", "label"} for r in originals)


def test_decathlon_layout(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", "--out-layout", "decathlon", "--dataset-id",
                       "502", "--dataset-name", "LiverSyn", "--include-originals", "--quiet", "--out", tmp_path / "msd")
    assert code == 0, err
    folder = tmp_path / "msd" / "Task502_LiverSyn"
    ids = ["case_000", "case_000_orig", "case_001", "case_001_orig"]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"{i}.nii.gz" for i in ids]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == [f"{i}.nii.gz" for i in ids]
    assert (folder / "imagesTs").is_dir()
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["modality"] == {"0": "CT"}
    assert meta["labels"] == {"0": "background", "1": "liver", "2": "tumor"}
    assert meta["numTraining"] == 4 and meta["numTest"] == 0 and meta["test"] == []
    assert meta["training"] == [{"image": f"./imagesTr/{i}.nii.gz", "label": f"./labelsTr/{i}.nii.gz"} for i in ids]


def test_shards_then_merge_give_the_dataset_of_one_run(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=3)
    base = ["generate", "--dataset", src, "--organ", "liver", "--seed", "9", *NNUNET, "--include-originals", "--quiet"]
    code, _, err = cli(*base, "--workers", "2", "--out", tmp_path / "one")
    assert code == 0, err
    for index in range(2):
        code, _, err = cli(*base, "--shard", f"{index}/2", "--out", tmp_path / "split")
        assert code == 0, err
        # A shard never finishes the dataset on its own: nnU-Net must not see a part of it as complete.
        assert not (tmp_path / "split" / DATASET / "dataset.json").exists()
        assert "dataset.json is written by --merge" in err
    code, out, err = cli("generate", "--merge", *NNUNET, "--out", tmp_path / "split")
    assert code == 0, err
    assert "dataset complete" in out
    assert dataset_digest(tmp_path / "split" / DATASET) == dataset_digest(tmp_path / "one" / DATASET)
    # Merging again changes nothing.
    before = dataset_digest(tmp_path / "split" / DATASET)
    assert cli("generate", "--merge", "--out", tmp_path / "split" / DATASET)[0] == 0
    assert dataset_digest(tmp_path / "split" / DATASET) == before


def test_merge_of_an_unfinished_dataset_writes_no_dataset_json(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", *NNUNET, "--shard", "0/2", "--quiet",
                       "--out", tmp_path / "split")
    assert code == 0, err
    code, _, err = cli("generate", "--merge", *NNUNET, "--out", tmp_path / "split")
    assert code == 1
    assert "shard(s) 1/2 left no manifest here" in err  # the merge itself refuses: a shard has not run
    assert not (tmp_path / "split" / DATASET / "dataset.json").exists()


def _interrupt_after(monkeypatch, calls: int) -> None:
    """Make the run die (as on Ctrl-C or a kill) when it starts its case number ``calls + 1``."""
    import synthesize.run as run

    real, seen = run.generate_case, []

    def dying(*args, **kwargs):
        if len(seen) >= calls:
            raise KeyboardInterrupt
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "generate_case", dying)


def test_killed_run_leaves_no_dataset_json_and_resume_finishes_it(cli, tmp_path, monkeypatch):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=3)
    base = ["generate", "--dataset", src, "--organ", "liver", *NNUNET, "--include-originals", "--quiet"]
    assert cli(*base, "--out", tmp_path / "clean")[0] == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert cli(*base, "--out", tmp_path / "resumed")[0] == 130
    folder = tmp_path / "resumed" / DATASET
    assert (folder / "imagesTr" / "case_000_0000.nii.gz").exists()  # the first case was finished
    assert not (folder / "dataset.json").exists()
    code, _, err = cli(*base, "--out", tmp_path / "resumed")
    assert code == 0, err
    assert dataset_digest(folder) == dataset_digest(tmp_path / "clean" / DATASET)
    # A resume that has work to do takes dataset.json away first: killed again, it leaves none.
    (folder / "labelsTr" / "case_002.nii.gz").unlink()
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 0)
        assert cli(*base, "--out", tmp_path / "resumed")[0] == 130
    assert not (folder / "dataset.json").exists()
    assert cli(*base, "--out", tmp_path / "resumed")[0] == 0
    assert dataset_digest(folder) == dataset_digest(tmp_path / "clean" / DATASET)


def test_failed_case_or_stray_file_leaves_no_dataset_json(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    good = (src / "labelsTr" / "case_001.nii.gz").read_bytes()
    (src / "labelsTr" / "case_001.nii.gz").write_bytes(good[: len(good) // 2])  # a truncated label map
    base = ["generate", "--dataset", src, "--organ", "liver", *NNUNET, "--quiet", "--out", tmp_path / "raw"]
    code, _, err = cli(*base)
    assert code == 1
    assert "dataset.json not written: 1 case(s) failed" in err
    folder = tmp_path / "raw" / DATASET
    assert not (folder / "dataset.json").exists()
    (src / "labelsTr" / "case_001.nii.gz").write_bytes(good)
    (folder / "imagesTr" / "someone_else_0000.nii.gz").write_bytes(b"x")
    code, _, err = cli(*base)
    assert code == 0
    assert ("dataset.json not written: 1 file(s) in the dataset are not outputs of this run "
            "(imagesTr/someone_else_0000.nii.gz;") in err
    assert not (folder / "dataset.json").exists()
    (folder / "imagesTr" / "someone_else_0000.nii.gz").unlink()
    assert cli(*base)[0] == 0
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 2


@pytest.mark.parametrize("extra, expected", [
    (["--dataset-id", "501"], "--dataset-id go with --out-layout nnunet or decathlon"),
    (["--include-originals"], "--include-originals go with --out-layout nnunet or decathlon"),
    (["--out-layout", "nnunet", "--dataset-name", "X"], "--out-layout nnunet needs --dataset-id"),
    (["--out-layout", "nnunet", "--dataset-id", "0", "--dataset-name", "X"], "--dataset-id 0: give a whole number"),
    (["--out-layout", "decathlon", "--dataset-id", "5", "--dataset-name", "Liver_Syn"],
     "--dataset-name 'Liver_Syn': with --out-layout decathlon a name holds letters, digits and '-' (no '_'"),
    ([*NNUNET, "--label-map"], "with --out-layout nnunet the label map is labelsTr/<case>.nii.gz already"),
    ([*NNUNET, "--output-format", "dicom"], "--output-format dicom does not go with --out-layout nnunet"),
])
def test_refusals(cli, tmp_path, extra, expected):
    code, _, err = cli("generate", "--example", "--organ", "liver", *extra, "--out", tmp_path / "o")
    assert code == 1
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_merge_without_a_run_is_refused(cli, tmp_path):
    code, _, err = cli("generate", "--merge", *NNUNET, "--out", tmp_path / "nothing")
    assert code == 1
    assert "no generate run in this dataset folder (no run.json)" in err


def test_an_original_id_taken_by_another_case_is_refused(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=1)
    for sub, suffix in (("imagesTr", "_0000"), ("labelsTr", "")):
        (src / sub / f"case_000_orig{suffix}.nii.gz").write_bytes((src / sub / f"case_000{suffix}.nii.gz").read_bytes())
    code, _, err = cli("generate", "--dataset", src, "--organ", "liver", *NNUNET, "--include-originals",
                       "--out", tmp_path / "raw")
    assert code == 1
    assert "cases case_000 and case_000_orig would both write imagesTr/case_000_orig_0000.nii.gz" in err
    assert not (tmp_path / "raw").exists()


def test_every_case_bad_leaves_no_folder(cli, tmp_path):
    src = make_dataset(tmp_path / "in", "nnunet", n_cases=2)
    for path in (src / "labelsTr").iterdir():
        path.write_bytes(path.read_bytes()[:100])
    code, _, _ = cli("generate", "--dataset", src, "--organ", "liver", *NNUNET, "--quiet", "--out", tmp_path / "raw")
    assert code == 1
    assert not (tmp_path / "raw").exists()
