"""The training loop (accelerate): mixed precision, gradient accumulation, resumable checkpoints, best model.

Run folder layout (``output_dir``)::

    config.yaml        the full resolved config        versions.json    library versions, device
    init_report.json   weights matched from network.init_checkpoint (when given)
    checkpoints/       step_<N>/ (accelerate.save_state: model, optimizer, RNG) + LAST (name of the newest)
    model/             the selected model: config.json + model.safetensors (what ``predict`` loads)
    model_last/        the model after the last step
    steps.csv          one row per optimizer step (loss, lr)
    metrics.csv        one row per epoch (train loss, validation sensitivity and Dice)
    curves.png         training curves

Killed at any moment and started again with the same config, a run loads ``checkpoints/LAST`` and
continues from that step with the same model, optimizer, scheduler, RNG and data stream (sample
``k`` depends on ``(seed, k)`` only), so the result equals that of an uninterrupted run on CPU.
``accelerate launch`` on several GPUs or nodes runs the same config (data-parallel; the data stream
is split between processes).
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tumorsyn.errors import ConfigError
from tumorsyn.runfolder import Checkpoints, read_rows, write_rows

from segment.config import dump_config
from segment.data import (TUMOR, TrainSamples, build_synthesis, build_train_transform, load_sources,
                          make_train_loader, scale_hu)
from segment.networks import build_network, describe_init, init_from_checkpoint, save_model

__all__ = ["train", "TrainState", "validate", "model_meta", "versions", "check_resume_settings"]

STEP_FIELDS = ["step", "epoch", "loss", "lr", "seconds"]
EPOCH_FIELDS = ["epoch", "step", "train_loss", "lr", "val_sensitivity", "val_small_sensitivity", "val_dice",
                "selected", "seconds"]


@dataclass
class TrainState:
    """Progress saved in every checkpoint (with model, optimizer, scheduler and RNG, by accelerate)."""

    step: int = 0
    epoch: int = 0
    best_score: list | None = None
    best_step: int = -1

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def versions() -> dict:
    """Versions of everything that shapes a run's numbers."""
    import accelerate
    import monai

    import tumorsyn

    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "monai": monai.__version__, "accelerate": accelerate.__version__, "numpy": np.__version__,
            "tumorsyn": tumorsyn.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads()}


def model_meta(config: dict, *, step: int) -> dict:
    """What ``predict`` needs to rebuild and run the model (saved as ``model/config.json``)."""
    d = config["data"]
    return {"network": {"name": config["network"]["name"], "kwargs": config["network"]["kwargs"]},
            "out_channels": 3, "classes": ["background", config["organ"], "tumor"], "organ": config["organ"],
            "data": {"spacing_mm": d["spacing_mm"], "roi_size": d["roi_size"], "hu_window": d["hu_window"],
                     "crop_margin_mm": d["crop_margin_mm"]},
            "predict": dict(config["predict"]), "trained_steps": int(step), "seed": config["seed"]}


def _lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:  # linear warm-up, then cosine decay to 0 at the last step
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def validate(model: torch.nn.Module, items: list[dict], config: dict, *, device) -> dict:
    """Tumour sensitivity (per lesion, all sizes and < 20 mm) and Dice on validation scans (training spacing)."""
    from tumorsyn.metrics import evaluate_case, summarize

    from segment.predict import infer_probabilities

    p, d = config["predict"], config["data"]
    results = []
    was_training = model.training
    model.eval()
    for item in items:
        image = scale_hu(item["image"].as_tensor().float(), d["hu_window"])
        probs = infer_probabilities(model, image, roi_size=d["roi_size"], overlap=p["overlap"],
                                    sw_batch_size=p["sw_batch_size"], device=device).numpy()
        label = item["label"].as_tensor().numpy()[0]
        prediction = (probs[TUMOR] >= p["threshold"]) & ((probs[1] + probs[2]) >= 0.5)
        results.append(evaluate_case(label == TUMOR, prediction, spacing_mm=item["spacing_mm"], case_id=item["case_id"]))
    model.train(was_training)
    summary = summarize(results)
    ls = summary["lesion_sensitivity"]
    return {"sensitivity": ls["overall"]["value"], "small_sensitivity": ls["early_lt_20mm"]["value"],
            "dice": summary["segmentation"]["dice_per_case"]["mean"], "summary": summary}


def _score(metrics: dict | None, select_on: str, step: int) -> list:
    """Comparable score: higher is better; ``None`` metrics count as -1."""
    if select_on == "last" or metrics is None:
        return [float(step)]
    sens = -1.0 if metrics["sensitivity"] is None else float(metrics["sensitivity"])
    dice = -1.0 if metrics["dice"] is None else float(metrics["dice"])
    return [sens, dice] if select_on == "sensitivity" else [dice, sens]


