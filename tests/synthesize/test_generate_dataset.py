"""``tumorsyn generate --dataset``: layouts, --per-scan, --workers, --shard/--merge, bad cases."""
from __future__ import annotations

import gzip

import nibabel as nib
import pytest

from generate_helpers import make_dataset, read_manifest, stable, temp_files, tree_digest

CASE_IDS = ["case_000", "case_001", "case_002"]


def _generate(cli, dataset, out, *extra, expect=0):
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", out, "--quiet",
                       "--size-mm", "6-12", *extra)
    assert code == expect, err
    return err


def _nifti_outputs(out):
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".nii.gz"))


def _stable_records(path):
    return sorted((stable(r) for r in read_manifest(path)), key=lambda r: r["output_id"])


@pytest.mark.parametrize("layout", ["nnunet", "decathlon", "csv"])
def test_layout_is_discovered(cli, tmp_path, layout):
    dataset = make_dataset(tmp_path / "ds", layout)
    out = tmp_path / "out"
    _generate(cli, dataset, out)
    assert _nifti_outputs(out) == sorted(f"{c}_{kind}.nii.gz" for c in CASE_IDS for kind in ("ct", "tumor"))
    records = read_manifest(out / "manifest.jsonl")
    assert sorted(r["output_id"] for r in records) == CASE_IDS
    for record in records:
        ct_input = record["input"]["ct"]
        assert record["case_id"] in ct_input
        if layout == "nnunet":
            assert ct_input.endswith(f"{record['case_id']}_0000.nii.gz")
        for name in record["outputs"].values():
            nib.load(str(out / name)).get_fdata()


def test_layouts_give_the_same_outputs(cli, tmp_path):
    outs = {}
    for layout in ("nnunet", "decathlon", "csv"):
        outs[layout] = tmp_path / f"out_{layout}"
        _generate(cli, make_dataset(tmp_path / layout, layout), outs[layout])
    # Same phantoms, same case ids, same seed: the same bytes whatever the layout.
    digests = {layout: {k: v for k, v in tree_digest(o).items() if k.endswith(".nii.gz")} for layout, o in outs.items()}
    assert digests["nnunet"] == digests["decathlon"] == digests["csv"]


def test_per_scan_writes_k_outputs_per_case(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    out = tmp_path / "out"
    _generate(cli, dataset, out, "--per-scan", "2")
    ids = [f"{c}_{k:03d}" for c in CASE_IDS for k in range(2)]
    assert _nifti_outputs(out) == sorted(f"{i}_{kind}.nii.gz" for i in ids for kind in ("ct", "tumor"))
    records = read_manifest(out / "manifest.jsonl")
    assert sorted(r["output_id"] for r in records) == ids
    # The two outputs of one case hold different tumours.
    for case_id in CASE_IDS:
        a, b = (out / f"{case_id}_{k:03d}_tumor.nii.gz" for k in range(2))
        assert a.read_bytes() != b.read_bytes()


def test_workers_give_the_same_bytes(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "nnunet", n_cases=4)
    one, two = tmp_path / "w1", tmp_path / "w2"
    _generate(cli, dataset, one, "--workers", "1", "--per-scan", "2")
    _generate(cli, dataset, two, "--workers", "2", "--per-scan", "2")
    digest_one, digest_two = tree_digest(one), tree_digest(two)
    digest_one.pop("manifest.jsonl"), digest_two.pop("manifest.jsonl")  # line order follows completion
    assert digest_one == digest_two
    assert len([k for k in digest_one if k.endswith("_ct.nii.gz")]) == 8
    assert _stable_records(one / "manifest.jsonl") == _stable_records(two / "manifest.jsonl")


def test_shards_cover_every_case_once_and_merge_is_idempotent(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "csv", n_cases=5)
    whole, split = tmp_path / "whole", tmp_path / "split"
    _generate(cli, dataset, whole)
    _generate(cli, dataset, split, "--shard", "0/2")
    _generate(cli, dataset, split, "--shard", "1/2")

    part0 = read_manifest(split / "manifest.shard-0-of-2.jsonl")
    part1 = read_manifest(split / "manifest.shard-1-of-2.jsonl")
    ids0, ids1 = [r["output_id"] for r in part0], [r["output_id"] for r in part1]
    assert ids0 and ids1
    assert not set(ids0) & set(ids1)
    assert sorted(ids0 + ids1) == [f"case_{k:03d}" for k in range(5)]

    code, stdout, err = cli("generate", "--merge", "--out", split)
    assert code == 0, err
    merged = split / "manifest.jsonl"
    first = merged.read_bytes()
    assert _stable_records(merged) == _stable_records(whole / "manifest.jsonl")
    code, _, err = cli("generate", "--merge", "--out", split)
    assert code == 0, err
    assert merged.read_bytes() == first
    # Shards write the same files a single run writes.
    nifti = {k: v for k, v in tree_digest(split).items() if k.endswith(".nii.gz")}
    assert nifti == {k: v for k, v in tree_digest(whole).items() if k.endswith(".nii.gz")}


def test_shard_reruns_resume_from_its_own_manifest(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "csv", n_cases=4)
    out = tmp_path / "out"
    _generate(cli, dataset, out, "--shard", "1/2")
    before = tree_digest(out)
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", out, "--size-mm", "6-12",
                       "--shard", "1/2")
    assert code == 0, err
    assert "wrote 0 output(s), 2 already finished" in err
    assert tree_digest(out) == before


