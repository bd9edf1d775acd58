"""The GPU check (issue 16, part 3): every GPU figure the issues ask for, with the CPU figure beside it.

    python benchmarks/gpu_check.py --out DIR [--quick] [--diffusion-model DIR] [--diffusion-config YAML]
                                   [--only SECTION,...] [--threads N]
    make gpu-check [OUT=DIR]

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (one table), and works in ``DIR/work/``
(cleared at the start: the tiny diffusion model, the training runs). Sections, each timed on the
CPU and, where a CUDA GPU is present, on the GPU:

``ca_identity``
    CUDA kernel against the Numba CPU kernel: the same CA specs (>= 20 per scan, 5-30 mm) give
    bit-identical tumours (HU box, label, changed voxels). Skipped without a GPU.
``ca_throughput``
    Tumours per second for 64 specs of 20 mm (8 with ``--quick``; ``apply_specs`` per spec), and the GPU/CPU ratio
    (target >= 50x). Scans: the bundled example always, 3D-IRCADb patient 7 from
    ../shared/data/real when present.
``diffusion_training``
    Crops per second of both training stages (autoencoder, latent diffusion) with the diffusion
    config (default ``configs/diffusion/tiny_test.yaml``).
``diffusion_sampling``
    Seconds per early tumour (10-20 mm, example liver) at batch 1 and batch 16 (target <= 1 s at
    batch 16 on an H100/H200 with the recipe's model). The model is ``--diffusion-model`` or, without
    it, the diffusion config trained here for a few steps on the bundled example (timing only).
``segment_train``
    One segmentation training step: tiny UNet, 2 x 96^3 patches, rules synthesis at p = 1.
``segment_infer``
    Sliding-window inference (96^3 windows) on a 512 x 512 x 150 noise volume.

Without a GPU both files say so and the script exits 0 after the CPU half. A section that fails is
recorded with its one-line error, the others still run, and the exit code is 1. ``--quick`` uses
small counts and sizes (a smoke run, its figures are noise). It installs nothing and downloads nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from benchkit import cpu_model, loadavg  # noqa: E402  (this folder)

SCHEMA = "tumorsyn-gpu-check/1"
TINY_CONFIG = REPO / "configs" / "diffusion" / "tiny_test.yaml"
# tiny_test.yaml's 16^3 crops at 2 mm (32 mm) cannot hold a 20 mm tumour with its edge; 24^3 (48 mm) can,
# so the default model covers the whole early range (10-20 mm) that sampling is timed on.
TINY_SETS = ("data.crop_size=[24, 24, 24]",)
BUDGET_S = 8 * 60  # the limit for the whole check on a GPU machine
CA_TARGET_X = 50.0
DIFFUSION_TARGET_S = 1.0
NO_GPU = "no GPU"


@dataclass(frozen=True)
class Sizes:
    """Counts and sizes of one mode (full or ``--quick``)."""

    ca_identity: int        # specs per scan compared CPU vs GPU (the issue asks for >= 20)
    ca_throughput: int      # specs per scan timed on each device
    ca_ircad: bool          # also 3D-IRCADb patient 7 (when present)
    tumours: int            # early tumours timed one by one (batch 1)
    batch: int              # tumours in one batch
    train_steps: int        # optimizer steps per diffusion stage (first one untimed)
    segment_steps: int      # segmentation steps (first two untimed)
    segment_workers: int
    infer_shape: tuple


FULL = Sizes(ca_identity=24, ca_throughput=64, ca_ircad=True, tumours=4, batch=16, train_steps=5, segment_steps=8,
             segment_workers=2, infer_shape=(512, 512, 150))
QUICK = Sizes(ca_identity=20, ca_throughput=8, ca_ircad=False, tumours=2, batch=16, train_steps=2, segment_steps=3,
              segment_workers=0, infer_shape=(160, 160, 48))


@dataclass
class Section:
    """One section's result: its status, wall time, error line and figure rows."""

    name: str
    title: str
    status: str = "ok"            # ok | failed | skipped
    wall_s: float = 0.0
    error: str | None = None
    note: str | None = None
    rows: list = field(default_factory=list)

    def row(self, figure: str, unit: str, cpu, gpu, *, faster: str | None = None, target: str | None = None,
            verdict: bool | None = None) -> None:
        """Add a figure. ``faster`` = ``"higher"`` (a rate) or ``"lower"`` (a time): how the speed-up is formed."""
        speedup = None
        if faster and isinstance(cpu, (int, float)) and isinstance(gpu, (int, float)) and cpu > 0 and gpu > 0:
            speedup = gpu / cpu if faster == "higher" else cpu / gpu
        self.rows.append({"figure": figure, "unit": unit, "cpu": cpu, "gpu": gpu, "speedup": speedup,
                          "target": target, "verdict": None if verdict is None else ("PASS" if verdict else "MISS")})


