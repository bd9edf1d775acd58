"""Resume: a run killed at any moment (kill -9) and started again ends as if it had never stopped."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from generate_helpers import (TMP_PREFIX, cli_command, make_dataset, read_manifest, stable, temp_files,
                              tree_digest)

N_CASES, PER_SCAN = 6, 2
OUTPUT_IDS = sorted(f"case_{c:03d}_{k:03d}" for c in range(N_CASES) for k in range(PER_SCAN))


def _argv(dataset, out, *extra):
    return ["generate", "--dataset", str(dataset), "--organ", "liver", "--out", str(out), "--per-scan",
            str(PER_SCAN), "--size-mm", "6-12", "--seed", "3", "--quiet", *extra]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("resume") / "ds", "nnunet", n_cases=N_CASES)


@pytest.fixture(scope="module")
def clean_run(dataset, tmp_path_factory):
    """An uninterrupted run of the same command (in this process)."""
    from tumorsyn.cli.main import main

    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(_argv(dataset, out)) == 0
    return out


def _manifest_lines(out) -> int:
    path = out / "manifest.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _temp_names(out) -> set[str]:
    return {n for n in os.listdir(out) if n.startswith(TMP_PREFIX)} if out.exists() else set()


# Each kill point: condition(out, temp files present before this run started).
KILL_POINTS = {
    "run-json": lambda out, old: (out / "run.json").exists(),
    # While an output is being written under its temporary name (the 3-line fallback keeps the test
    # from missing its moment on a slow machine).
    "temp-file": lambda out, old: ((out / "run.json").exists() and bool(_temp_names(out) - old))
                                  or _manifest_lines(out) >= 3,
    "first-line": lambda out, old: _manifest_lines(out) >= 1,
    "five-lines": lambda out, old: _manifest_lines(out) >= 5,
}


def _start(argv):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(cli_command(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)


def _kill_when(argv, out, condition, timeout=60.0) -> bool:
    """Run the command and kill -9 its whole process group once ``condition(out)``; True if it was cut short."""
    old = _temp_names(out)
    proc = _start(argv)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and not condition(out, old):
            if time.monotonic() > deadline:
                raise AssertionError("the run never reached the kill point")
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return proc.returncode == -signal.SIGKILL and _manifest_lines(out) < len(OUTPUT_IDS)


def _run_to_end(argv):
    result = subprocess.run(cli_command(*argv), capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    return result


def _assert_final_names_are_complete(out):
    for path in out.glob("*.nii.gz"):
        np.asarray(nib.load(str(path)).dataobj)  # a partial gzip raises here


def _assert_same_as_clean(out, clean):
    records = read_manifest(out / "manifest.jsonl")
    ids = [r["output_id"] for r in records]
    assert sorted(ids) == OUTPUT_IDS, "each output exactly once in the manifest"
    assert not temp_files(out)
    _assert_final_names_are_complete(out)
    files = {k: v for k, v in tree_digest(out).items() if k != "manifest.jsonl"}
    clean_files = {k: v for k, v in tree_digest(clean).items() if k != "manifest.jsonl"}
    assert files == clean_files
    by_id = lambda rs: sorted((stable(r) for r in rs), key=lambda r: r["output_id"])  # noqa: E731
    assert by_id(records) == by_id(read_manifest(clean / "manifest.jsonl"))


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_matches_a_clean_run(dataset, clean_run, tmp_path, point):
    out = tmp_path / "out"
    argv = _argv(dataset, out)
    interrupted = _kill_when(argv, out, KILL_POINTS[point])
    assert interrupted, "the run finished before the kill; the test did not interrupt it"
    _assert_final_names_are_complete(out)
    _run_to_end(argv)
    _assert_same_as_clean(out, clean_run)


def test_killed_again_and_again(dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    argv = _argv(dataset, out)
    kills = 0
    for condition in (KILL_POINTS["first-line"], KILL_POINTS["temp-file"], lambda o, old: _manifest_lines(o) >= 8):
        kills += _kill_when(argv, out, condition)
        _assert_final_names_are_complete(out)
    assert kills >= 2
    _run_to_end(argv)
    _assert_same_as_clean(out, clean_run)


def test_kill_9_with_workers_then_resume(dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    argv = _argv(dataset, out, "--workers", "2")
    assert _kill_when(argv, out, KILL_POINTS["first-line"])
    _assert_final_names_are_complete(out)
    _run_to_end(argv)  # resumed with the same worker count
    _assert_same_as_clean(out, clean_run)


def test_torn_last_manifest_line_is_redone(cli, dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    manifest = out / "manifest.jsonl"
    data = manifest.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    manifest.write_bytes(data[: last_start + (len(data) - last_start) // 2])  # killed during the append
    code, _, err = cli(*_argv(dataset, out))
    assert code == 0, err
    _assert_same_as_clean(out, clean_run)


def test_stale_temp_files_are_removed_and_live_ones_kept(cli, dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale = out / f"{TMP_PREFIX}{dead.pid}-abc.part"
        busy = out / f"{TMP_PREFIX}{live.pid}-def.part"
        stale.write_bytes(b"\x1f\x8b half a file")
        busy.write_bytes(b"another shard is writing this")
        code, _, err = cli(*_argv(dataset, out))
        assert code == 0, err
        assert not stale.exists()
        assert busy.exists(), "a temporary file of a running process must not be deleted"
    finally:
        live.kill()
        live.wait()


def test_rerun_of_a_finished_folder_writes_nothing(cli, dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    stats = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.iterdir()}
    before = tree_digest(out)
    time.sleep(0.01)
    code, _, err = cli(*[a for a in _argv(dataset, out) if a != "--quiet"])
    assert code == 0, err
    assert f"wrote 0 output(s), {len(OUTPUT_IDS)} already finished" in err
    assert tree_digest(out) == before
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.iterdir()} == stats


def test_deleted_output_is_made_again_and_listed_once(cli, dataset, clean_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    (out / "case_002_001_tumor.nii.gz").unlink()
    code, _, err = cli(*_argv(dataset, out))
    assert code == 0, err
    _assert_same_as_clean(out, clean_run)


@pytest.mark.parametrize("change, key", [
    (["--seed", "4"], "seed"),
    (["--per-scan", "3"], "per_scan"),
    (["--size-mm", "8-10"], "size_mm"),
])
def test_rerun_with_other_options_fails_clearly(cli, dataset, clean_run, tmp_path, change, key):
    out = tmp_path / "out"
    shutil.copytree(clean_run, out)
    before = tree_digest(out)
    argv = _argv(dataset, out)
    flag = change[0]
    at = argv.index(flag)
    argv[at: at + 2] = change
    code, _, err = cli(*argv)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert str(out) in lines[0] and key in lines[0] and "other options" in lines[0]
    assert tree_digest(out) == before


def test_temp_files_of_a_zombie_worker_are_stale(tmp_path):
    """A worker killed with its run stays a zombie until reaped; its temporary files are still stale."""
    from tumorsyn.io.writers import TMP_PREFIX, remove_stale_temp_files

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited but not reaped: a zombie
        with open(f"/proc/{child.pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    try:
        stale = tmp_path / f"{TMP_PREFIX}{child.pid}-abc.part"
        stale.write_bytes(b"partial")
        live = tmp_path / f"{TMP_PREFIX}{os.getppid()}-def.part"  # the test runner's parent: alive
        live.write_bytes(b"in progress")
        assert remove_stale_temp_files(tmp_path) == 1
        assert not stale.exists() and live.exists()
    finally:
        child.wait()
