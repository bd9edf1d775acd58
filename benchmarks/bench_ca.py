"""Benchmark of the cellular-automaton generator (``method="ca"``) against a full-box baseline.

Per-tumour seconds (median / mean / max) for 10, 20 and 40 mm liver tumours on the bundled
TotalSegmentator example (3 mm) and, when present, the 3D-IRCADb patient 7 liver
(0.78 x 0.78 x 1.6 mm, cropped to the liver at load time). Timed: ``apply_specs`` (tissue
map, growth, HU) per spec; specs are drawn untimed. Kernel compile time is reported apart, and
the peak resident memory above the loaded scan (and its placement context) per size.

Baseline, in the same run: the ancestor's design, restated from ANCHORS.md: every step scans the
whole organ bounding box (the tissue map built over that box, the same per-voxel rules compiled
with Numba, parallel), for the same step count. The ratio isolates the active-box design.

Run: ``python benchmarks/bench_ca.py [--n 10] [--device cpu|cuda|auto]``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tumorsyn  # noqa: E402
from benchkit import MB, PeakRSS, loadavg  # noqa: E402  (this folder)
from tumorsyn.configfile import real_data_dir  # noqa: E402
from tumorsyn.io import load_labels, load_scan  # noqa: E402
from tumorsyn.io.labels import label_values, organ_mask_from_labels  # noqa: E402
from tumorsyn.placement import bounding_box  # noqa: E402

IRCAD = real_data_dir()[0] / "3dircadb1" / "3Dircadb1.7"


def _baseline_kernel():
    from numba import njit, prange

    from tumorsyn.generators.ca.automaton import choose_voxel, update_voxel

    @njit(parallel=True, cache=False)
    def full_box(pop, age, pressure, invade, push, tissue, prob, offsets, seed, steps, capacity, yield_pushes,
                 p_prol, si, sj, sk):
        nx, ny, nz = pop.shape
        for step in range(steps):
            for i in prange(1, nx - 1):          # every voxel of the organ box, every step
                for j in range(1, ny - 1):
                    for k in range(1, nz - 1):
                        a, b = choose_voxel(i, j, k, pop, tissue, pressure, prob, offsets, seed, step, capacity,
                                            yield_pushes, si, sj, sk)
                        invade[i, j, k] = a
                        push[i, j, k] = b
            for i in prange(1, nx - 1):
                for j in range(1, ny - 1):
                    for k in range(1, nz - 1):
                        new, ag, pr, _ = update_voxel(i, j, k, pop, age, pressure, tissue, invade, push, offsets,
                                                      seed, step, capacity, p_prol, 2**31 - 1, 255, np.float32(0.0),
                                                      si, sj, sk)
                        pop[i, j, k] = new
                        age[i, j, k] = ag
                        pressure[i, j, k] = pr
        return pop

    return full_box


_COLD = """
import time, numpy as np
t0 = time.perf_counter()
from tumorsyn.generators.ca.grow import grow_ca
from tumorsyn.generators.ca.model import MID
tissue = np.full((12, 12, 12), MID, np.int8)
tissue[[0, -1]] = 0; tissue[:, [0, -1]] = 0; tissue[:, :, [0, -1]] = 0
prob = np.full((7, 26), 0.5, np.float32)
for parallel in (False, True):
    grow_ca(tissue, prob, seed=0, seed_voxel=(6, 6, 6), steps=2, device="cpu", parallel=parallel)
print(time.perf_counter() - t0)
"""


def cold_compile_s() -> float:
    """Seconds to compile both CPU kernels from nothing (a fresh process with an empty cache folder)."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def baseline_tumour(kernel, ct, organ, spec):
    """The ancestor's design: tissue map of the whole organ box, then a full-box scan per step."""
    from tumorsyn.generators.ca.model import OFFSETS, probability_table, tissue_classes

    box = bounding_box(organ)
    tissue = tissue_classes(organ[box], spacing_mm=spec.spacing_mm, organ=spec.organ,
                            organ_mean_hu=spec.organ_mean_hu, organ_std_hu=spec.organ_std_hu, ct_box=ct[box],
                            exophytic=False)
    seed_voxel = tuple(int(round(c)) - b.start + 1 for c, b in zip(spec.center_vox, box))
    pop = np.zeros(tissue.shape, np.int8)
    pop[seed_voxel] = 5
    z8 = np.zeros(tissue.shape, np.uint8)
    p = spec.params
    return kernel(pop, z8, z8.copy(), np.full(tissue.shape, -1, np.int8), np.full(tissue.shape, -1, np.int8), tissue,
                  probability_table(p, spec.spacing_mm), OFFSETS, spec.seed, int(p["steps"]), int(p["capacity"]),
                  int(p["yield_pushes"]), np.float32(p["p_proliferate"]), *seed_voxel)