NOT_VALIDATED = "not validated: data.validation has no cases, so model/ is the last step's model"


def _epoch_line(state: TrainState, row: dict, *, validated: bool, selected: bool, select_on: str) -> str:
    """The log line of an epoch; every "n/a" says why."""
    head = f"epoch {state.epoch} step {state.step}: loss {row['train_loss']}"
    if not validated:
        return f"{head}; {NOT_VALIDATED}"
    none = "n/a (no tumour in the validation scans)"
    kept = "" if not selected else (" (kept as model/: select_on last)" if select_on == "last"
                                    else f" (best so far by {select_on}: kept as model/)")
    return f"{head}, val sensitivity {row['val_sensitivity'] or none}, Dice {row['val_dice'] or none}{kept}"


def _plot(run_dir: Path, step_rows: list[dict], epoch_rows: list[dict], *, empty_note: str = "") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if step_rows:
        axes[0].plot([int(r["step"]) for r in step_rows], [float(r["loss"]) for r in step_rows], lw=0.8)
    axes[0].set(xlabel="optimizer step", ylabel="training loss (Dice + CE)", title="loss")
    for key, label in (("val_sensitivity", "lesion sensitivity"), ("val_small_sensitivity", "sensitivity < 20 mm"),
                       ("val_dice", "Dice")):
        pts = [(int(r["step"]), float(r[key])) for r in epoch_rows if r.get(key) not in (None, "", "None")]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=label)
    axes[1].set(xlabel="optimizer step", ylabel="validation", ylim=(-0.02, 1.02), title="validation (tumour)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    elif empty_note:  # an empty panel says why it is empty
        axes[1].text(0.5, 0.5, empty_note, ha="center", va="center", wrap=True, fontsize=9,
                     transform=axes[1].transAxes)
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(config: dict, *, resume: bool = True, quiet: bool = False, stop_at_step: int | None = None) -> Path:
    """Train a segmentation network as the (validated) config says; return the run folder.

    Parameters
    ----------
    config : dict
        From :func:`segment.config.load_config`.
    resume : bool
        Continue from ``checkpoints/LAST`` when the run folder holds one (default). ``False`` refuses
        to overwrite a run folder that has checkpoints.
    quiet : bool
        No progress bar and no log lines.
    stop_at_step : int, optional
        Stop (as if killed) after this optimizer step and its checkpoint; a later call resumes.

    Notes
    -----
    ``train.threads`` sets torch's CPU threads for the run (restored afterwards). On a small shared
    CPU, fewer threads than cores leave room for the DataLoader workers and other processes: torch's
    threads wait for each other at every operation, so one descheduled thread stalls them all.
    """
    threads = config["train"]["threads"]
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    # On the CPU a fixed seed gives the same weights bit for bit (tested with DataLoader workers): torch's
    # deterministic kernels, and a data stream that is a function of (seed, k) alone. On GPUs some kernels
    # have no deterministic twin; there it is left to torch's defaults.
    deterministic = torch.are_deterministic_algorithms_enabled()
    on_cpu = bool(config["train"]["cpu"]) or not torch.cuda.is_available()
    if on_cpu:
        torch.use_deterministic_algorithms(True)
    try:
        return _train(config, resume=resume, quiet=quiet, stop_at_step=stop_at_step)
    finally:
        torch.set_num_threads(previous)
        if on_cpu:
            torch.use_deterministic_algorithms(deterministic)


# Keys a resumed run may change: where the folder is, how many loader processes feed it (sample k
# depends on (seed, k) only), whether a progress bar is shown. Any other difference makes another run.
RESUME_FREE_KEYS = ("output_dir", "data.workers", "train.progress")


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            out.update(_flat(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def check_resume_settings(config: dict, run_dir: Path) -> None:
    """Refuse to resume a run folder whose ``config.yaml`` was written with other settings.

    Raises
    ------
    ConfigError
        Naming the folder and the keys that differ (``RESUME_FREE_KEYS`` excepted).
    """
    import yaml

    saved_path = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError):
        saved = None
    # The current config as it would be saved (tuples as lists), so both sides compare alike.
    ours, theirs = _flat(yaml.safe_load(yaml.safe_dump(config))), _flat(saved if isinstance(saved, dict) else {})
    diff = sorted(k for k in set(ours) | set(theirs) if k not in RESUME_FREE_KEYS and ours.get(k) != theirs.get(k))
    if diff:
        shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise ConfigError(f"this folder holds a training run made with other settings ({shown}); "
                          "use another output folder (--out), or the same config to resume it", path=run_dir)


def _train(config: dict, *, resume: bool, quiet: bool, stop_at_step: int | None) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from monai.losses import DiceCELoss

    t, d = config["train"], config["data"]
    run_dir = Path(config["output_dir"])
    checkpoints = Checkpoints(run_dir / "checkpoints")
    if not resume and checkpoints.last() is not None:
        raise ConfigError(f"{run_dir}: run folder already holds checkpoints; resume it or choose another output_dir")
    if resume and checkpoints.last() is not None:
        check_resume_settings(config, run_dir)
    if t["mixed_precision"] == "fp16" and not torch.cuda.is_available() and not t["cpu"]:
        raise ConfigError("train.mixed_precision fp16 needs a CUDA GPU; use bf16 (CPU and recent GPUs) or no")
    from accelerate.state import AcceleratorState, GradientState

    # One process may train several runs (an experiment's arms, tests) with different precision or
    # accumulation: clear accelerate's per-process singletons first (the distributed setup is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    # cpu=True without a GPU: accelerate then sets up data-parallel CPU processes (gloo) under a launcher.
    accelerator = Accelerator(mixed_precision=t["mixed_precision"], gradient_accumulation_steps=t["grad_accum"],
                              cpu=bool(t["cpu"]) or not torch.cuda.is_available())
    log = (lambda *a: None) if quiet or not accelerator.is_main_process else \
        (lambda *a: print(*a, file=sys.stderr, flush=True))
    set_seed(int(config["seed"]))

    total_steps = int(t["epochs"]) * int(t["steps_per_epoch"])
    # An untrained arm (0 steps) needs no training data: only the network is built and saved.
    items = load_sources(config, ("real", "healthy")) if total_steps > 0 else []
    val_items = load_sources(config, ("validation",)) if total_steps > 0 else []
    if t["select_on"] != "last" and not val_items:
        log(f"no validation cases: the model of the last step is kept (train.select_on={t['select_on']} needs data.validation)")

    model = build_network(config["network"]["name"], roi_size=d["roi_size"], **config["network"]["kwargs"])
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(config, run_dir / "config.yaml")
        (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2))
    if config["network"]["init_checkpoint"]:
        report = init_from_checkpoint(model, config["network"]["init_checkpoint"])
        log(describe_init(report))
        if accelerator.is_main_process:
            (run_dir / "init_report.json").write_text(json.dumps(report, indent=2))

    optimizer = torch.optim.AdamW(model.parameters(), lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(int(t["warmup_steps"]), max(1, total_steps)))
    state = TrainState()
    model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler is stepped once per optimizer step by this loop (not prepared: accelerate would
    # step it once per process); it is saved with every checkpoint all the same.
    accelerator.register_for_checkpointing(scheduler)
    accelerator.register_for_checkpointing(state)
    last = checkpoints.last() if resume else None
    if last is not None:
        accelerator.load_state(str(last))
        log(f"resumed from {last} (step {state.step}, epoch {state.epoch})")

    # Batch Dice (nnU-Net's choice): Dice pooled over the batch's patches, so a patch without tumour
    # does not push tumour predictions to zero as hard as a per-patch Dice would.
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=bool(t["batch_dice"]))
    step_rows = read_rows(run_dir / "steps.csv", state.step)
    epoch_rows = read_rows(run_dir / "metrics.csv", state.step)
    world = accelerator.num_processes
    per_step = int(d["batch_size"]) * int(t["grad_accum"]) * world
    if total_steps > state.step:
        s = config["synthesis"]
        on_device = bool(s["enabled"] and s["batched_on_device"])
        workers = 0 if on_device else int(d["workers"])
        if on_device:
            log(f"synthesis.batched_on_device: tumours of each batch written on {accelerator.device} in the "
                "training process (data.workers not used)")
        elif s["enabled"] and s["method"] == "diffusion" and accelerator.device.type == "cuda" and workers > 0:
            log("synthesis.method diffusion samples on the CPU in the DataLoader workers (slow); "
                "--set synthesis.batched_on_device=true samples each batch on the GPU")
        # Workers synthesise on the CPU (CUDA cannot be used in a forked worker); without workers,
        # the training process uses its own device.
        # "cpu:0" (a data-parallel CPU process) is the CPU for the generators.
        device_name = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
        worker_device = "cpu" if workers > 0 else device_name
        dataset = TrainSamples(items, build_train_transform(config, synthesis=False if on_device else None,
                                                            device=worker_device),
                               seed=int(config["seed"]),
                               weights={"real": d["real"]["weight"], "healthy": d["healthy"]["weight"]},
                               roi_size=d["roi_size"],
                               synthesis=build_synthesis(config, device=device_name) if on_device else None)
        loader = make_train_loader(dataset, start=state.step * per_step, stop=total_steps * per_step,
                                   batch_size=int(d["batch_size"]), workers=workers)
        if world > 1:
            loader = accelerator.prepare(loader)
        _loop(accelerator, model, optimizer, scheduler, loader, loss_fn, state, config, run_dir, checkpoints,
              val_items, step_rows, epoch_rows, total_steps, log, quiet, stop_at_step)
    if state.step >= total_steps and accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_model(unwrapped, run_dir / "model_last", model_meta(config, step=state.step))
        if state.best_step < 0 or not (run_dir / "model").is_dir():
            save_model(unwrapped, run_dir / "model", model_meta(config, step=state.step))
        _plot(run_dir, step_rows, epoch_rows, empty_note=NOT_VALIDATED if not val_items else
              f"no validation yet: the first comes at the end of epoch 0 (step {t['steps_per_epoch']})")
    accelerator.wait_for_everyone()
    return run_dir


def _plain(value) -> torch.Tensor:
    """A batch tensor without MONAI metadata."""
    return value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)


