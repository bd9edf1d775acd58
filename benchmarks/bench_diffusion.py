"""Diffusion generator benchmarks: sampling time per early tumour, batch throughput, training throughput.

    python benchmarks/bench_diffusion.py [--device cpu|cuda|auto] [--config configs/diffusion/default.yaml]
                                         [--tumours 4] [--batch 4] [--steps N] [--train-steps 4] [--threads 2]
                                         [--no-train] [--model MODEL_DIR]

Sampling uses a trained model folder (``--model``: e.g. the CPU recipe's, configs/diffusion/
liver_early_lits_cpu.yaml; target <= 10 s per early tumour on CPU), or else one with the config's
architecture and RANDOM weights (timing only; the tumours are noise): default config = 64^3 crops at 1 mm, x4 AutoencoderKL (32-64-64), UNet 64-128-256
with attention at 4^3, 10 DPM-Solver++ steps. Early tumours (10-20 mm) are placed in the liver of the
bundled TotalSegmentator example (3 mm). Per tumour the timed part is ``apply_specs``: crop
resampling, encoding, N sampling steps, decoding, blending and the label (the model is loaded and
warmed up before timing). Batch throughput samples ``--batch`` tumours in one ``apply_batch``.
Training throughput runs each stage for ``--train-steps`` steps (batch size of the config) in a
child process on crops of the example scan and reports crops/s (first step not timed) and the
child's peak memory (CPU: max RSS; CUDA: torch.cuda.max_memory_allocated). Target: <= 30 s per
early tumour on CPU. Prints tables; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S = 30.0          # default architecture, random weights
TARGET_RECIPE_S = 10.0   # a trained model of the CPU recipe (issue 16)


def _config(path: str, overrides: list[str], out: Path) -> dict:
    from train_diffusion.config import load_config

    return load_config(path, [f"output_dir={out}", *overrides], need_data=False, check_files=False)


def _example():
    from tumorsyn.io import load_labels, load_scan, organ_mask_from_labels
    from tumorsyn.io.datasets import example_case
    from tumorsyn.io.labels import label_values

    case = example_case()
    scan = load_scan(case.ct)
    organ = organ_mask_from_labels(label_values(load_labels(case.labels)), "liver", preset="totalsegmentator")
    return scan.values(), organ, scan.spacing_mm


def bench_sampling(model_dir: Path, *, device: str, tumours: int, batch: int, steps: int | None) -> dict:
    import torch

    import tumorsyn
    from tumorsyn.generators import get_generator
    from tumorsyn.generators.diffusion.model_folder import load_model, member_index

    ct, organ, spacing = _example()
    options = {"model": str(model_dir)} | ({"steps": steps} if steps else {})
    specs = tumorsyn.sample_specs(organ, spacing, count=tumours, organ="liver", method="diffusion", size_mm=(10, 20),
                                  ct_hu=ct, rng=0, **options)
    members = len(load_model(model_dir, device=device).members)                 # untimed: load
    # Untimed warm-up: one tumour per network that will draw one (each member of a mixture).
    warm = {member_index(spec.seed, members) if members else 0: spec for spec in reversed(specs)}
    for spec in warm.values():
        tumorsyn.apply_specs(ct, organ, spacing, spec, device=device).tumors[0]
    times, cpu, touched = [], [], []
    for spec in specs:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        local = tumorsyn.apply_specs(ct, organ, spacing, spec, device=device).tumors[0]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        touched.append(int(local.changed_box.sum()))
    gen = get_generator("diffusion", device=device)
    jobs = []
    batch_specs = (specs * ((batch + len(specs) - 1) // len(specs)))[:batch]
    for spec in batch_specs:
        slices = gen.box(spec)
        jobs.append((ct[slices], organ[slices], spec, tuple(s.start for s in slices)))
    t0, c0 = time.perf_counter(), time.process_time()
    gen.apply_batch(jobs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    batch_s, batch_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"times": times, "cpu": cpu, "batch_cpu": batch_cpu, "sizes": [s.size_mm for s in specs], "touched": touched, "steps": specs[0].params["steps"],
            "sampler": specs[0].params["sampler"], "batch": batch, "batch_s": batch_s}


def bench_items(model_dir: Path, *, device: str, items: int, steps: int | None) -> dict:
    """A training batch of ``items`` example items through ``RandTumorSynthesisd.apply_items`` vs one by one."""
    import numpy as np
    import torch

    from tumorsyn.transforms import RandTumorSynthesisd

    ct, organ, spacing = _example()
    options = {"model": str(model_dir)} | ({"steps": steps} if steps else {})
    t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", label_preset="binary", method="diffusion",
                            size_mm=(10, 20), prob=1.0, spacing_mm=spacing, device=device, **options)
    batch = [{"image": ct[None], "label": organ[None].astype(np.uint8)} for _ in range(items)]
    seeds = list(range(items))
    t.apply_items(batch[:1], seeds=seeds[:1])  # untimed: load + warm-up

    def timed(run):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    together = timed(lambda: t.apply_items(batch, seeds=seeds))
    alone = timed(lambda: [t.apply_items([item], seeds=[seed]) for item, seed in zip(batch, seeds)])
    return {"items": items, "together_s": together, "alone_s": alone}


def _train_child(config: dict, stage: str, steps: int, threads: int, queue) -> None:
    """One stage for ``steps`` steps on example crops; puts (seconds per step list, peak bytes)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from train_diffusion.data import CropBank, resample_crop
    from tumorsyn.generators.diffusion.sampler import hu_to_unit

    ct, organ, spacing = _example()
    d = config["data"]
    jitter = tuple(int(round(float(d["jitter_mm"]) / s)) for s in d["spacing_mm"])
    big = tuple(n + 2 * j for n, j in zip(d["crop_size"], jitter))
    bank = CropBank(crop_size=tuple(d["crop_size"]), jitter_vox=jitter)
    rng = np.random.default_rng(0)
    points = np.argwhere(organ)
    for _ in range(4):
        c = points[int(rng.integers(len(points)))]
        bank.tumor_images.append(hu_to_unit(resample_crop(ct, c, spacing, size=big, out_spacing_mm=d["spacing_mm"]),
                                            d["hu_window"]))
        grid = np.indices(big).astype(np.float32) - (np.array(big)[:, None, None, None] - 1) / 2
        bank.tumor_masks.append((grid ** 2).sum(0) <= 7.0 ** 2)  # a 15 mm sphere at 1 mm
        bank.healthy_images.append(bank.tumor_images[-1])
    config = json.loads(json.dumps(config))
    config["train"].update({"log_every": 1, "checkpoint_every": 10**6, "preview_every": 0})
    config[stage]["steps"] = steps
    if stage == "autoencoder":
        config["autoencoder"]["adv_start_step"] = 0  # time the full loss, discriminator included
        from train_diffusion.train_autoencoder import train_autoencoder

        train_autoencoder(config, bank, quiet=True)
    else:
        from train_diffusion.export import export_untrained
        from train_diffusion.train_ldm import train_ldm

        ae_dir = Path(config["output_dir"]) / "ae_model"
        export_untrained(ae_dir, config)
        train_ldm(config, bank, ae_dir / "autoencoder.safetensors", quiet=True)
    import csv

    with open(Path(config["output_dir"]) / f"steps_{stage}.csv") as fh:
        seconds = [float(r["seconds"]) for r in csv.DictReader(fh)]
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available() and not config["train"]["cpu"]
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    queue.put((np.diff(seconds).tolist(), int(peak)))


