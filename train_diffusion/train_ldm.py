"""Stage 2: the latent diffusion UNet, conditioned by concatenation on the blanked crop's latent and the mask.

UNet input: noisy latent (C) + latent of the crop with the tumour blanked (C) + mask pooled to the
latent grid (1). Noise schedule and prediction type (epsilon, v, sample, or rectified flow) come from
the config; the autoencoder is frozen; EMA weights (diffusers ``EMAModel``) are what gets exported.

Writes ``<run>/ldm/checkpoints/``, ``<run>/steps_ldm.csv``, ``curves_ldm.png`` and
``previews/ldm_step<N>.png`` (crop | blanked | sampled).
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tumorsyn.errors import ConfigError
from tumorsyn.generators.diffusion.sampler import blank_crop, encode, inpaint, latent_mask
from tumorsyn.generators.diffusion.schedulers import is_flow

from train_diffusion.data import CropBank
from train_diffusion.export import model_config
from train_diffusion.models import build_autoencoder, build_unet, noise_scheduler
from train_diffusion.runlog import (Checkpoints, StageState, checkpoint_or_stop, plot_curves, read_rows, save_preview,
                                    write_rows)
from train_diffusion.runtime import ema_copy, ema_model, lr_schedule, make_accelerator, micro_seed

__all__ = ["train_ldm", "noise_scheduler", "FIELDS", "LdmResult"]

FIELDS = ["step", "loss", "seconds"]


@dataclass
class LdmResult:
    """What the export needs: frozen autoencoder, (EMA) UNet, noise schedule, latent scale."""

    autoencoder: Any
    unet: Any
    noise_scheduler: Any
    scale_factor: float
    steps: int


@dataclass
class _InMemoryModel:
    """The sampler's view of a model during training (same fields as a loaded model folder)."""

    config: dict
    scheduler_config: dict
    autoencoder: Any
    unet: Any
    device: Any


def load_frozen_autoencoder(config: dict, path: Path, device):
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no trained autoencoder; run stage 1 first (train.stage=all or autoencoder)")
    model = build_autoencoder(config)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ConfigError(f"{path}: autoencoder weights do not fit the config's autoencoder "
                          f"({str(exc).splitlines()[0]}); retrain stage 1 with this config") from None
    return model.to(device).eval().requires_grad_(False)


def _targets(config, sched, z0, noise, generator):
    """Noisy latent, timesteps and regression target for one batch."""
    l, b = config["ldm"], z0.shape[0]
    if is_flow(l["prediction_type"]):
        sigma = torch.rand(b, generator=generator).to(z0.device)
        s = sigma.view(-1, 1, 1, 1, 1)
        return (1.0 - s) * z0 + s * noise, sigma * float(l["num_train_timesteps"]), noise - z0
    t = torch.randint(0, int(l["num_train_timesteps"]), (b,), generator=generator).to(z0.device)
    zt = sched.add_noise(z0, noise, t)
    if l["prediction_type"] == "epsilon":
        target = noise
    elif l["prediction_type"] == "v_prediction":
        target = sched.get_velocity(z0, noise, t)
    else:
        target = z0
    return zt, t, target


