"""benchmarks/bench_diffusion.py --model: a trained model folder is timed, with the recipe's target."""
from __future__ import annotations

import os
import subprocess
import sys

from diffusion_helpers import untrained_model
from tests.conftest import REPO


def test_bench_times_a_given_model_folder(tmp_path):
    folder = untrained_model(tmp_path / "model")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_diffusion.py"), "--model", str(folder),
                           "--tumours", "1", "--batch", "1", "--steps", "2", "--threads", "1", "--no-train"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"# model: {folder} (trained)" in proc.stdout
    assert "<= 10 s on CPU" in proc.stdout and "random weights" not in proc.stdout
    assert "## batch: 1 tumours in one apply_batch" in proc.stdout


def test_bench_times_a_mixture(tmp_path):
    """A mixture folder (two untrained members) is described by its first member and timed like one model."""
    from train_diffusion.export import export_mixture

    members = [untrained_model(tmp_path / f"m{k}") for k in range(2)]
    folder = export_mixture(tmp_path / "mixture", members, summary={"untrained": True})
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_diffusion.py"), "--model", str(folder),
                           "--tumours", "2", "--batch", "2", "--steps", "2", "--threads", "1", "--no-train"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"# model: {folder} (trained, a mixture of 2)" in proc.stdout
    assert "## batch: 2 tumours in one apply_batch" in proc.stdout
