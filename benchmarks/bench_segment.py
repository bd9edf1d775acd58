"""Segmentation benchmarks: training step time with and without on-the-fly synthesis (same settings,
workers on), and sliding-window inference time + peak memory for a 512x512x150 scan.

    python benchmarks/bench_segment.py [--steps 12] [--workers 2] [--device cpu|cuda]

Training uses the bundled TotalSegmentator example (liver, 3 mm resampled to 1.5 mm) with the
demo's tiny UNet; the first 2 steps (worker start-up) are not timed. Inference uses a synthetic
512x512x150 CT (0.8x0.8x2 mm) with the same network. Prints one table; asserts nothing.
"""
from __future__ import annotations

import argparse
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


def _config(tmp: Path, *, synthesis: bool, workers: int, steps: int) -> dict:
    from segment.config import load_config

    data = {
        "seed": 0, "organ": "liver", "output_dir": str(tmp / ("syn" if synthesis else "plain")),
        "data": {"healthy": {"cases": [{"ct": str(REPO / "tumorsyn/data/example_ct.nii.gz"),
                                        "labels": str(REPO / "tumorsyn/data/example_labels.nii.gz")}],
                             "label_preset": "totalsegmentator"},
                 "spacing_mm": [1.5, 1.5, 1.5], "roi_size": [64, 64, 64], "samples_per_scan": 2,
                 "workers": workers, "crop_margin_mm": 10.0},
        "synthesis": {"enabled": synthesis, "prob": 1.0, "count": 1},
        "network": {"name": "unet", "kwargs": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1}},
        "train": {"epochs": 1, "steps_per_epoch": steps, "checkpoint_every": 10**6, "select_on": "last"},
    }
    return load_config(None, data=data)


def bench_train(steps: int, workers: int) -> dict:
    from segment.train import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for synthesis in (False, True):
            run = train(_config(Path(tmp), synthesis=synthesis, workers=workers, steps=steps), quiet=True)
            lines = (run / "steps.csv").read_text().splitlines()[1:]
            stamps = [float(line.split(",")[4]) for line in lines]
            per_step = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # skip worker start-up
            out[synthesis] = per_step
    return out


def bench_infer(device: str) -> dict:
    from segment.networks import build_network
    from segment.predict import predict_array

    rng = np.random.default_rng(0)
    shape, spacing = (512, 512, 150), (0.8, 0.8, 2.0)
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
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    import monai

    print(f"device {args.device} ({torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU, '}"
          f"{torch.get_num_threads()} threads), torch {torch.__version__}, monai {monai.__version__}")
    times = bench_train(args.steps, args.workers)
    print(f"\ntraining step (UNet 8-64ch, 2 x 64^3 patches/step, workers={args.workers}, {args.steps - 2} timed steps)")
    print("| synthesis | median s/step | mean s/step | max s/step |")
    print("|---|---:|---:|---:|")
    for synthesis, values in times.items():
        print(f"| {'on (rules, p=1)' if synthesis else 'off'} | {statistics.median(values):.3f} | "
              f"{statistics.mean(values):.3f} | {max(values):.3f} |")
    overhead = statistics.median(times[True]) / statistics.median(times[False]) - 1
    print(f"synthesis overhead (median): {100 * overhead:+.1f} % (target < 10 %)")
    r = bench_infer(args.device)
    print("\ninference, 512x512x150 scan (0.8x0.8x2 mm -> 1.5 mm), 96^3 windows, overlap 0.5, Gaussian blending")
    gpu = "n/a" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
    print(f"| device | seconds | peak RSS GiB | peak GPU GiB |\n|---|---:|---:|---:|\n| {args.device} | {r['seconds']:.1f} | "
          f"{r['peak_rss_gib']:.2f} | {gpu} |")


if __name__ == "__main__":
    main()