@dataclass
class Context:
    """What every section may use: the mode, the folders, the devices found."""

    out: Path
    work: Path
    sizes: Sizes
    quick: bool
    threads: int
    torch_gpu: str | None                 # torch's GPU name, None without one
    numba_gpu: bool                       # numba-cuda can run the CA kernel here
    diffusion_model: Path | None
    diffusion_config: Path
    gpu_found: str = ""                   # find_gpus' line: what torch and numba-cuda said
    cache: dict = field(default_factory=dict)

    @property
    def torch_devices(self) -> list[str]:
        return ["cpu"] + (["cuda"] if self.torch_gpu else [])


# --- machine facts -------------------------------------------------------------------------------

def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict:
    """Versions of everything the figures depend on (installed distributions; torch's CUDA build)."""
    out = {"python": platform.python_version()}
    for dist in ("tumorsyn", "numpy", "scipy", "numba", "numba-cuda", "torch", "monai", "diffusers", "accelerate",
                 "nibabel"):
        out[dist] = _version(dist)
    try:
        import torch

        out["torch_cuda_build"] = torch.version.cuda or "none (CPU build)"
        out["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except ImportError:
        pass
    return out


def find_gpus() -> tuple[str | None, bool, str]:
    """``(torch GPU name or None, numba-cuda usable, one line saying what was found)``."""
    torch_name, why = None, []
    try:
        import torch

        if torch.cuda.is_available():
            torch_name = torch.cuda.get_device_name(0)
        else:
            why.append("torch sees no CUDA device" + ("" if torch.version.cuda else " (a CPU build of torch)"))
    except ImportError:
        why.append("torch is not installed")
    numba_ok = False
    try:
        from tumorsyn.generators.ca.grow import resolve_device

        numba_ok = resolve_device("auto").kind == "cuda"
        if not numba_ok:
            why.append("numba-cuda sees no CUDA device")
    except Exception as exc:  # numba missing or broken: the CA GPU half cannot run, the rest can
        why.append(f"numba-cuda unusable ({_one_line(exc)})")
    if torch_name:
        found = f"CUDA GPU: {torch_name}" + ("" if numba_ok else f"; {'; '.join(why)}")
    else:
        found = f"no CUDA GPU: {'; '.join(why)}; only the CPU half ran"
    return torch_name, numba_ok, found


def _one_line(exc: BaseException) -> str:
    """The error as one line: tumorsyn's own errors as they are, others with their type."""
    from tumorsyn.errors import TumorsynError

    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, TumorsynError) else f"{type(exc).__name__}: {text}"


