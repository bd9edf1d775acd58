"""The stages in order, then the model folder: what ``tumorsyn train-diffusion`` runs.

Stages: the autoencoder, the border refiner (when ``refiner.steps`` > 0; it needs only the
autoencoder) and the latent diffusion UNet.

Run folder (``output_dir``)::

    config.yaml, versions.json      the resolved config and library versions
    autoencoder/                    stage 1: checkpoints/, autoencoder.safetensors, network.json
    refiner/                        with refiner.steps > 0: checkpoints/, refiner.safetensors
                                    (and member_K/ for each other refiner of an ensemble, refiner.members > 1)
    ldm/                            stage 2: checkpoints/
    steps_<stage>.csv, curves_<stage>.png
    previews/                       PNG mid-slices during training
    model/                          the model folder (what `tumorsyn generate --model` loads)
    heldout/                        with data.holdout_sources: heldout.json + heldout.png (train_diffusion.evaluate)

With ``models: K`` > 1 the run trains K whole models one after another, each in its own run folder
``member_0/`` ... (laid out as above, model k from seed ``seed x K + k``, so ``models: 1`` is the single
model of ``seed`` and runs of other seeds share no member), then writes ``model/``, the mixture of
their model folders, and evaluates that.

Killed and started again with the same config, a run continues from its last checkpoint with the
same weights, optimizer, RNG and data stream; on CPU the result equals an uninterrupted run.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path

from tumorsyn.errors import ConfigError

from train_diffusion.config import dump_config
from train_diffusion.data import load_crops, spread_per_noise
from train_diffusion.export import MEMBER_FOLDER, export_mixture, export_model
from train_diffusion.runtime import versions
from train_diffusion.train_autoencoder import done_path, train_autoencoder
from train_diffusion.train_ldm import train_ldm
from train_diffusion.train_refiner import load_refiner, refiner_done_path, train_refiner

__all__ = ["train", "member_seed"]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(statistics.median(values)), 1) if values else None


def train(config: dict, *, resume: bool = True, quiet: bool = False, stop_at: tuple[str, int] | None = None) -> Path | None:
    """Train as the (validated) config says; return the model folder (None when stopped early).

    ``train.threads`` sets torch's CPU threads for the run only: the caller's count is restored after
    (float sums follow the thread count, so a leaked setting would change later results in-process).

    Parameters
    ----------
    config : dict
        From :func:`train_diffusion.config.load_config`.
    resume : bool
        Continue from the last checkpoints (default); ``False`` refuses a run folder that has some.
    quiet : bool
        No progress bars and no log lines.
    stop_at : (stage, step), optional
        Stop (as if killed) after this optimizer step of ``"autoencoder"``, ``"refiner"`` (``"refiner_K"``: the
        ensemble's member K) or ``"ldm"``; a later call resumes.
    """
    import torch

    before = torch.get_num_threads()
    try:
        return _train(config, resume=resume, quiet=quiet, stop_at=stop_at)
    finally:
        torch.set_num_threads(before)


def member_seed(seed: int, models: int, k: int) -> int:
    """The seed of model ``k`` of a run of ``models`` models with master seed ``seed``: ``seed x models + k``."""
    return int(seed) * int(models) + int(k)


def _train(config: dict, *, resume: bool, quiet: bool, stop_at) -> Path | None:
    if int(config["models"]) > 1:
        return _train_mixture(config, resume=resume, quiet=quiet, stop_at=stop_at)
    return _train_one(config, resume=resume, quiet=quiet, stop_at=stop_at, evaluate=True)


def _logger(config: dict, quiet: bool):
    """``(is_main_process, log)``: under accelerate launch / torchrun only rank 0 logs and writes (cpu=True: several
    CPU processes use gloo)."""
    from accelerate import PartialState

    main_process = PartialState(cpu=bool(config["train"]["cpu"])).is_main_process
    log = (lambda *m: None) if quiet or not main_process else (lambda *m: print(*m, file=sys.stderr, flush=True))
    return main_process, log


def _record_run(config: dict, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2))


def _evaluate_end(config: dict, folder: Path, log) -> None:
    """The end of a run: two samples per held-out tumour (``--evaluate`` reads more)."""
    if config["data"]["holdout_sources"]:
        from train_diffusion.evaluate import evaluate_model, summary_line

        device = "cpu" if config["train"]["cpu"] else "auto"
        log(summary_line(evaluate_model(config, model_dir=folder, samples=2, device=device, log=log)))


def _train_mixture(config: dict, *, resume: bool, quiet: bool, stop_at) -> Path | None:
    """``models: K``: K whole models in ``member_k/``, then their mixture in ``model/`` (see the module docstring)."""
    from accelerate import PartialState

    run_dir, models, stage = Path(config["output_dir"]), int(config["models"]), config["train"]["stage"]
    main_process, log = _logger(config, quiet)
    if main_process:
        _record_run(config, run_dir)
    folders, trained = [], []
    for k in range(models):
        member = copy.deepcopy(config)
        member.update(seed=member_seed(config["seed"], models, k), models=1,
                      output_dir=str(run_dir / MEMBER_FOLDER.format(k)))
        log(f"model {k + 1} of {models} (seed {member['seed']}): {member['output_dir']}")
        folder = _train_one(member, resume=resume, quiet=quiet, stop_at=stop_at, evaluate=False)
        if folder is None and stage == "all":
            return None  # stopped (stop_at): a later call resumes this member
        folders.append(folder)
        trained.append(member["seed"])
    if stage in ("autoencoder", "refiner"):
        return None
    folder = run_dir / "model"
    if main_process:
        summaries = [json.loads((f / "config.json").read_text())["training"] for f in folders]
        summary = {"models": models, "seed": int(config["seed"]), "member_seeds": trained,
                   "tumour_crops": summaries[0]["tumour_crops"], "healthy_crops": summaries[0]["healthy_crops"],
                   "organ": config["organ"],
                   "organ_median_hu": _median([s.get("organ_median_hu") for s in summaries]),
                   "spread_per_noise": (statistics.median(s["spread_per_noise"] for s in summaries)
                                        if all(s.get("spread_per_noise") for s in summaries) else None),
                   "members": summaries, "versions": versions()}
        export_mixture(folder, folders, summary=summary)
        log(f"model folder (a mixture of {models}): {folder}")
        _evaluate_end(config, folder, log)
    PartialState().wait_for_everyone()
    return folder


def _train_one(config: dict, *, resume: bool, quiet: bool, stop_at, evaluate: bool) -> Path | None:
    """One model: the stages in order, its model folder, and (``evaluate``) the end-of-run held-out figures."""
    run_dir = Path(config["output_dir"])
    stage = config["train"]["stage"]
    if not resume and any((run_dir / s / "checkpoints" / "LAST").is_file() for s in ("autoencoder", "refiner", "ldm")):
        raise ConfigError(f"{run_dir}: run folder already holds checkpoints; resume it or choose another output_dir")
    from accelerate import PartialState

    main_process, log = _logger(config, quiet)
    started = time.perf_counter()
    bank = load_crops(config, log=log)
    log(f"data: {len(bank.tumor_images)} tumour crop(s), {len(bank.healthy_images)} healthy crop(s)")
    if main_process:
        _record_run(config, run_dir)

    ae_path = done_path(run_dir)
    if stage in ("all", "autoencoder"):
        stop = stop_at[1] if stop_at and stop_at[0] == "autoencoder" else None
        if train_autoencoder(config, bank, resume=resume, quiet=quiet, stop_at_step=stop) is None:
            return None
        if stage == "autoencoder":
            return None
    with_refiner = int(config["refiner"]["steps"]) > 0
    members = int(config["refiner"]["members"]) if with_refiner else 0
    if with_refiner and stage in ("all", "refiner"):
        # An ensemble's refiners one after another, each from its own seed.
        for member in range(members):
            name = "refiner" if member == 0 else f"refiner_{member}"
            stop = stop_at[1] if stop_at and stop_at[0] == name else None
            if train_refiner(config, bank, ae_path, member=member, resume=resume, quiet=quiet,
                             stop_at_step=stop) is None:
                return None
    if stage == "refiner":
        return None
    stop = stop_at[1] if stop_at and stop_at[0] == "ldm" else None
    result = train_ldm(config, bank, ae_path, resume=resume, quiet=quiet, stop_at_step=stop)
    if result is None:
        return None
    summary = {
        "autoencoder_steps": int(config["autoencoder"]["steps"]), "ldm_steps": int(result.steps),
        "refiner_steps": int(config["refiner"]["steps"]), "refiner_members": members,
        "ema": config["ldm"]["ema_decay"] is not None, "seed": int(config["seed"]),
        "tumour_crops": len(bank.tumor_images), "healthy_crops": len(bank.healthy_images),
        "tumours": bank.tumors, "cases": bank.cases, "organ": config["organ"],
        # What the model learnt the organ to look like (HU): the generator warns on a host far from it.
        "organ_median_hu": _median([c["organ_median_hu"] for c in bank.cases]),
        # The ring spread the model's contrast is measured in, per unit of its tumours' shell noise.
        "spread_per_noise": (spread_per_noise(bank, config["data"]["relative_window_sd"])
                             if config["data"]["intensity"] == "relative" else None),
        "seconds_this_call": round(time.perf_counter() - started, 1), "versions": versions(),
    }
    folder = run_dir / "model"
    if main_process:
        refiners = [load_refiner(config, refiner_done_path(run_dir, k), "cpu") for k in range(members)]
        export_model(folder, config, autoencoder=result.autoencoder, unet=result.unet,
                     noise_scheduler=result.noise_scheduler, scale_factor=result.scale_factor, summary=summary,
                     refiners=refiners)
        log(f"model folder: {folder}")
        if evaluate:
            _evaluate_end(config, folder, log)
    PartialState().wait_for_everyone()
    return folder
