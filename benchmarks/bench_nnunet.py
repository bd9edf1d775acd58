"""Benchmark: the cost of on-the-fly tumour synthesis per nnU-Net v2 training iteration, on the CPU.

Builds a small nnU-Net dataset in a temporary folder (two cases: a scan and its mirror image), plans
and preprocesses it with nnunetv2 (3d_fullres, default planner, default patch and batch size), then
times training iterations (``next(dataloader)`` + ``train_step``) of nnU-Net's own trainer and of
``nnUNetTrainerTumorSyn`` on the same data, seeds and device. Augmentation runs in the training
process (``nnUNet_n_proc_DA=0``): the synthesis cost is fully on the iteration's critical path,
the worst case (with augmentation workers it overlaps the network step). Also printed: the
synthesis transform's own time per patch, which does not depend on the network.

Sources: ``example`` (the bundled TotalSegmentator scan, 3 mm, liver + other structures as
foreground), or ``lits117`` (``../shared/data/real/lits117``: 1.36 x 1.36 x 1.6 mm, liver 1,
tumour 2; non-commercial, read in place, derived files only in the temporary folder).

Run: ``python benchmarks/bench_nnunet.py [--source example|lits117] [--iters 8] [--prob 0.5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchkit import cpu_model, loadavg  # noqa: E402  (this folder)

DATASET_ID = 986
DATASET = f"Dataset{DATASET_ID}_TumorSynBench"


def _write_raw(raw: Path, source: str) -> None:
    """Two cases (the scan and its mirror image) in nnU-Net's raw layout, labels {liver 1, tumour 2, other 3}."""
    import nibabel as nib

    if source == "example":
        ct_img = nib.load(REPO / "tumorsyn" / "data" / "example_ct.nii.gz")
        ts = np.asarray(nib.load(REPO / "tumorsyn" / "data" / "example_labels.nii.gz").dataobj)
        labels = np.where(ts == 5, 1, np.where(ts > 0, 3, 0)).astype(np.uint8)  # TotalSegmentator liver = 5
    else:
        from tumorsyn.configfile import real_data_dir

        root = real_data_dir()[0] / "lits117"
        if not (root / "ct.nii.gz").is_file():
            sys.exit(f"{root}: not here (see ../shared/data/README.md); use --source example")
        ct_img = nib.load(root / "ct.nii.gz")
        labels = np.asarray(nib.load(root / "label.nii.gz").dataobj).astype(np.uint8)  # 1 liver, 2 tumour
    ct = np.asarray(ct_img.dataobj)
    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for case, flip in (("case_000", False), ("case_001", True)):
        c, lab = (np.ascontiguousarray(ct[::-1]), np.ascontiguousarray(labels[::-1])) if flip else (ct, labels)
        nib.save(nib.Nifti1Image(c, ct_img.affine), folder / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(lab, ct_img.affine), folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2, "other": 3},
        "numTraining": 2, "file_ending": ".nii.gz"}))


