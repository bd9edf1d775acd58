"""benchmarks/gpu_check.py (`make gpu-check`): the CPU half in CI-like conditions, failing sections, refusals.

Every run hides the GPUs (CUDA_VISIBLE_DEVICES=""), so these tests check the CPU half on any machine.
No wall-clock time is asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
SECTIONS = ["ca_identity", "ca_throughput", "diffusion_training", "diffusion_sampling", "segment_train",
            "segment_infer"]


def run_check(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def read_outputs(out):
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


@pytest.mark.slow
def test_quick_cpu_half(tmp_path):
    out = tmp_path / "check"
    proc = run_check("--out", out, "--quick", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, md = read_outputs(out)
    assert report["schema"] == "tumorsyn-gpu-check/1" and report["quick"] is True
    assert report["status"] == "ok" and report["failed_sections"] == []
    assert report["gpu"]["present"] is False and report["gpu"]["name"] is None
    assert "no CUDA GPU" in report["gpu"]["found"] and "no CUDA GPU" in md
    for key in ("torch", "numba", "monai", "diffusers", "accelerate", "tumorsyn"):
        assert report["versions"][key] != "not installed", key
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    sections = {s["name"]: s for s in report["sections"]}
    assert list(sections) == SECTIONS
    for s in report["sections"]:
        assert isinstance(s["wall_s"], float) and s["wall_s"] >= 0 and s["error"] is None
    identity = sections["ca_identity"]
    assert identity["status"] == "skipped" and "no CUDA GPU" in identity["note"] and identity["rows"] == []
    for name in SECTIONS[1:]:
        s = sections[name]
        assert s["status"] == "ok" and s["rows"], name
        for row in s["rows"]:
            assert isinstance(row["cpu"], float) and row["cpu"] > 0, (name, row)
            assert row["gpu"] == "no GPU" and row["speedup"] is None and row["verdict"] is None, (name, row)
    assert "GPU half not run" in sections["ca_throughput"]["note"]
    assert "trained here" in sections["diffusion_sampling"]["note"]  # says which model was timed
    assert {r["unit"] for r in sections["diffusion_training"]["rows"]} == {"crops/s", "MiB"}
    assert (out / "work" / "diffusion_model_run" / "model" / "config.json").is_file()
    # One table: its header, its separator, and a row per section (name in the first cell).
    lines = md.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| section | status | wall s | figure | unit | CPU: ") and "| GPU: none |" in table[0]
    assert set(table[1]) <= set("|-: ")
    assert [line.split("|")[1].strip() for line in table[2:] if line.split("|")[1].strip()] == SECTIONS
    assert lines.index(table[0]) + len(table) == len(lines)  # nothing after the table: one table, contiguous


def test_failing_section_named_and_others_run(tmp_path):
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    out = tmp_path / "check"
    proc = run_check("--out", out, "--quick", "--threads", "1", "--only", "diffusion_sampling,ca_throughput",
                     "--diffusion-model", not_a_model)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report, md = read_outputs(out)
    assert report["status"] == "failed" and report["failed_sections"] == ["diffusion_sampling"]
    sections = {s["name"]: s for s in report["sections"]}
    failed = sections["diffusion_sampling"]
    assert failed["status"] == "failed" and str(not_a_model) in failed["error"] and "\n" not in failed["error"]
    assert failed["rows"] == []
    assert sections["ca_throughput"]["status"] == "ok" and sections["ca_throughput"]["rows"]
    assert f"| diffusion_sampling | failed: {failed['error']}" in md
    assert "failed: diffusion_sampling" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--diffusion-model", "{tmp}/missing"], "{tmp}/missing: no such model folder"),
    (["--diffusion-model", "{tmp}/check/work/model"], "{tmp}/check/work/model: lies inside {tmp}/check/work"),
    (["--diffusion-config", "{tmp}/none.yaml"], "{tmp}/none.yaml: no such diffusion config"),
])
def test_refusals_write_nothing(tmp_path, args, message):
    (tmp_path / "check" / "work" / "model").mkdir(parents=True)
    (tmp_path / "check" / "work" / "model" / "keep").write_text("")
    proc = run_check("--out", tmp_path / "check", *[a.format(tmp=tmp_path) for a in args], timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("gpu_check: " + message.format(tmp=tmp_path))
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "check").iterdir()) == ["work"]  # no report, nothing cleared
    assert (tmp_path / "check" / "work" / "model" / "keep").is_file()


def test_unknown_section_refused(tmp_path):
    proc = run_check("--out", tmp_path / "check", "--only", "ca_throughput,gpu_magic", timeout=60)
    assert proc.returncode == 2 and "unknown section(s) gpu_magic" in proc.stderr
    assert not (tmp_path / "check").exists()