def _loop(accelerator, model, optimizer, scheduler, loader, loss_fn, state, config, run_dir, checkpoints, val_items,
          step_rows, epoch_rows, total_steps, log, quiet, stop_at_step) -> None:
    from tumorsyn.cli.common import progress

    t = config["train"]
    device = accelerator.device
    bar = progress(total=total_steps, desc="train", unit="step", quiet=quiet or not accelerator.is_main_process)
    bar.update(state.step)
    model.train()
    losses, epoch_losses, started = [], [], time.perf_counter()
    epoch_losses = [float(r["loss"]) for r in step_rows if int(r["epoch"]) == state.epoch]
    for batch in loader:
        with accelerator.accumulate(model):
            # Plain tensors: a MetaTensor would carry its metadata through every layer (slower, no use here).
            images = _plain(batch["image"]).to(device, non_blocking=True).float()
            labels = _plain(batch["label"]).to(device, non_blocking=True).float()
            with accelerator.autocast():
                logits = model(images)
            loss = loss_fn(logits.float(), labels)
            accelerator.backward(loss)
            if accelerator.sync_gradients and t["max_grad_norm"] > 0:
                accelerator.clip_grad_norm_(model.parameters(), float(t["max_grad_norm"]))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.step += 1
        mean_loss = float(accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
        losses = []
        epoch_losses.append(mean_loss)
        step_rows.append({"step": state.step, "epoch": state.epoch, "loss": f"{mean_loss:.6f}",
                          "lr": f"{scheduler.get_last_lr()[0]:.6g}", "seconds": f"{time.perf_counter() - started:.3f}"})
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        epoch_end = state.step % int(t["steps_per_epoch"]) == 0
        if epoch_end:
            _end_epoch(accelerator, model, state, config, run_dir, val_items, epoch_losses, epoch_rows, scheduler,
                       started, log)
            epoch_losses = []
        if epoch_end or state.step % int(t["checkpoint_every"]) == 0 or state.step == total_steps:
            if accelerator.is_main_process:
                write_rows(run_dir / "steps.csv", STEP_FIELDS, step_rows)
                write_rows(run_dir / "metrics.csv", EPOCH_FIELDS, epoch_rows)
            checkpoints.save(accelerator, state.step)
        if stop_at_step is not None and state.step >= stop_at_step:
            break
    bar.close()


def _end_epoch(accelerator, model, state, config, run_dir, val_items, epoch_losses, epoch_rows, scheduler, started,
               log) -> None:
    t = config["train"]
    metrics = None
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if val_items:
            metrics = validate(unwrapped, val_items, config, device=accelerator.device)
        score = _score(metrics, t["select_on"] if val_items else "last", state.step)
        selected = state.best_score is None or score > list(state.best_score)
        if selected:
            state.best_score, state.best_step = score, state.step
            save_model(unwrapped, run_dir / "model", model_meta(config, step=state.step))
        fmt = (lambda v: "" if v is None else f"{v:.4f}")
        epoch_rows.append({"epoch": state.epoch, "step": state.step,
                           "train_loss": f"{float(np.mean(epoch_losses)) if epoch_losses else float('nan'):.6f}",
                           "lr": f"{scheduler.get_last_lr()[0]:.6g}",
                           "val_sensitivity": fmt(metrics and metrics["sensitivity"]),
                           "val_small_sensitivity": fmt(metrics and metrics["small_sensitivity"]),
                           "val_dice": fmt(metrics and metrics["dice"]), "selected": int(selected),
                           "seconds": f"{time.perf_counter() - started:.2f}"})
        log(_epoch_line(state, epoch_rows[-1], validated=bool(val_items), selected=selected, select_on=t["select_on"]))
    # Every process needs the same best score/step in its TrainState: broadcast from the main one.
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        payload = broadcast_object_list([state.best_score, state.best_step])
        state.best_score, state.best_step = payload
    state.epoch += 1
