"""A dataset CSV saved by Excel (byte-order mark) runs like any other: no phantom case, exit 0."""
from __future__ import annotations

from generate_helpers import make_dataset, read_manifest


def test_bom_csv_with_columns_in_another_order(cli, tmp_path):
    table = make_dataset(tmp_path / "ds", "csv", n_cases=2)
    rows = [line.split(",") for line in table.read_text().splitlines()]
    # Excel: a byte-order mark, CRLF line ends; and the columns in another order, with a case_id column.
    lines = ["labels,case_id,ct"] + [f"{labels},c{k},{ct}" for k, (ct, labels) in enumerate(rows[1:])]
    table.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", table, "--organ", "liver", "--out", out)
    assert code == 0, err
    assert "failed: " not in err and "0 case(s) failed" in err
    assert sorted(r["case_id"] for r in read_manifest(out / "manifest.jsonl")) == ["c0", "c1"]