def fresh_accelerate_state() -> None:
    """Forget accelerate's per-process device before an in-process training run.

    accelerate keeps the device of the first ``PartialState`` for the whole process and does not check
    a later ``cpu=True`` against it: without this, a CPU run after a GPU run would train on the GPU
    (and the other way round), and the CPU figure would be a GPU figure. One process, no launcher.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


# --- scans ---------------------------------------------------------------------------------------

def ca_hosts(ctx: Context) -> list[tuple[str, tuple]]:
    """``[(name, (ct, liver, spacing))]``: the bundled example, and 3D-IRCADb patient 7 when present."""
    if "hosts" not in ctx.cache:
        from bench_ca import example_liver, ircad_liver

        hosts = [("example liver (3 mm)", example_liver())]
        ircad = ircad_liver() if ctx.sizes.ca_ircad else None
        if ircad is not None:
            hosts.append(("3D-IRCADb 1.7 liver (0.78 x 0.78 x 1.6 mm)", ircad))
        ctx.cache["hosts"] = hosts
    return ctx.cache["hosts"]


def _need_numba_gpu_if_any(ctx: Context) -> None:
    """A GPU that torch sees but numba-cuda cannot use is a broken install, not a CPU-only machine."""
    from tumorsyn.errors import ConfigError

    if ctx.torch_gpu and not ctx.numba_gpu:
        raise ConfigError(f"torch sees {ctx.torch_gpu} but the CA kernel cannot use it ({ctx.gpu_found}); "
                          "`make install` installs numba-cuda (tumorsyn[cuda]): check it and the CUDA driver")


def _ca_note(ctx: Context, hosts) -> str:
    from bench_ca import IRCAD

    if ctx.sizes.ca_ircad and len(hosts) == 1:
        return f"{IRCAD} absent: bundled example only"
    return "--quick: bundled example only" if not ctx.sizes.ca_ircad else ""


# --- sections ------------------------------------------------------------------------------------

def section_ca_identity(sec: Section, ctx: Context) -> None:
    """Same specs on the Numba CPU kernel and the CUDA kernel: every output array byte-identical."""
    import numpy as np

    import tumorsyn
    from bench_ca import ca_specs

    _need_numba_gpu_if_any(ctx)
    if not ctx.numba_gpu:
        sec.status, sec.note = "skipped", "no CUDA GPU for numba-cuda: the CPU kernel alone has nothing to match"
        return
    hosts = ca_hosts(ctx)
    sec.note = _ca_note(ctx, hosts) or None
    for name, (ct, organ, spacing) in hosts:
        specs = ca_specs(ct, organ, spacing, ctx.sizes.ca_identity, size_mm=(5.0, 30.0), seed=20)
        same = 0
        for spec in specs:
            a, b = (tumorsyn.apply_specs(ct, organ, spacing, spec, device=d).tumors[0] for d in ("cpu", "cuda"))
            same += bool(a.slices == b.slices and np.array_equal(a.label_box, b.label_box)
                         and np.array_equal(a.changed_box, b.changed_box)
                         and a.ct_box.tobytes() == b.ct_box.tobytes())
        sec.row(f"{name}: bit-identical tumours, CUDA vs CPU kernel (5-30 mm)", "specs", len(specs),
                f"{same}/{len(specs)}", target=">= 20 specs, all identical",
                verdict=same == len(specs) and len(specs) >= 20)


def section_ca_throughput(sec: Section, ctx: Context) -> None:
    """Tumours per second of 20 mm CA specs, one ``apply_specs`` per spec, CPU kernel and CUDA kernel."""
    from bench_ca import ca_rate, ca_specs

    _need_numba_gpu_if_any(ctx)
    hosts = ca_hosts(ctx)
    notes = [_ca_note(ctx, hosts)] + ([] if ctx.numba_gpu else ["GPU half not run: no CUDA GPU for numba-cuda"])
    sec.note = "; ".join(n for n in notes if n) or None
    n = ctx.sizes.ca_throughput
    for name, (ct, organ, spacing) in hosts:
        specs = ca_specs(ct, organ, spacing, n)
        cpu = ca_rate(ct, organ, spacing, specs, "cpu")
        gpu = ca_rate(ct, organ, spacing, specs, "cuda") if ctx.numba_gpu else NO_GPU
        sec.row(f"{name}: {n} specs of 20 mm, apply_specs one by one", "tumours/s", cpu, gpu, faster="higher",
                target=f"GPU >= {CA_TARGET_X:.0f}x CPU",
                verdict=None if gpu == NO_GPU else gpu / cpu >= CA_TARGET_X)


def _diffusion_config(ctx: Context, out: Path, device: str, *extra: str) -> dict:
    """The diffusion config for ``device``, writing into ``out``, with few steps and no checkpoints."""
    from bench_diffusion import _config

    steps = ctx.sizes.train_steps
    sets = [*(TINY_SETS if ctx.diffusion_config == TINY_CONFIG.resolve() else ()), f"autoencoder.steps={steps}",
            f"ldm.steps={steps}", "train.checkpoint_every=1000000", "train.preview_every=0", f"train.threads={ctx.threads}",
            f"train.cpu={'true' if device == 'cpu' else 'false'}", *extra]
    return _config(str(ctx.diffusion_config), sets, out)


def section_diffusion_training(sec: Section, ctx: Context) -> None:
    """Crops per second of both stages (bench_diffusion's timing: a fresh child process per stage)."""
    from bench_diffusion import bench_training

    results = {}
    for device in ctx.torch_devices:
        config = _diffusion_config(ctx, ctx.work / f"diffusion_training_{device}", device)
        results[device] = bench_training(config, steps=ctx.sizes.train_steps, threads=ctx.threads)
    sec.note = (f"{_config_name(ctx)}, {ctx.sizes.train_steps} steps per stage, first step untimed"
                + ("" if ctx.torch_gpu else "; GPU half not run: no CUDA GPU for torch"))
    for stage, label in (("autoencoder", "autoencoder (adversarial loss on)"), ("ldm", "latent diffusion")):
        rates, peaks = {}, {}
        for device, r in results.items():
            s = r[stage]
            if not s["per_step_s"]:
                raise RuntimeError(f"{stage} on {device}: no timed step (the first one is not timed)")
            rates[device] = s["batch"] / statistics.median(s["per_step_s"])
            peaks[device] = s["peak_bytes"] / 2**20
        batch = results["cpu"][stage]["batch"]
        sec.row(f"{label} training, batch {batch}", "crops/s", rates["cpu"], rates.get("cuda", NO_GPU),
                faster="higher")
        sec.row(f"{label} training: peak memory (CPU: max RSS; GPU: torch allocated)", "MiB", peaks["cpu"],
                peaks.get("cuda", NO_GPU))


def _config_name(ctx: Context) -> str:
    try:
        name = str(ctx.diffusion_config.relative_to(REPO))
    except ValueError:
        name = str(ctx.diffusion_config)
    return name + (f" with {', '.join(TINY_SETS)}" if ctx.diffusion_config == TINY_CONFIG.resolve() else "")


def example_tumour_source(folder: Path, *, seed: int = 0) -> dict:
    """The bundled example with two early rules tumours in its liver, as NIfTI files: a diffusion tumour source.

    The example is Apache-2.0, so the crops a model learns from here may go anywhere.
    """
    import tumorsyn
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.datasets import example_case
    from tumorsyn.io.labels import label_values, organ_mask_from_labels
    from tumorsyn.io.writers import write_ct_like, write_mask_like

    folder.mkdir(parents=True, exist_ok=True)
    case = example_case()
    scan = load_scan(case.ct)
    ct = scan.values()
    liver = organ_mask_from_labels(label_values(load_labels(case.labels)), "liver", preset="totalsegmentator")
    specs = tumorsyn.sample_specs(liver, scan.spacing_mm, count=2, organ="liver", size_mm=(12, 18), ct_hu=ct, rng=seed)
    applied = tumorsyn.apply_specs(ct, liver, scan.spacing_mm, specs)
    paths = {"ct": folder / "ct.nii.gz", "labels": folder / "liver.nii.gz", "tumor": folder / "tumor.nii.gz"}
    write_ct_like(paths["ct"], scan, applied.ct, applied.written_mask())
    write_mask_like(paths["labels"], scan, liver)
    write_mask_like(paths["tumor"], scan, applied.tumor_mask())
    return {"ct": str(paths["ct"]), "labels": str(paths["labels"]), "tumor": [str(paths["tumor"])]}


def diffusion_model(ctx: Context) -> tuple[Path, str]:
    """``(model folder, how it was made)``: ``--diffusion-model`` or a model trained here for a few steps."""
    if ctx.diffusion_model is not None:
        return ctx.diffusion_model, f"model folder {ctx.diffusion_model} (--diffusion-model)"
    import yaml

    from train_diffusion.train import train

    source = example_tumour_source(ctx.work / "diffusion_data")
    device = "cuda" if ctx.torch_gpu else "cpu"
    sources = yaml.safe_dump([source], default_flow_style=True).strip()
    # Rules tumours of 12-18 mm (equivalent diameter) measure up to ~28 mm at their longest on 3 mm voxels;
    # the timing model takes them all rather than fail on a size window meant for real tumours.
    config = _diffusion_config(ctx, ctx.work / "diffusion_model_run", device, f"data.tumor_sources={sources}",
                               "data.min_diameter_mm=0", "data.max_diameter_mm=40")
    t0 = time.perf_counter()
    fresh_accelerate_state()
    folder = train(config, quiet=True)
    steps = ctx.sizes.train_steps
    return folder, (f"{_config_name(ctx)} trained here on {device} for {steps} + {steps} steps on the bundled example "
                    f"({time.perf_counter() - t0:.0f} s; timing only, its tumours are noise); no --diffusion-model given")


def section_diffusion_sampling(sec: Section, ctx: Context) -> None:
    """Seconds per early tumour at batch 1 (median) and in one batch (bench_diffusion's sampling timing)."""
    from bench_diffusion import bench_sampling

    model, made = diffusion_model(ctx)
    results = {d: bench_sampling(model, device=d, tumours=ctx.sizes.tumours, batch=ctx.sizes.batch, steps=None)
               for d in ctx.torch_devices}
    r = results["cpu"]
    sec.note = (f"model: {made}; {r['steps']} {r['sampler']} steps, tumours "
                f"{min(r['sizes']):.1f}-{max(r['sizes']):.1f} mm in the example liver"
                + ("" if ctx.torch_gpu else "; GPU half not run: no CUDA GPU for torch"))
    one = {d: statistics.median(x["times"]) for d, x in results.items()}
    many = {d: x["batch_s"] / x["batch"] for d, x in results.items()}
    sec.row(f"per early tumour, batch 1 (median of {ctx.sizes.tumours})", "s", one["cpu"], one.get("cuda", NO_GPU),
            faster="lower")
    gpu = many.get("cuda", NO_GPU)
    sec.row(f"per early tumour, batch {ctx.sizes.batch} (one apply_batch)", "s", many["cpu"], gpu, faster="lower",
            target=f"<= {DIFFUSION_TARGET_S:g} s at batch 16 on an H100/H200 (recipe's model)",
            verdict=None if gpu == NO_GPU or ctx.sizes.batch != 16 else gpu <= DIFFUSION_TARGET_S)


def section_segment_train(sec: Section, ctx: Context) -> None:
    """Median seconds per segmentation training step at 96^3 (bench_segment's config and step timing)."""
    from bench_segment import _config, step_seconds

    from segment.train import train

    seconds = {}
    for device in ctx.torch_devices:
        cfg = _config(ctx.work / f"segment_{device}", synthesis=True, workers=ctx.sizes.segment_workers,
                      steps=ctx.sizes.segment_steps, roi_size=(96, 96, 96), cpu=device == "cpu")
        fresh_accelerate_state()
        steps = step_seconds(train(cfg, quiet=True))
        if not steps:
            raise RuntimeError(f"{cfg['output_dir']}: no timed step in steps.csv")
        seconds[device] = statistics.median(steps)
    sec.note = (f"tiny UNet 8-64 ch, 2 x 96^3 patches per step, bundled example at 1.5 mm, rules synthesis p = 1, "
                f"{ctx.sizes.segment_workers} loader workers, median of {ctx.sizes.segment_steps - 2} timed step(s)"
                + ("" if ctx.torch_gpu else "; GPU half not run: no CUDA GPU for torch"))
    sec.row("training step, 2 x 96^3 patches", "s/step", seconds["cpu"], seconds.get("cuda", NO_GPU), faster="lower")


def section_segment_infer(sec: Section, ctx: Context) -> None:
    """Sliding-window inference time on a synthetic scan (bench_segment.bench_infer), GPU peak memory."""
    from bench_segment import bench_infer

    shape = tuple(ctx.sizes.infer_shape)
    results = {}
    for device in ctx.torch_devices:
        if device == "cuda":
            bench_infer(device, shape=(96, 96, 48))  # untimed: CUDA kernels loaded and tuned
        results[device] = bench_infer(device, shape=shape)
    sec.note = ("tiny UNet 8-64 ch, 0.8 x 0.8 x 2 mm resampled to 1.5 mm, 96^3 windows, overlap 0.5"
                + ("" if ctx.torch_gpu else "; GPU half not run: no CUDA GPU for torch"))
    dims = " x ".join(map(str, shape))
    sec.row(f"sliding-window inference, {dims} scan", "s", results["cpu"]["seconds"],
            results["cuda"]["seconds"] if "cuda" in results else NO_GPU, faster="lower")
    if "cuda" in results:
        sec.row("sliding-window inference: GPU peak memory", "GiB", "n/a", results["cuda"]["peak_gpu_gib"])


SECTIONS: dict[str, tuple[str, Callable[[Section, Context], None]]] = {
    "ca_identity": ("CA: CUDA kernel vs Numba CPU kernel, bit identity", section_ca_identity),
    "ca_throughput": ("CA: throughput, 20 mm specs", section_ca_throughput),
    "diffusion_training": ("Diffusion: training throughput, both stages", section_diffusion_training),
    "diffusion_sampling": ("Diffusion: sampling per early tumour", section_diffusion_sampling),
    "segment_train": ("Segmentation: training step at 96^3", section_segment_train),
    "segment_infer": ("Segmentation: sliding-window inference", section_segment_infer),
}


def run_section(name: str, ctx: Context) -> Section:
    """Run one section; a failure is recorded as its one-line error (traceback to stderr), never raised."""
    title, fn = SECTIONS[name]
    sec = Section(name, title)
    print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        fn(sec, ctx)
    except (Exception, SystemExit) as exc:  # one broken section must not cost the figures of the others
        traceback.print_exc(file=sys.stderr)
        sec.status, sec.error = "failed", _one_line(exc)
    sec.wall_s = time.perf_counter() - t0
    print(f"gpu_check: {name} {sec.status} in {sec.wall_s:.1f} s" + (f": {sec.error}" if sec.error else ""),
          file=sys.stderr, flush=True)
    return sec


# --- outputs -------------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(report: dict) -> str:
    """The report as a few header lines and one table (section, status, wall time, figure, CPU, GPU, ...)."""
    m, gpu = report["machine"], report["gpu"]
    v = report["versions"]
    gpu_head = f"GPU: {gpu['name']}" if gpu["name"] else "GPU: none"
    lines = [
        "# tumorsyn GPU check",
        "",
        f"- **{gpu['found']}**" if not gpu["name"] else f"- {gpu['found']}",
        f"- mode: {'quick (smoke run: small counts, figures are noise)' if report['quick'] else 'full'}; "
        f"started {report['started']}; total {report['total_wall_s']:.0f} s (GPU budget {BUDGET_S // 60} min); "
        f"status: {report['status']}",
        f"- CPU: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, numba threads "
        f"{m['numba_threads']}; load average at start {m['load_start']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- command: `{report['command']}`",
        "",
        f"| section | status | wall s | figure | unit | CPU: {m['cpu']} | {gpu_head} | GPU speed-up | target | verdict |",
        "|---|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    for sec in report["sections"]:
        status = sec["status"] + (f": {sec['error']}" if sec["error"] else "") + (f" ({sec['note']})" if sec["note"] else "")
        head = [sec["name"], status.replace("|", "/"), f"{sec['wall_s']:.1f}"]
        rows = sec["rows"] or [{"figure": "", "unit": "", "cpu": None, "gpu": None, "speedup": None, "target": None,
                                "verdict": None}]
        for i, r in enumerate(rows):
            speed = "" if r["speedup"] is None else f"{r['speedup']:.3g}x"
            cells = (head if i == 0 else ["", "", ""]) + [r["figure"], r["unit"], _cell(r["cpu"]), _cell(r["gpu"]),
                                                          speed, r["target"] or "", r["verdict"] or ""]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, report: dict) -> tuple[Path, Path]:
    """Write gpu_check.json and gpu_check.md, each under a temporary name renamed when complete."""
    from tumorsyn.io.writers import atomic_path

    paths = out / "gpu_check.json", out / "gpu_check.md"
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown(report))
    return paths