def bench_training(config: dict, *, steps: int, threads: int) -> dict:
    out = {}
    ctx = mp.get_context("spawn")
    for stage in ("autoencoder", "ldm"):
        stage_config = json.loads(json.dumps(config))
        stage_config["output_dir"] = str(Path(config["output_dir"]) / stage)
        queue = ctx.Queue()
        proc = ctx.Process(target=_train_child, args=(stage_config, stage, steps, threads, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"bench_diffusion: the {stage} training child failed (exit {proc.exitcode}); see above")
        per_step, peak = queue.get()
        out[stage] = {"per_step_s": per_step, "peak_bytes": peak, "batch": int(config[stage]["batch_size"])}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument("--config", default=str(REPO / "configs" / "diffusion" / "default.yaml"))
    parser.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    parser.add_argument("--tumours", type=int, default=4, help="early tumours timed one by one")
    parser.add_argument("--batch", type=int, default=4, help="tumours in the batch-throughput run")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
    parser.add_argument("--items", type=int, default=None,
                        help="items in the apply_items training-batch run (default 16 on a GPU, 0 = skip on CPU)")
    parser.add_argument("--train-steps", type=int, default=4, help="optimizer steps per training stage")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--no-train", action="store_true", help="skip the training throughput")
    parser.add_argument("--model", metavar="DIR", help="time this trained model folder (tumorsyn train-diffusion's "
                        "<run>/model) instead of random weights of --config's architecture")
    args = parser.parse_args(argv)

    import torch

    from tumorsyn.generators.diffusion.model_folder import resolve_device
    from train_diffusion.export import export_untrained
    from train_diffusion.runtime import versions

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    print(f"# bench_diffusion  device={device}  cores={os.cpu_count()}  threads={torch.get_num_threads()}  load={os.getloadavg()[0]:.2f}  "
          f"{platform.processor() or platform.machine()}")
    v = versions()
    print(f"# torch {v['torch']}  monai {v['monai']}  diffusers {v['diffusers']}  accelerate {v['accelerate']}  "
          f"gpu {v['cuda_device']}")
    with tempfile.TemporaryDirectory() as tmp:
        overrides = list(args.set) + (["train.cpu=true"] if device == "cpu" else [])
        config = _config(args.config, overrides, Path(tmp) / "run")
        if args.model:
            from tumorsyn.generators.diffusion.model_folder import mixture_folders, read_model_config

            model_dir, trained = read_model_config(args.model)
            members = mixture_folders(model_dir, trained)
            # A mixture's networks are its members' (one of them draws each tumour): describe the first.
            nets = read_model_config(members[0])[1] if members else trained
            d = trained["data"]
            print(f"# model: {model_dir} (trained{f', a mixture of {len(members)}' if members else ''}), crop "
                  f"{d['crop_size']} at {d['spacing_mm']} mm, AE {nets['autoencoder']['kwargs'].get('channels')}, "
                  f"UNet {nets['unet']['kwargs'].get('channels')}, "
                  f"{trained['sampling']['steps']} {trained['sampling']['sampler']} steps")
            target = TARGET_RECIPE_S
        else:
            model_dir = export_untrained(Path(tmp) / "model", config)
            d, a, l = config["data"], config["autoencoder"], config["ldm"]
            print(f"# model: crop {d['crop_size']} at {d['spacing_mm']} mm, AE {a['channels']} latent {a['latent_channels']}, "
                  f"UNet {l['channels']} attention {l['attention_levels']}, random weights")
            target = TARGET_S
        r = bench_sampling(model_dir, device=device, tumours=args.tumours, batch=args.batch, steps=args.steps)
        t = r["times"]
        print("\n## sampling per early tumour (apply_specs: crop, encode, sample, decode, blend)")
        print("| sizes mm | steps | sampler | median s | mean s | max s | CPU s (median, all threads) | voxels touched (median) | target |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| {min(r['sizes']):.1f}-{max(r['sizes']):.1f} | {r['steps']} | {r['sampler']} | {statistics.median(t):.2f} | "
              f"{statistics.mean(t):.2f} | {max(t):.2f} | {statistics.median(r['cpu']):.2f} | "
              f"{int(statistics.median(r['touched']))} | "
              f"{'<= 1 s on one GPU (96^3 crop)' if device.startswith('cuda') else f'<= {target:.0f} s on CPU'} |")
        print(f"\n## batch: {r['batch']} tumours in one apply_batch: {r['batch_s']:.2f} s "
              f"= {r['batch'] / r['batch_s']:.3f} tumours/s ({r['batch_s'] / r['batch']:.2f} s wall, "
              f"{r['batch_cpu'] / r['batch']:.2f} CPU s per tumour)")
        items = args.items if args.items is not None else (16 if device.startswith("cuda") else 0)
        if items > 0:
            it = bench_items(model_dir, device=device, items=items, steps=args.steps)
            print(f"\n## a training batch: RandTumorSynthesisd.apply_items on {it['items']} items: {it['together_s']:.2f} s "
                  f"= {it['items'] / it['together_s']:.3f} tumours/s; one item at a time {it['alone_s']:.2f} s "
                  f"(x{it['alone_s'] / it['together_s']:.2f})")
        if not args.no_train:
            tr = bench_training(config, steps=args.train_steps, threads=args.threads)
            print(f"\n## training throughput ({args.train_steps} steps per stage, first step not timed)")
            print("| stage | batch | median s/step | crops/s | peak memory MiB |")
            print("|---|---|---|---|---|")
            for stage, s in tr.items():
                timed = s["per_step_s"] or [float("nan")]
                med = statistics.median(timed)
                print(f"| {stage} | {s['batch']} | {med:.2f} | {s['batch'] / med:.2f} | {s['peak_bytes'] / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
