"""benchmarks/bench_diffusion.py --model: a trained model folder is timed, with the recipe's target."""
from __future__ import annotations

import os
import subprocess
import sys

from diffusion_helpers import untrained_model
from tests.conftest import REPO


def _bench(folder, tumours: int) -> str:
    """bench_diffusion.py's output for ``tumours`` tumours (and a batch of as many) of the model ``folder``, on the CPU."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_diffusion.py"), "--model", str(folder),
                           "--tumours", str(tumours), "--batch", str(tumours), "--steps", "2", "--threads", "1",
                           "--no-train"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_times_a_given_model_folder(tmp_path):
    folder = untrained_model(tmp_path / "model")
    out = _bench(folder, 1)
    assert f"# model: {folder} (trained)" in out
    assert "<= 10 s on CPU" in out and "random weights" not in out
    assert "## batch: 1 tumours in one apply_batch" in out


def test_bench_times_a_mixture(tmp_path):
    """A mixture folder (two untrained members) is described by its first member and timed like one model."""
    from train_diffusion.export import export_mixture

    members = [untrained_model(tmp_path / f"m{k}") for k in range(2)]
    folder = export_mixture(tmp_path / "mixture", members, summary={"untrained": True})
    out = _bench(folder, 2)
    assert f"# model: {folder} (trained, a mixture of 2)" in out
    assert "## batch: 2 tumours in one apply_batch" in out
