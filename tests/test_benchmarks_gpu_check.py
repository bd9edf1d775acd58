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


# --- the GPU half's bookkeeping, with stand-ins for the GPU (no GPU is needed) ---------------------------

@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    return gpu_check


def fake_context(gpu_check, tmp_path, **kw):
    return gpu_check.Context(out=tmp_path, work=tmp_path / "work", sizes=gpu_check.QUICK, quick=True, threads=1,
                             torch_gpu=kw.get("torch_gpu"), numba_gpu=kw.get("numba_gpu", False),
                             diffusion_model=kw.get("diffusion_model"),
                             diffusion_config=gpu_check.TINY_CONFIG.resolve())


def test_ca_sections_with_a_stand_in_gpu(gpu_check, tmp_path, monkeypatch):
    """With numba-cuda 'present', identity compares >= 20 specs per scan and throughput forms GPU/CPU."""
    import tumorsyn

    real_apply = tumorsyn.apply_specs
    devices = []

    def apply_specs(ct, organ, spacing, specs, *, device="auto"):
        devices.append(device)
        return real_apply(ct, organ, spacing, specs, device="cpu")  # the stand-in 'GPU' is the CPU kernel

    monkeypatch.setattr(tumorsyn, "apply_specs", apply_specs)
    ctx = fake_context(gpu_check, tmp_path, numba_gpu=True)
    identity = gpu_check.run_section("ca_identity", ctx)
    assert identity.status == "ok" and len(identity.rows) == 1
    row = identity.rows[0]
    assert row["cpu"] == 20 and row["gpu"] == "20/20" and row["verdict"] == "PASS"
    assert devices.count("cuda") == devices.count("cpu") == 20
    throughput = gpu_check.run_section("ca_throughput", ctx)
    row = throughput.rows[0]
    assert throughput.status == "ok" and isinstance(row["gpu"], float)
    assert row["speedup"] == pytest.approx(row["gpu"] / row["cpu"]) and row["verdict"] in ("PASS", "MISS")
    assert "GPU half not run" not in (throughput.note or "")


def test_identity_counts_a_difference(gpu_check, tmp_path, monkeypatch):
    """One changed voxel in one 'GPU' tumour: 19/20 and MISS."""
    import tumorsyn

    real_apply = tumorsyn.apply_specs
    calls = []

    def apply_specs(ct, organ, spacing, specs, *, device="auto"):
        out = real_apply(ct, organ, spacing, specs, device="cpu")
        calls.append(device)
        if device == "cuda" and calls.count("cuda") == 7:
            out.tumors[0].ct_box.flat[0] += 1.0
        return out

    monkeypatch.setattr(tumorsyn, "apply_specs", apply_specs)
    row = gpu_check.run_section("ca_identity", fake_context(gpu_check, tmp_path, numba_gpu=True)).rows[0]
    assert row["gpu"] == "19/20" and row["verdict"] == "MISS"


@pytest.mark.parametrize("gpu_s, verdict", [(0.5, "PASS"), (2.0, "MISS")])
def test_diffusion_sampling_target_at_batch_16(gpu_check, tmp_path, monkeypatch, gpu_s, verdict):
    import bench_diffusion

    def bench_sampling(model_dir, *, device, tumours, batch, steps):
        per = 8.0 if device == "cpu" else gpu_s
        return {"times": [2 * per] * tumours, "batch_s": per * batch, "batch": batch, "steps": 10,
                "sampler": "dpm_solver", "sizes": [12.0, 18.0]}

    monkeypatch.setattr(bench_diffusion, "bench_sampling", bench_sampling)
    ctx = fake_context(gpu_check, tmp_path, torch_gpu="Stand-in GPU", diffusion_model=tmp_path)
    sec = gpu_check.run_section("diffusion_sampling", ctx)
    assert sec.status == "ok" and f"model folder {tmp_path} (--diffusion-model)" in sec.note
    one, many = sec.rows
    assert one["speedup"] == pytest.approx(8.0 / gpu_s) and one["verdict"] is None
    assert many["gpu"] == gpu_s and many["verdict"] == verdict


def test_gpu_without_numba_cuda_fails_the_ca_sections(gpu_check, tmp_path):
    ctx = fake_context(gpu_check, tmp_path, torch_gpu="Stand-in GPU", numba_gpu=False)
    ctx.gpu_found = "CUDA GPU: Stand-in GPU; numba-cuda sees no CUDA device"
    for name in ("ca_identity", "ca_throughput"):
        sec = gpu_check.run_section(name, ctx)
        assert sec.status == "failed" and sec.rows == []
        assert sec.error == ("torch sees Stand-in GPU but the CA kernel cannot use it (CUDA GPU: Stand-in GPU; "
                             "numba-cuda sees no CUDA device); `make install` installs numba-cuda (tumorsyn[cuda]): "
                             "check it and the CUDA driver")
