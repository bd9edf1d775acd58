"""Helpers of the reader-study tests: phantom cases, a `generate`-style manifest, a server subprocess."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import make_phantom

from reader_study.render import RenderSettings

REPO = Path(__file__).resolve().parents[2]
# Small crops keep the tests fast; the defaults are exercised by the real-data test and the benchmark.
SMALL = RenderSettings(fov_mm=32.0, depth_mm=32.0, pixel_mm=1.0, slice_mm=2.0)


def _lesion(ct: np.ndarray, organ: np.ndarray, spacing, rng, diameter_mm: float) -> np.ndarray:
    """Carve a hypodense sphere of ``diameter_mm`` at a random place inside the organ."""
    inside = np.argwhere(organ)
    centre = inside[rng.integers(len(inside))]
    idx = np.indices(ct.shape).astype(np.float32)
    r2 = sum(((idx[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    mask = (r2 <= (diameter_mm / 2) ** 2) & organ
    ct[mask] -= 40.0
    return mask


def write_case(folder: Path, name: str, *, diameter_mm: float, seed: int, shape=(64, 64, 40),
               spacing=(1.0, 1.0, 1.5)) -> tuple[Path, Path]:
    """Write ``<name>_ct.nii.gz`` (int16 HU) and ``<name>_tumor.nii.gz`` (uint8) into ``folder``."""
    rng = np.random.default_rng(seed)
    ct, organ, spacing = make_phantom(shape=shape, spacing=spacing, seed=seed)
    mask = _lesion(ct, organ, spacing, rng, diameter_mm)
    affine = np.diag([*spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    ct_path, mask_path = folder / f"{name}_ct.nii.gz", folder / f"{name}_tumor.nii.gz"
    nib.save(nib.Nifti1Image(np.rint(ct).astype(np.int16), affine), ct_path)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_path)
    return ct_path, mask_path


def make_sources(root: Path, *, n_real: int = 4, n_synthetic: int = 4, diameters=(8.0, 14.0)) -> tuple[Path, Path]:
    """A folder of real pairs and a synthetic folder with a manifest.jsonl in `tumorsyn generate`'s format."""
    real, synthetic = root / "real", root / "synthetic"
    for i in range(n_real):
        write_case(real, f"r{i:02d}", diameter_mm=diameters[i % len(diameters)], seed=100 + i)
    lines = []
    for i in range(n_synthetic):
        ct, mask = write_case(synthetic, f"s{i:02d}", diameter_mm=diameters[i % len(diameters)], seed=200 + i)
        lines.append(json.dumps({"output_id": f"s{i:02d}", "organ": "liver", "method": "rules",
                                 "outputs": {"ct": ct.name, "tumor": mask.name}}))
    (synthetic / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return real, synthetic


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(study: Path, port: int) -> subprocess.Popen:
    """`tumorsyn reader-study serve` in a subprocess; returns once it answers HTTP."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tumorsyn.cli.main", "reader-study", "serve", str(study),
                             "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/me", timeout=1.0)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start within 30 s")
