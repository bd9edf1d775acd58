"""Seeds and ``--from-spec``: the same inputs give the same bytes; a recorded spec replays byte for byte."""
from __future__ import annotations

import json

import pytest

from generate_helpers import read_manifest, stable

FILES = ("phantom_ct.nii.gz", "phantom_tumor.nii.gz", "phantom_label.nii.gz")


def _run(cli, ct, labels, out, *extra):
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", out, "--quiet",
                       "--label-map", *extra)
    assert code == 0, err
    return out


def test_same_seed_same_bytes_and_manifest(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    first = _run(cli, ct, labels, tmp_path / "a", "--seed", "7")
    second = _run(cli, ct, labels, tmp_path / "b", "--seed", "7")
    for name in FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    records_a, records_b = read_manifest(first / "manifest.jsonl"), read_manifest(second / "manifest.jsonl")
    assert [stable(r) for r in records_a] == [stable(r) for r in records_b]
    assert (first / "run.json").read_bytes() == (second / "run.json").read_bytes()


def test_different_seed_different_tumour(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    first = _run(cli, ct, labels, tmp_path / "a", "--seed", "7")
    second = _run(cli, ct, labels, tmp_path / "b", "--seed", "8")
    for name in FILES:
        assert (first / name).read_bytes() != (second / name).read_bytes(), name
    spec_a = read_manifest(first / "manifest.jsonl")[0]["tumors"][0]["spec"]
    spec_b = read_manifest(second / "manifest.jsonl")[0]["tumors"][0]["spec"]
    assert spec_a["center_vox"] != spec_b["center_vox"]


def _assert_replayed(original, replay, output_id="phantom"):
    for suffix in ("_ct.nii.gz", "_tumor.nii.gz"):
        assert (replay / f"{output_id}{suffix}").read_bytes() == (original / f"phantom{suffix}").read_bytes(), suffix
    (record,) = read_manifest(replay / "manifest.jsonl")
    (source,) = [r for r in read_manifest(original / "manifest.jsonl") if r["output_id"] == "phantom"]
    assert record["from_spec"] is True
    assert [t["spec"] for t in record["tumors"]] == [t["spec"] for t in source["tumors"]]


@pytest.mark.parametrize("count", [1, 2])
def test_from_manifest_with_spec_id_replays_byte_for_byte(cli, phantom_case, tmp_path, count):
    ct, labels = phantom_case
    original = _run(cli, ct, labels, tmp_path / "a", "--seed", "4", "--count", count, "--size-mm", "6-10")
    # Another output in the same manifest, so that --spec-id has to pick.
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", original, "--quiet",
                       "--label-map", "--seed", "4", "--count", count, "--size-mm", "6-10", "--case-id", "other")
    assert code == 0, err
    assert len(read_manifest(original / "manifest.jsonl")) == 2

    code, _, err = cli("generate", ct, "--labels", labels, "--out", tmp_path / "replay", "--quiet",
                       "--from-spec", original / "manifest.jsonl", "--spec-id", "phantom")
    assert code == 0, err
    _assert_replayed(original, tmp_path / "replay")


def test_from_manifest_without_spec_id_is_ambiguous(cli, phantom_case, tmp_path):
    ct, labels = phantom_case
    original = _run(cli, ct, labels, tmp_path / "a", "--seed", "4")
    _run(cli, ct, labels, original, "--seed", "4", "--case-id", "other")
    code, _, err = cli("generate", ct, "--labels", labels, "--out", tmp_path / "replay", "--quiet",
                       "--from-spec", original / "manifest.jsonl")
    assert code == 1
    assert "--spec-id" in err and "manifest.jsonl" in err
    assert not (tmp_path / "replay").exists()


@pytest.mark.parametrize("form", ["spec", "record"])
def test_from_a_spec_json_file_replays_byte_for_byte(cli, phantom_case, tmp_path, form):
    ct, labels = phantom_case
    original = _run(cli, ct, labels, tmp_path / "a", "--seed", "9")
    (record,) = read_manifest(original / "manifest.jsonl")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(record["tumors"][0]["spec"] if form == "spec" else record))
    code, _, err = cli("generate", ct, "--labels", labels, "--out", tmp_path / "replay", "--quiet",
                       "--from-spec", spec_file)
    assert code == 0, err
    _assert_replayed(original, tmp_path / "replay")


def test_from_spec_on_another_grid_fails_cleanly(cli, phantom_case, example_paths, tmp_path):
    ct, labels = phantom_case
    original = _run(cli, ct, labels, tmp_path / "a", "--seed", "9")
    example_ct, example_labels = example_paths
    code, _, err = cli("generate", example_ct, "--labels", example_labels, "--out", tmp_path / "replay",
                       "--quiet", "--from-spec", original / "manifest.jsonl", "--spec-id", "phantom")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tumorsyn: error: ")
    assert "grid" in lines[0]
    assert example_ct.name in lines[0], "the error must name the scan the spec does not fit"
    assert not (tmp_path / "replay").exists()
