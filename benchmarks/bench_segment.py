"""Segmentation benchmarks: training step time with and without on-the-fly synthesis (same settings,
workers on), the item pipeline's CPU cost, and sliding-window inference time + peak memory for a
512x512x150 scan.

    python benchmarks/bench_segment.py [--steps 14] [--rounds 3] [--workers 2] [--scan ts|ircad07]
                                       [--device cpu|cuda] [--no-infer]

Training uses a healthy liver (``ts``: the bundled TotalSegmentator example, 3 mm resampled to
1.5 mm; ``ircad07``: 3D-IRCADb patient 7 from ../shared/data/real, 0.78x0.78x1.6 mm resampled to
1.5 mm) with the demo's tiny UNet, 2 x 64^3 patches per step, rules synthesis p=1 with the default
size mix. Runs with and without synthesis alternate (``--rounds`` pairs, order swapped every
round) so that other load on the machine hits both alike; the first 2 steps of each run (worker
start-up) are not timed; medians are over every timed step of every round. The load average is
printed before and after: on a shared machine compare figures taken under similar load.
Prints tables; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = REPO.parent / "shared" / "data" / "real"
SCANS = {
    "ts": {"ct": str(REPO / "tumorsyn/data/example_ct.nii.gz"), "labels": str(REPO / "tumorsyn/data/example_labels.nii.gz")},
    "ircad07": {"ct": str(REAL / "3dircadb1/3Dircadb1.7/ct.nii.gz"),
                "organ": str(REAL / "3dircadb1/3Dircadb1.7/masks/liver.nii.gz")},
}


def _config(tmp: Path, *, synthesis: bool, workers: int, steps: int, scan: str = "ts", tag: str = "",
            roi_size=(64, 64, 64), cpu: bool = False) -> dict:
    from segment.config import load_config

    data = {
        "seed": 0, "organ": "liver", "output_dir": str(tmp / (("syn" if synthesis else "plain") + tag)),
        "data": {"healthy": {"cases": [dict(SCANS[scan], id=scan)], "label_preset": "totalsegmentator"},
                 "spacing_mm": [1.5, 1.5, 1.5], "roi_size": list(roi_size), "samples_per_scan": 2,
                 "workers": workers, "crop_margin_mm": 10.0},
        "synthesis": {"enabled": synthesis, "prob": 1.0, "count": 1},
        "network": {"name": "unet", "kwargs": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}},
        "train": {"epochs": 1, "steps_per_epoch": steps, "checkpoint_every": 10**6, "select_on": "last", "cpu": cpu},
    }
    return load_config(None, data=data)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers, once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def step_seconds(run: Path) -> list[float]:
    """Seconds of each step of a finished run from its steps.csv, the first 2 (worker start-up) left out."""
    lines = (run / "steps.csv").read_text().splitlines()[1:]
    stamps = [float(line.split(",")[4]) for line in lines]
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def bench_train(steps: int, workers: int, rounds: int, scan: str) -> dict:
    """Per-step seconds (every timed step of every round) for synthesis off and on, and CPU seconds per step.

    The CPU figure (main process + workers, whole run including its setup, divided by the steps)
    hardly depends on other load on the machine; its difference between the two arms is what
    synthesis costs per step.
    """
    from segment.train import train

    out: dict = {False: [], True: []}
    cpu: dict = {False: [], True: []}
    per_round: list = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            medians = {}
            for synthesis in ((False, True) if r % 2 == 0 else (True, False)):
                cfg = _config(Path(tmp), synthesis=synthesis, workers=workers, steps=steps, scan=scan, tag=str(r))
                cpu0 = _cpu_seconds()
                run = train(cfg, quiet=True)
                cpu[synthesis].append((_cpu_seconds() - cpu0) / steps)
                per_step = step_seconds(run)
                out[synthesis] += per_step
                medians[synthesis] = statistics.median(per_step)
            per_round.append(medians)
    return {"steps": out, "rounds": per_round, "cpu": cpu}


def bench_items(n: int, scan: str) -> dict:
    """CPU seconds per item of the worker pipeline (main process, one thread), synthesis off and on."""
    from segment.data import TrainSamples, build_train_transform, load_sources

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for synthesis in (False, True):
                cfg = _config(Path(tmp), synthesis=synthesis, workers=0, steps=1, scan=scan)
                dataset = TrainSamples(load_sources(cfg), build_train_transform(cfg), seed=0,
                                       roi_size=cfg["data"]["roi_size"])
                dataset[0]  # first item per scan fills the caches: not timed
                t0 = time.process_time()
                for k in range(1, n + 1):
                    dataset[k]
                out[synthesis] = (time.process_time() - t0) / n
    finally:
        torch.set_num_threads(torch_threads)
    return out


def bench_infer(device: str, shape=(512, 512, 150)) -> dict:
    """Sliding-window inference of the tiny UNet on a noise volume of ``shape`` at 0.8 x 0.8 x 2 mm."""
    from segment.networks import build_network
    from segment.predict import predict_array

    rng = np.random.default_rng(0)
    spacing = (0.8, 0.8, 2.0)
    ct = rng.normal(40, 20, size=shape).astype(np.float32)
    ct[:40] = -1000
    model = build_network("unet", channels=[8, 16, 32, 64], strides=[2, 2, 2], num_res_units=1).to(device).eval()
    meta = {"data": {"spacing_mm": [1.5, 1.5, 1.5], "roi_size": [96, 96, 96], "hu_window": [-175, 250],
                     "crop_margin_mm": 20}, "predict": {"overlap": 0.5, "sw_batch_size": 2}}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    predict_array(model, meta, ct, spacing, device=device)
    seconds = time.perf_counter() - t0
    gpu = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB (Linux)
    return {"seconds": seconds, "peak_rss_gib": rss, "peak_gpu_gib": gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=14, help="optimizer steps per run (2 untimed)")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (synthesis off/on)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scan", choices=sorted(SCANS), default="ts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-infer", action="store_true", help="skip the inference benchmark")
    args = parser.parse_args()
    if args.scan == "ircad07" and not REAL.exists():
        sys.exit(f"--scan ircad07 needs {REAL} (see ../shared/data/README.md)")
    import monai

    print(f"device {args.device} ({torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU, '}"
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores), torch {torch.__version__}, monai {monai.__version__}")
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    items = bench_items(30, args.scan)
    print(f"\nitem pipeline, CPU s per item (2 x 64^3 patches, one worker thread; scan {args.scan})")
    print(f"| synthesis off | synthesis on | difference |\n|---:|---:|---:|\n| {items[False]:.4f} | {items[True]:.4f} | "
          f"{items[True] - items[False]:+.4f} |")
    result = bench_train(args.steps, args.workers, args.rounds, args.scan)
    times = result["steps"]
    print(f"\ntraining step (UNet 8-64ch, 2 x 64^3 patches/step, workers={args.workers}, scan {args.scan}, "
          f"{args.rounds} rounds x {args.steps - 2} timed steps)")
    print("| synthesis | median s/step | mean s/step | max s/step |")
    print("|---|---:|---:|---:|")
    for synthesis in (False, True):
        values = times[synthesis]
        print(f"| {'on (rules, p=1)' if synthesis else 'off'} | {statistics.median(values):.3f} | "
              f"{statistics.mean(values):.3f} | {max(values):.3f} |")
    cpu = {k: statistics.median(v) for k, v in result["cpu"].items()}
    print(f"CPU s per step, all processes (setup included): off {cpu[False]:.3f}, on {cpu[True]:.3f} "
          f"({100 * (cpu[True] / cpu[False] - 1):+.1f} %)")
    rounds = ", ".join(f"{100 * (r[True] / r[False] - 1):+.1f} %" for r in result["rounds"])
    overhead = statistics.median(times[True]) / statistics.median(times[False]) - 1
    print(f"synthesis overhead (median of all steps): {100 * overhead:+.1f} % (target < 10 %); per round: {rounds}")
    print("load average (1, 5, 15 min) after: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.no_infer:
        return
    r = bench_infer(args.device)
    print("\ninference, 512x512x150 scan (0.8x0.8x2 mm -> 1.5 mm), 96^3 windows, overlap 0.5, Gaussian blending")
    gpu = "n/a" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
    print(f"| device | seconds | peak RSS GiB | peak GPU GiB |\n|---|---:|---:|---:|\n| {args.device} | {r['seconds']:.1f} | "
          f"{r['peak_rss_gib']:.2f} | {gpu} |")


if __name__ == "__main__":
    main()