def train_ldm(config: dict, bank: CropBank, autoencoder_path: Path, *, resume: bool = True, quiet: bool = False,
              stop_at_step: int | None = None) -> LdmResult | None:
    """Train stage 2; return the result when all steps are done (None when stopped early)."""
    from tumorsyn.cli.common import progress

    l, t = config["ldm"], config["train"]
    run_dir = Path(config["output_dir"])
    checkpoints = Checkpoints(run_dir / "ldm" / "checkpoints", keep=t["keep_checkpoints"])
    accelerator = make_accelerator(config)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = (lambda *m: None) if quiet or not accelerator.is_main_process else (lambda *m: print(*m, file=sys.stderr, flush=True))
    device = accelerator.device
    torch.manual_seed(int(config["seed"]) + 1)
    ae = load_frozen_autoencoder(config, autoencoder_path, device)
    unet = build_unet(config)
    sched = noise_scheduler(config)
    ema = ema_model(unet, l["ema_decay"], device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=float(l["lr"]), weight_decay=0.0)
    schedule = lr_schedule(optimizer, l["lr_schedule"], int(l["steps"]))
    unet, optimizer = accelerator.prepare(unet, optimizer)
    state = StageState()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if l["lr_schedule"] != "constant":
        # Registered last and only when it changes anything: checkpoints of runs without it keep their layout.
        accelerator.register_for_checkpointing(schedule)
    last = checkpoints.last() if resume else None
    if last is not None:
        accelerator.load_state(str(last))
        log(f"ldm: resumed from {last} (step {state.step})")
    rank = accelerator.process_index
    if state.step == 0 and not state.extra.get("scale_set"):
        state.scale_factor = _scale_factor(ae, bank, config, device, accelerator)
        state.extra = {"scale_set": True}
        log(f"ldm: latent scale factor {state.scale_factor:.4g} (1 / std of tumour-crop latents)")
    scale = float(state.scale_factor)
    blank = float(config["data"]["blank_value"])
    rows = read_rows(run_dir / "steps_ldm.csv", state.step)
    total, accum = int(l["steps"]), int(t["grad_accum"])
    bar = progress(total=total, desc="ldm", unit="step", quiet=quiet or not accelerator.is_main_process)
    bar.update(state.step)
    unet.train()
    loss_sum, started = 0.0, time.perf_counter()
    while state.step < total:
        step = state.step
        for j in range(accum):
            micro = step * accum + j
            x, m = bank.batch("tumor", l["batch_size"], seed=config["seed"], stage="ldm", index=micro, rank=rank,
                              flip=config["data"]["flip"])
            x, m = torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)
            with torch.no_grad():
                z0 = encode(ae, x).float() * scale
                cond = encode(ae, blank_crop(x, m, blank)).float() * scale
                m_lat = latent_mask(m, z0.shape[2:])
            generator = torch.Generator().manual_seed(micro_seed(config["seed"], 2, micro, rank))
            noise = torch.randn(z0.shape, generator=generator).to(device)
            zt, timesteps, target = _targets(config, sched, z0, noise, generator)
            with (nullcontext() if j == accum - 1 else accelerator.no_sync(unet)), accelerator.autocast():
                pred = unet(torch.cat([zt, cond, m_lat], dim=1), timesteps=timesteps).float()
                loss = F.mse_loss(pred, target) if l["loss"] == "mse" else F.l1_loss(pred, target)
            accelerator.backward(loss / accum)
            loss_sum += float(loss.detach()) / accum
        if t["max_grad_norm"]:
            accelerator.clip_grad_norm_(unet.parameters(), float(t["max_grad_norm"]))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(accelerator.unwrap_model(unet).parameters())
        state.step += 1
        bar.update(1)
        every = int(t["log_every"])
        if state.step % every == 0 or state.step == total:
            n = every if state.step % every == 0 else state.step % every
            rows.append({"step": state.step, "loss": f"{loss_sum / n:.6g}", "seconds": round(time.perf_counter() - started, 3)})
            loss_sum = 0.0
            if accelerator.is_main_process:
                write_rows(run_dir / "steps_ldm.csv", FIELDS, rows)
        if t["preview_every"] and state.step % int(t["preview_every"]) == 0 and accelerator.is_main_process:
            _preview(ae, _ema_unet(accelerator.unwrap_model(unet), ema, config), sched, bank, config, run_dir,
                     state.step, scale, device)
        if checkpoint_or_stop(accelerator, checkpoints, state.step, total, t["checkpoint_every"], stop_at_step):
            bar.close()
            return None
    bar.close()
    final = _ema_unet(accelerator.unwrap_model(unet), ema, config)
    if accelerator.is_main_process:
        _preview(ae, final, sched, bank, config, run_dir, state.step, scale, device)
        plot_curves(run_dir / "curves_ldm.png", rows, ["loss"], "latent diffusion")
    accelerator.wait_for_everyone()
    return LdmResult(autoencoder=ae, unet=final, noise_scheduler=sched, scale_factor=scale, steps=state.step)


def _ema_unet(unet, ema, config):
    """A copy of the UNet holding the EMA weights (or the UNet itself without EMA)."""
    return ema_copy(unet, ema, lambda: build_unet(config))


def _scale_factor(ae, bank: CropBank, config: dict, device, accelerator) -> float:
    """1 / std of the latents of a few tumour crops (unit-variance latents, as in latent diffusion)."""
    x, _ = bank.batch("tumor", max(4, int(config["ldm"]["batch_size"])), seed=config["seed"], stage="preview", index=1,
                      flip=False)
    with torch.no_grad():
        z = encode(ae, torch.from_numpy(x).to(device)).float()
    std = accelerator.reduce(z.std().reshape(1), reduction="mean")
    return float(1.0 / max(float(std), 1e-6))


def _preview(ae, unet, sched, bank: CropBank, config: dict, run_dir: Path, step: int, scale: float, device) -> None:
    x, m = bank.batch("tumor", 1, seed=config["seed"], stage="preview", index=0, flip=False)
    was = unet.training
    unet.eval()
    model = _InMemoryModel(config=model_config(config, scale_factor=scale),
                           scheduler_config={"_class_name": type(sched).__name__, **dict(sched.config)},
                           autoencoder=ae, unet=unet, device=device)
    out = inpaint(model, x[:, 0], m[:, 0], seeds=[int(config["seed"])])
    unet.train(was)
    blanked = blank_crop(x[0, 0], m[0, 0], float(config["data"]["blank_value"]))
    save_preview(run_dir / "previews" / f"ldm_step{step:07d}.png", [x[0, 0], blanked, out[0]],
                 ["real", "blanked", f"sample (seed {int(config['seed'])})"], mask=m[0, 0])