def _time_arm(trainer_cls, plans, dataset_json, iters: int, warmup: int, seed: int):
    """Median seconds per training iteration, and the synthesis transform's per-patch seconds (if any)."""
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer = trainer_cls(dict(plans, continue_training=False), "3d_fullres", "all", dataset_json,
                          device=torch.device("cpu"))
    trainer.on_train_start()
    trainer.on_train_epoch_start()
    times = []
    for k in range(warmup + iters):
        t0 = time.perf_counter()
        trainer.train_step(next(trainer.dataloader_train))
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    patch_times = list(getattr(trainer, "synthesis_seconds", []))
    stats = dict(trainer.tumor_transform.stats) if hasattr(trainer, "tumor_transform") else {}
    return times, patch_times, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("example", "lits117"), default="example")
    parser.add_argument("--iters", type=int, default=8, help="timed iterations per arm (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--prob", type=float, default=0.5, help="synthesis probability per patch (default 0.5)")
    parser.add_argument("--method", default="rules", help="generator (default rules)")
    parser.add_argument("--size-mm", default="5,20", help="tumour diameter range in mm (default 5,20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_nnunet_"))
    try:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (tmp / name).mkdir()
            os.environ[name] = str(tmp / name)
        os.environ["nnUNet_n_proc_DA"] = "1"  # planning sets torch's threads from it
        _write_raw(tmp / "nnUNet_raw", args.source)
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                          preprocess)

        extract_fingerprints([DATASET_ID], num_processes=1, show_progress_bar=False, verbose=False)
        plans_name = plan_experiments([DATASET_ID])
        preprocess([DATASET_ID], plans_name, configurations=("3d_fullres",), num_processes=(1,),
                   show_progress_bar=False)
        os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in the training process: synthesis on the critical path
        folder = tmp / "nnUNet_preprocessed" / DATASET
        low, high = (float(v) for v in args.size_mm.split(","))
        (folder / "tumorsyn_nnunet.json").write_text(json.dumps(
            {"organ": "liver", "prob": args.prob, "method": args.method, "size_mm": [low, high]}))
        plans = json.loads((folder / f"{plans_name}.json").read_text())
        dataset_json = json.loads((folder / "dataset.json").read_text())

        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from tumorsyn.integrations.nnunet.trainer import nnUNetTrainerTumorSyn

        class Plain(nnUNetTrainer):
            def plot_network_architecture(self):
                pass

        class WithTumours(nnUNetTrainerTumorSyn):
            def plot_network_architecture(self):
                pass

            def build_tumor_transform(self):
                transform = super().build_tumor_transform()
                self.tumor_transform, self.synthesis_seconds = transform, []
                inner = transform.__call__

                def timed(**data):  # the transform's own time per patch, and whether it wrote a tumour
                    t0 = time.perf_counter()
                    out = inner(**data)
                    self.synthesis_seconds.append((time.perf_counter() - t0, bool(transform.last_specs)))
                    return out

                return _Timed(timed)

        config = plans["configurations"]["3d_fullres"]
        print(f"nnU-Net v2 training iteration on CPU ({cpu_model()}, {os.cpu_count()} CPUs, torch threads "
              f"{__import__('torch').get_num_threads()}, load {loadavg()}, Python {platform.python_version()})")
        print(f"source {args.source}: spacing {config['spacing']} mm, patch {config['patch_size']}, "
              f"batch {config['batch_size']}; method {args.method}, prob {args.prob}, size {low:g}-{high:g} mm; "
              f"{args.iters} timed iterations after {args.warmup}")
        plain, _, _ = _time_arm(Plain, plans, dataset_json, args.iters, args.warmup, args.seed)
        synth, patches, stats = _time_arm(WithTumours, plans, dataset_json, args.iters, args.warmup, args.seed)
        base, with_ = statistics.median(plain), statistics.median(synth)
        print(f"median s/iteration: without synthesis {base:.3f}, with {with_:.3f}; "
              f"overhead {100 * (with_ / base - 1):+.1f} % (target < 10 %)")
        written = [t for t, wrote in patches if wrote]
        if written:
            # The transform's own time is steadier than a difference of two noisy medians.
            per_iteration = sum(t for t, _ in patches) / (args.warmup + args.iters + 1)  # +1: nnU-Net's warm-up batch
            print(f"synthesis transform per patch with tumours: median {statistics.median(written):.3f} s, max "
                  f"{max(written):.3f} s; outcomes over {len(patches)} patches: {stats}")
            print(f"synthesis per iteration (the transform's own time): {per_iteration:.3f} s = "
                  f"{100 * per_iteration / base:.1f} % of the median iteration without synthesis")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Timed:
    """A timed call that nnU-Net's ComposeTransforms calls like a transform (``t(**data)``)."""

    def __init__(self, call):
        self.call = call

    def __call__(self, **data):
        return self.call(**data)


if __name__ == "__main__":
    main()