# --- command line --------------------------------------------------------------------------------

def _sections(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join(SECTIONS)}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for gpu_check.json, gpu_check.md and work/")
    parser.add_argument("--quick", action="store_true", help="small counts and sizes (a smoke run)")
    parser.add_argument("--diffusion-model", type=Path, default=None,
                        help="model folder to time sampling with (default: train the diffusion config here briefly)")
    parser.add_argument("--diffusion-config", type=Path, default=TINY_CONFIG,
                        help="diffusion training config to time and to train the sampling model with "
                             "(default configs/diffusion/tiny_test.yaml)")
    parser.add_argument("--only", type=_sections, default=list(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and numba CPU threads (default 0: the libraries' defaults, i.e. every core)")
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    return args


def _check_inputs(args) -> str | None:
    """A one-line refusal (file first) for inputs that cannot work, before anything is written."""
    work = (args.out / "work").resolve()
    if args.diffusion_model is not None:
        model = args.diffusion_model.resolve()
        if not model.is_dir():
            return f"{args.diffusion_model}: no such model folder (--diffusion-model wants a folder holding config.json)"
        if model == work or work in model.parents:
            return (f"{args.diffusion_model}: lies inside {args.out / 'work'}, which the check clears at the start; "
                    "copy the model elsewhere first")
    if not args.diffusion_config.is_file():
        return f"{args.diffusion_config}: no such diffusion config (--diffusion-config)"
    if args.out.exists() and not args.out.is_dir():
        return f"{args.out}: exists and is not a folder (--out)"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = _check_inputs(args)
    if problem:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 1
    started, started_at = time.perf_counter(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if args.threads:
        import numba
        import torch

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    load_start = loadavg()
    torch_gpu, numba_gpu, found = find_gpus()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)  # runs left here would resume instead of being timed
    work.mkdir()
    ctx = Context(out=args.out, work=work, sizes=QUICK if args.quick else FULL, quick=args.quick, threads=args.threads,
                  torch_gpu=torch_gpu, numba_gpu=numba_gpu,
                  diffusion_model=args.diffusion_model.resolve() if args.diffusion_model else None,
                  diffusion_config=args.diffusion_config.resolve(), gpu_found=found)
    print(f"gpu_check: {found}", file=sys.stderr, flush=True)
    sections = [run_section(name, ctx) for name in args.only]
    failed = [s.name for s in sections if s.status == "failed"]
    import numba
    import torch

    report = {
        "schema": SCHEMA,
        "started": started_at,
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else "main(" + repr(argv) + ")",
        "quick": args.quick,
        "status": "failed" if failed else "ok",
        "failed_sections": failed,
        "total_wall_s": time.perf_counter() - started,
        "budget_s": BUDGET_S,
        "gpu": {"present": torch_gpu is not None or numba_gpu, "name": torch_gpu, "torch": torch_gpu is not None,
                "numba_cuda": numba_gpu, "found": found},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "numba_threads": numba.get_num_threads(), "load_start": load_start, "load_end": loadavg(),
                    "platform": platform.platform()},
        "versions": versions(),
        "sizes": asdict(ctx.sizes),
        "sections": [asdict(s) for s in sections],
    }
    json_path, md_path = write_outputs(args.out, report)
    print(markdown(report))
    print(f"gpu_check: wrote {json_path} and {md_path}" + (f"; failed: {', '.join(failed)}" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