def _corrupt_case(dataset, case_id="case_001"):
    path = dataset / "imagesTr" / f"{case_id}_0000.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_one_corrupt_case_the_others_are_written(cli, tmp_path, workers):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    _corrupt_case(dataset)
    out = tmp_path / "out"
    _generate(cli, dataset, out, "--workers", workers, expect=1)
    records = read_manifest(out / "manifest.jsonl")
    assert sorted(r["output_id"] for r in records) == ["case_000", "case_002"]
    assert _nifti_outputs(out) == sorted(f"{c}_{k}.nii.gz" for c in ("case_000", "case_002") for k in ("ct", "tumor"))
    assert not temp_files(out)


def test_one_corrupt_case_is_named(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    bad = _corrupt_case(dataset)
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", out, "--size-mm", "6-12")
    assert code == 1
    failures = [line for line in err.splitlines() if str(bad) in line]
    assert len(failures) == 1 and "corrupt" in failures[0]
    assert "1 case(s) failed" in err


def test_quiet_still_names_the_failed_case(cli, tmp_path):
    # --quiet hides the progress bar ("no progress bar"), not the reason for exit code 1.
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    bad = _corrupt_case(dataset)
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", tmp_path / "out",
                       "--size-mm", "6-12", "--quiet")
    assert code == 1
    assert str(bad) in err


def test_every_case_bad_leaves_nothing(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    for case_id in CASE_IDS:
        _corrupt_case(dataset, case_id)
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", out, "--size-mm", "6-12")
    assert code == 1
    assert "3 case(s) failed" in err
    assert not out.exists()


def test_fail_fast_stops_with_one_line(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    bad = _corrupt_case(dataset, "case_000")
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", out, "--size-mm", "6-12",
                       "--quiet", "--fail-fast")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]
    # The bad case comes first in id order: nothing was written, nothing is left.
    assert not out.exists()


@pytest.mark.parametrize("problem, expected", [
    ("missing_label", "no label file"),
    ("empty", "no cases"),
    ("not_a_dataset", "not a dataset"),
])
def test_bad_dataset_layout(cli, tmp_path, problem, expected):
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    if problem == "missing_label":
        (dataset / "labelsTr" / "case_001.nii.gz").unlink()
    elif problem == "empty":
        for p in (dataset / "imagesTr").iterdir():
            p.unlink()
    else:
        dataset = tmp_path / "plain"
        dataset.mkdir()
    code, _, err = cli("generate", "--dataset", dataset, "--organ", "liver", "--out", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert not (tmp_path / "out").exists()


def test_gzip_of_the_corrupt_case_is_really_truncated(tmp_path):
    # Guard for the fixtures above: half a gzip stream cannot be decompressed.
    dataset = make_dataset(tmp_path / "ds", "nnunet")
    bad = _corrupt_case(dataset)
    with pytest.raises(EOFError):
        gzip.decompress(bad.read_bytes())


def test_merge_refuses_while_a_shard_has_not_run(cli, tmp_path):
    dataset = make_dataset(tmp_path / "ds", "csv", n_cases=2)
    split = tmp_path / "split"
    _generate(cli, dataset, split, "--shard", "0/3")
    code, _, err = cli("generate", "--merge", "--out", split)
    assert code == 1 and "shard(s) 1/3, 2/3 left no manifest here" in err
    assert not (split / "manifest.jsonl").exists()
    # Shard 2 of 3 has no case of 2 to write: it still leaves its (empty) manifest, so merging works.
    _generate(cli, dataset, split, "--shard", "1/3")
    _generate(cli, dataset, split, "--shard", "2/3")
    assert (split / "manifest.shard-2-of-3.jsonl").read_text() == ""
    code, _, err = cli("generate", "--merge", "--out", split)
    assert code == 0, err
    assert len(read_manifest(split / "manifest.jsonl")) == 2
