"""The manifest: one JSON line per written output, appended only after its files are in place.

A line is the proof that an output is complete. A run killed at any moment leaves at most one
truncated last line, which the next run drops; outputs without a line are made again (the same
seed gives the same bytes).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tumorsyn.errors import InputError
from tumorsyn.io.writers import atomic_path

__all__ = ["Manifest", "manifest_name", "read_records", "merge_manifests"]


def manifest_name(shard: tuple[int, int] | None) -> str:
    """``manifest.jsonl``, or ``manifest.shard-I-of-N.jsonl`` for one shard of a split run."""
    return "manifest.jsonl" if shard is None or shard[1] == 1 else f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl"


def read_records(path: Path) -> list[dict]:
    """Complete records of a manifest file; a torn last line (killed writer) is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the last line can be torn; it is rewritten on the next append
        if isinstance(record, dict) and "output_id" in record:
            records.append(record)
    return records


class Manifest:
    """Append-only JSON-lines file of finished outputs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._repair()

    def _repair(self) -> None:
        # Drop a torn last line so the next append starts on a fresh line.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as fh:
                fh.truncate(len(keep))

    def append(self, record: dict) -> None:
        """Append one record durably; a failed write leaves no partial line behind."""
        line = json.dumps(record, sort_keys=True) + "\n"
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if self.path.exists():
                with open(self.path, "r+b") as fh:
                    fh.truncate(size)
            raise InputError(f"cannot append to the manifest ({exc.strerror or exc})", path=self.path) from None

    def drop(self, output_ids: set[str]) -> None:
        """Rewrite the manifest without the records of ``output_ids`` (outputs to be made again)."""
        records = [r for r in read_records(self.path) if r["output_id"] not in output_ids]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)


def merge_manifests(out_dir: str | Path) -> Path:
    """Merge every shard manifest of ``out_dir`` into ``manifest.jsonl``; idempotent.

    Records are keyed by ``output_id`` (the first seen wins) and sorted by it, so merging twice,
    or merging after a shard re-ran, gives the same file.
    """
    out_dir = Path(out_dir)
    shards = sorted(out_dir.glob("manifest.shard-*.jsonl"))
    _check_every_shard_ran(out_dir, shards)
    merged: dict[str, dict] = {}
    for path in [out_dir / "manifest.jsonl", *shards]:
        for record in read_records(path):
            merged.setdefault(record["output_id"], record)
    target = out_dir / "manifest.jsonl"
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for key in sorted(merged):
                fh.write(json.dumps(merged[key], sort_keys=True) + "\n")
    return target


def _check_every_shard_ran(out_dir: Path, shards: list[Path]) -> None:
    """Refuse to merge while a shard of the split has left no manifest (it has not run, or not to the end)."""
    found: dict[int, set[int]] = {}
    for path in shards:
        match = re.fullmatch(r"manifest\.shard-(\d+)-of-(\d+)\.jsonl", path.name)
        if match:
            found.setdefault(int(match[2]), set()).add(int(match[1]))
    if len(found) > 1:
        raise InputError(f"shard manifests of different splits ({', '.join(f'of {n}' for n in sorted(found))}) "
                         "are here; a run is split one way only", path=out_dir)
    for count, present in found.items():
        missing = sorted(set(range(count)) - present)
        if missing:
            names = ", ".join(f"{i}/{count}" for i in missing)
            raise InputError(f"shard(s) {names} left no manifest here: run them (--shard {missing[0]}/{count} ...) "
                             "with the same options, then --merge again", path=out_dir)
