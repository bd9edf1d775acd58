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
