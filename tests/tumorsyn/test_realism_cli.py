"""`tumorsyn realism` end to end on the bundled example, and the inputs it refuses."""
import csv
import json
import os

import numpy as np
import pytest

from tests.conftest import real_path
from tumorsyn.cli.main import main

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two generate runs on the example (the first with label maps) and a dataset made of the first."""
    root = tmp_path_factory.mktemp("realism")
    for name, seed, extra in (("run_a", 1, ["--label-map"]), ("run_b", 2, [])):
        assert main(["generate", "--example", "--organ", "liver", "--count", "3", "--per-scan", "2", "--seed", str(seed),
                     "--out", str(root / name), "--quiet", *extra]) == 0
    images, labels = root / "dataset" / "imagesTr", root / "dataset" / "labelsTr"
    images.mkdir(parents=True)
    labels.mkdir()
    for ct in sorted((root / "run_a").glob("*_ct.nii.gz")):
        case = ct.name[: -len("_ct.nii.gz")]
        os.symlink(ct, images / f"{case}_0000.nii.gz")
        os.symlink(root / "run_a" / f"{case}_label.nii.gz", labels / f"{case}.nii.gz")
    return root


def test_end_to_end_dataset_vs_output_folder(runs, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["realism", "--real", str(runs / "dataset"), "--synthetic", str(runs / "run_b"), "--organ", "liver",
                 "--out", str(out), "--workers", "1", "--gallery", "3", "--seed", "3"])
    assert code == 0
    assert "AI-reader AUC" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"lesions.csv", "comparison.csv", "report.json", "report.md",
                                                "descriptors.png", "gallery.png"}
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "tumorsyn.realism/1"
    assert report["counts"]["real"]["scans"] == 2 and report["counts"]["synthetic"]["scans"] == 2
    assert report["conventions"]["size_bins_mm"] == [20.0] and report["conventions"]["min_voxels"] == 3
    assert report["comparison"]["settings"]["seed"] == 3
    assert "volume_mm3" not in report["comparison"]["settings"]["classifier_features"]
    liver = next(g for g in report["comparison"]["groups"] if g["size_class"] == "all")
    assert liver["ai_reader"]["n_real"] >= 2 and liver["ai_reader"]["auc"] is not None
    with open(out / "lesions.csv") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    assert len(rows) == len(report["lesions"])
    assert {r["cohort"] for r in rows} == {"real", "synthetic"}
    assert all(r["organ"] == "liver" for r in rows)
    assert "sphericity" in (out / "report.md").read_text()
    assert all(i["ct"]["sha256"] for i in report["inputs"]["scans"])


def test_lesion_csv_input_and_size_in_classifier(runs, tmp_path):
    table = tmp_path / "lesions_in.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ct", "lesion", "organ_mask", "organ"])
        for ct in sorted((runs / "run_a").glob("*_ct.nii.gz")):
            case = ct.name[: -len("_ct.nii.gz")]
            writer.writerow([ct, runs / "run_a" / f"{case}_tumor.nii.gz", runs / "run_a" / f"{case}_label.nii.gz", "liver"])
    out = tmp_path / "report"
    assert main(["realism", "--real", str(table), "--synthetic", str(runs / "run_b"), "--out", str(out),
                 "--workers", "2", "--no-plots", "--classifier-size", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "volume_mm3" in report["comparison"]["settings"]["classifier_features"]
    assert not (out / "descriptors.png").exists()


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_refusals_are_one_line(runs, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["realism", "--real", str(tmp_path / "nope"), "--synthetic", str(runs / "run_b"), "--out", str(out)]) == 1
    assert "not found" in _error(capsys)
    assert main(["realism", "--real", str(runs / "dataset"), "--synthetic", str(runs / "run_b"), "--out", str(out)]) == 1
    assert "give --organ" in _error(capsys)
    # An output that would overwrite an input: the lesion CSV is named like the report's lesions.csv.
    table = tmp_path / "lesions.csv"
    table.write_text("ct,lesion,organ\nmissing_ct.nii.gz,missing.nii.gz,liver\n")
    assert main(["realism", "--real", str(table), "--synthetic", str(runs / "run_b"), "--out", str(tmp_path)]) == 1
    assert "would overwrite the input" in _error(capsys)
    assert not (tmp_path / "report.json").exists()
    # A lesion mask on another grid.
    bad = tmp_path / "bad.csv"
    ct = sorted((runs / "run_a").glob("*_ct.nii.gz"))[0]
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), str(tmp_path / "tiny.nii.gz"))
    bad.write_text(f"ct,lesion,organ\n{ct},{tmp_path / 'tiny.nii.gz'},liver\n")
    assert main(["realism", "--real", str(bad), "--synthetic", str(runs / "run_b"), "--out", str(out)]) == 1
    err = _error(capsys)
    assert "tiny.nii.gz" in err and "grid" in err
    assert not out.exists()
    with pytest.raises(SystemExit) as usage:  # --synthetic missing: a usage error
        main(["realism", "--real", str(runs / "dataset"), "--out", str(out)])
    assert usage.value.code == 2


@pytest.mark.real
def test_real_lits_vs_synthetic(runs, tmp_path):
    lits = real_path("lits117")
    table = tmp_path / "lits.csv"
    table.write_text(f"ct,lesion,organ,case_id\n{lits / 'ct.nii.gz'},{lits / 'label.nii.gz'},liver,lits117\n")
    out = tmp_path / "report"
    assert main(["realism", "--real", str(table), "--synthetic", str(runs / "run_b"), "--label-preset", "decathlon",
                 "--out", str(out), "--workers", "1", "--no-plots", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["real"]["lesions"] == 70  # 26-connected components, as the data README counts them