def _stats(times):
    t = np.asarray(times)
    return f"{np.median(t):8.4f} {t.mean():8.4f} {t.max():8.4f}"


def run_case(name, ct, organ, spacing, *, n, device, baseline_n, kernel):
    context = tumorsyn.PlacementContext(organ, spacing, "liver", ct_hu=ct)
    print(f"\n{name}: grid {ct.shape}, spacing {tuple(round(s, 3) for s in spacing)} mm, "
          f"liver box {tuple(b.stop - b.start for b in bounding_box(organ))} voxels")
    print(f"{'size':>6} {'n':>3} {'steps':>6} {'ca median':>9} {'mean':>8} {'max':>8} | "
          f"{'baseline med':>12} {'mean':>8} {'max':>8} | {'ratio':>6}  {'voxel-updates':>13}  MB above scan: RSS peak, traced max")
    rng = np.random.default_rng(0)
    for size in (10.0, 20.0, 40.0):
        specs = []
        for _ in range(n):
            try:
                specs.append(tumorsyn.sample_spec(organ, spacing, organ="liver", method="ca",
                                                  size_mm=(0.9 * size, 1.1 * size), ct_hu=ct, rng=rng,
                                                  context=context, max_tries=50))
            except tumorsyn.errors.OrganTooSmallError:
                break
        if not specs:
            print(f"{size:6.0f}  -- the organ cannot hold this size")
            continue
        times, work = [], []
        gauge = PeakRSS()
        rss_before = gauge.current()
        gauge.reset()
        for spec in specs:
            t0 = time.perf_counter()
            tumorsyn.apply_specs(ct, organ, spacing, spec, device=device).tumors[0]
            times.append(time.perf_counter() - t0)
        peak_mb = (gauge.peak() - rss_before) / MB
        # Resident growth stays near zero when freed heap is reused; the traced peak of the arrays
        # allocated while drawing one tumour (a separate, untimed pass) shows the working set.
        tracemalloc.start()
        traced = []
        for spec in specs:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            tumorsyn.apply_specs(ct, organ, spacing, spec, device=device).tumors[0]
            traced.append((tracemalloc.get_traced_memory()[1] - base) / MB)
        tracemalloc.stop()
        from tumorsyn.generators.ca.generator import CAGenerator

        gen = CAGenerator(device=device)
        for spec in specs[:3]:
            slices = gen.box(spec)
            res, _ = gen.grow(spec, organ[slices], tuple(s.start for s in slices), ct_box=ct[slices])
            work.append(res.work)
        btimes = []
        for spec in specs[:baseline_n]:
            t0 = time.perf_counter()
            baseline_tumour(kernel, ct, organ, spec)
            btimes.append(time.perf_counter() - t0)
        steps = int(np.median([s.params["steps"] for s in specs]))
        print(f"{size:6.0f} {len(specs):3d} {steps:6d} {_stats(times)} | {_stats(btimes)}    | "
              f"{np.median(btimes) / np.median(times):6.1f}x  {int(np.median(work)):>13,}  {peak_mb:8.1f} {max(traced):8.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10, help="tumours per size (default 10)")
    parser.add_argument("--baseline-n", type=int, default=1,
                        help="baseline tumours per size (default 1: ~1 s per step on a full 3D-IRCADb liver box)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)

    import numba

    from tumorsyn.generators.ca.grow import resolve_device

    print(f"tumorsyn {tumorsyn.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {numba.get_num_threads()} threads ({platform.processor() or 'cpu'})")
    gpu = resolve_device("auto").kind == "cuda"
    print("GPU:", "present" if gpu else "no GPU here (GPU figures not measured)")
    print(f"load average at start: {loadavg()} (other processes share the cores)")
    # Compile (or load from the cache) apart from the timings.
    ct0, liver, sp0 = example_liver()
    t0 = time.perf_counter()
    spec = tumorsyn.sample_spec(liver, sp0, organ="liver", method="ca", size_mm=(8, 12), ct_hu=ct0, rng=0)
    tumorsyn.synthesize(ct0, liver, sp0, spec, device=args.device)
    from tumorsyn.generators.ca.grow import grow_ca
    from tumorsyn.generators.ca.model import MID, probability_table

    tissue = np.full((70, 70, 70), MID, np.int8)
    tissue[[0, -1]] = 0
    tissue[:, [0, -1]] = 0
    tissue[:, :, [0, -1]] = 0
    grow_ca(tissue, probability_table(spec.params, (1, 1, 1)), seed=0, seed_voxel=(35, 35, 35), steps=2,
            device="cpu", parallel=True)
    print(f"kernel compile / cache load (serial + parallel CPU kernels, first tumour): "
          f"{time.perf_counter() - t0:.2f} s")
    print(f"kernel compile with an empty Numba cache (fresh process, both CPU kernels): {cold_compile_s():.1f} s")
    kernel = _baseline_kernel()
    t0 = time.perf_counter()
    baseline_tumour(kernel, ct0, liver, spec.with_params(params={**spec.params, "steps": 1}))
    print(f"baseline compile: {time.perf_counter() - t0:.2f} s")

    run_case("TotalSegmentator example liver", ct0, liver, sp0, n=args.n, device=args.device,
             baseline_n=args.baseline_n, kernel=kernel)
    ircad = ircad_liver()
    if ircad is not None:
        run_case("3D-IRCADb 1.7 liver", *ircad, n=args.n, device=args.device, baseline_n=args.baseline_n,
                 kernel=kernel)
    else:
        print("\n3D-IRCADb patient 7 not in ../shared/data/real: skipped")
    if gpu:
        gpu_throughput(ct0, liver, sp0)
    else:
        print("\nGPU throughput (batch of 64 specs): no GPU here")


def example_liver() -> tuple[np.ndarray, np.ndarray, tuple]:
    """The bundled TotalSegmentator example: ``(ct HU, liver mask, spacing mm)``."""
    scan = load_scan(REPO / "tumorsyn/data/example_ct.nii.gz")
    labels = label_values(load_labels(REPO / "tumorsyn/data/example_labels.nii.gz"))
    return scan.values(), organ_mask_from_labels(labels, "liver", preset="totalsegmentator"), scan.spacing_mm


def ircad_liver() -> tuple[np.ndarray, np.ndarray, tuple] | None:
    """3D-IRCADb patient 7 cut to its liver's box plus 4 voxels: ``(ct, liver, spacing)``; None when absent.

    The full scan is 512 x 512 x 151: cutting at load time keeps every later array small.
    """
    if not IRCAD.exists():
        return None
    scan = load_scan(IRCAD / "ct.nii.gz")
    full = label_values(load_labels(IRCAD / "masks" / "liver.nii.gz")) > 0
    box = tuple(slice(max(int(i.min()) - 4, 0), int(i.max()) + 5) for i in np.nonzero(full))
    return scan.values()[box], full[box], scan.spacing_mm


def ca_specs(ct, organ, spacing, count: int, *, size_mm=(18.0, 22.0), seed: int = 64) -> list:
    """``count`` CA liver specs of ``size_mm`` (equivalent diameter), drawn with ``seed``."""
    context = tumorsyn.PlacementContext(organ, spacing, "liver", ct_hu=ct)
    rng = np.random.default_rng(seed)
    return [tumorsyn.sample_spec(organ, spacing, organ="liver", method="ca", size_mm=size_mm, ct_hu=ct, rng=rng,
                                 context=context, max_tries=50) for _ in range(count)]


def ca_rate(ct, organ, spacing, specs, device: str) -> float:
    """Tumours per second of ``apply_specs`` per spec, one after another, after an untimed warm-up."""
    tumorsyn.apply_specs(ct, organ, spacing, specs[0], device=device).tumors[0]  # compile / warm up
    t0 = time.perf_counter()
    for spec in specs:
        tumorsyn.apply_specs(ct, organ, spacing, spec, device=device).tumors[0]
    return len(specs) / (time.perf_counter() - t0)


def gpu_throughput(ct0, liver0, sp0, batch: int = 64) -> None:
    """Tumours per second for ``batch`` 20 mm liver specs, CUDA vs the CPU kernel, same specs."""
    ircad = ircad_liver()
    ct, organ, spacing = ircad if ircad is not None else (ct0, liver0, sp0)
    name = "3D-IRCADb 1.7" if ircad is not None else "TotalSegmentator example"
    specs = ca_specs(ct, organ, spacing, batch)
    rates = {device: ca_rate(ct, organ, spacing, specs, device) for device in ("cuda", "cpu")}
    print(f"\nGPU throughput, {batch} specs of 20 mm on {name} (apply_specs per spec, one after another):")
    print(f"  cuda {rates['cuda']:.1f} tumours/s, cpu {rates['cpu']:.1f} tumours/s, ratio {rates['cuda'] / rates['cpu']:.1f}x")

if __name__ == "__main__":
    main()
