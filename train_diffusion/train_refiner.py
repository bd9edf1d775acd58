"""Stage 1b: the border refiner, a small full-resolution MONAI UNet trained on the frozen autoencoder.

Why: the latent grid is four times coarser than the crop, so the diffusion UNet sees the tumour's
outline only to a latent voxel (5 mm at 1.25 mm) and the decoder draws a soft border. The refiner
sees the decoded crop, the blanked crop (the host's own voxels) and the exact tumour mask at full
resolution, and adds a correction (:func:`tumorsyn.generators.diffusion.sampler.refine`).

Training pairs come from real tumour crops: the target is the crop itself; the input is its
autoencoder round trip, degraded inside the generated region the way a sampled latent falls short of
a real one (Gaussian noise of up to ``refiner.latent_noise`` x the latent's SD in the masked latent
voxels, the region's contrast shrunk by up to ``refiner.contrast_shrink``, then a Gaussian blur of SD
up to ``refiner.blur_max_mm`` mm of the decoded region). The loss
is L1, weight 1 inside the generated (grown) region, ``refiner.outside_weight`` elsewhere. With
``refiner.lr_schedule: cosine`` the learning rate falls to 0 over the run, and with ``refiner.ema_decay`` the
saved weights are their exponential moving average (diffusers ``EMAModel``): the refiner sets the written
tumour's contrast and edge, and a constant-rate final snapshot made two runs of one recipe disagree there.

Writes ``<run>/refiner/``: ``checkpoints/`` (resumable), ``refiner.safetensors`` when done, and
``<run>/steps_refiner.csv``, ``curves_refiner.png``, ``previews/refiner_step<N>.png``
(real | decoded, degraded | refined).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from tumorsyn.errors import ConfigError
from tumorsyn.generators.diffusion.sampler import decode, encode, latent_mask, refine

from train_diffusion.data import CropBank
from train_diffusion.models import build_refiner
from train_diffusion.runlog import (Checkpoints, StageState, after_step, plot_curves, read_rows,
                                    save_preview, save_weights)
from train_diffusion.runtime import ema_copy, ema_model, lr_schedule, make_accelerator

__all__ = ["train_refiner", "refiner_done_path", "member_config", "member_dir", "load_refiner", "degraded_decode",
           "FIELDS"]

FIELDS = ["step", "l1_inside", "l1_outside", "loss", "seconds"]


def member_dir(run_dir: Path, member: int = 0) -> Path:
    """Stage folder of an ensemble member: ``refiner/`` for the first, ``refiner/member_K/`` for the others."""
    stage = Path(run_dir) / "refiner"
    return stage if member == 0 else stage / f"member_{member}"


def refiner_done_path(run_dir: Path, member: int = 0) -> Path:
    return member_dir(run_dir, member) / "refiner.safetensors"


def member_config(config: dict, member: int) -> dict:
    """The config an ensemble member trains with: the run's own for the first, else its own seed.

    Each member's seed is drawn from (run seed, member), never ``seed + member``: two runs of a recipe
    with neighbouring seeds would otherwise share refiners and agree for the wrong reason.
    """
    if member == 0:
        return config
    seed = int(np.random.SeedSequence([int(config["seed"]), 17, int(member)]).generate_state(1)[0] % (2**31 - 1))
    return {**config, "seed": seed}


def load_refiner(config: dict, path: Path, device):
    """The trained refiner of a run folder, frozen, or None when the config trains none."""
    from safetensors.torch import load_file

    if int(config["refiner"]["steps"]) == 0:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no trained refiner; run its stage first (train.stage=all or refiner), "
                          "or set refiner.steps=0")
    model = build_refiner(config)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ConfigError(f"{path}: refiner weights do not fit the config's refiner ({str(exc).splitlines()[0]}); "
                          "retrain the refiner with this config") from None
    return model.to(device).eval().requires_grad_(False)


def _blur(volume: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """Separable Gaussian blur (B, 1, X, Y, Z) with SD ``sigma_vox`` voxels, edges replicated."""
    if sigma_vox <= 0:
        return volume
    radius = max(1, int(np.ceil(3 * sigma_vox)))
    offsets = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_vox) ** 2)
    kernel = kernel / kernel.sum()
    out = volume
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(kernel)
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = torch.nn.functional.conv3d(torch.nn.functional.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out


def degraded_decode(ae, x, mask, *, latent_noise: float, blur_vox: float, generator: torch.Generator,
                    contrast_shrink: float = 0.0):
    """decode(encode(x)) with the masked latent noised, the region's contrast shrunk and blurred (one level per crop).

    Parameters
    ----------
    ae : torch.nn.Module
        The frozen autoencoder.
    x, mask : torch.Tensor, shape (B, 1, X, Y, Z)
        Crops in [-1, 1] and their generated (grown) regions.
    latent_noise : float
        Largest noise SD, in units of the batch latent's SD; each crop draws its own in [0, latent_noise].
    blur_vox : float
        Largest blur SD (voxels); each crop draws its own in [0, blur_vox].
    contrast_shrink : float
        Largest fraction by which the region's departure from the mean of the one-voxel ring around it is
        shrunk (each crop draws its own in [0, contrast_shrink]; 0 = off, and no draw is made): a sampled
        tumour may fill its region only in part, and the refiner learns to restore it at the mask.
    generator : torch.Generator
        CPU generator of every draw (a resumed run repeats them).
    """
    with torch.no_grad():
        z = encode(ae, x).float()
        b = len(z)
        levels = torch.rand(b, generator=generator) * float(latent_noise) * float(z.std())
        noise = torch.randn(tuple(z.shape), generator=generator)
        z = z + latent_mask(mask, z.shape[2:]) * (levels.view(-1, 1, 1, 1, 1) * noise).to(z.device)
        decoded = decode(ae, z).float()
        if contrast_shrink > 0:
            keep = (1.0 - torch.rand(b, generator=generator) * float(contrast_shrink)).view(-1, 1, 1, 1, 1).to(z.device)
            ring = torch.nn.functional.max_pool3d(mask, 3, stride=1, padding=1) - mask
            level = (decoded * ring).sum(dim=(1, 2, 3, 4), keepdim=True) / ring.sum(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1)
            decoded = decoded + mask * (keep - 1.0) * (decoded - level)
        sigmas = (torch.rand(b, generator=generator) * float(blur_vox)).tolist()
        blurred = torch.cat([_blur(decoded[k:k + 1], s) for k, s in enumerate(sigmas)])
        return decoded * (1.0 - mask) + blurred * mask


def train_refiner(config: dict, bank: CropBank, ae_path: Path, *, member: int = 0, resume: bool = True,
                  quiet: bool = False, stop_at_step: int | None = None) -> Path | None:
    """Train one refiner (``member`` of the ensemble, :func:`member_config`); return its weights file when all
    steps are done (None when stopped early)."""
    from tumorsyn.cli.common import progress
    from train_diffusion.train_ldm import load_frozen_autoencoder

    config = member_config(config, member)
    r, t, d = config["refiner"], config["train"], config["data"]
    run_dir = Path(config["output_dir"])
    stage_dir = member_dir(run_dir, member)
    name = "refiner" if member == 0 else f"refiner_{member}"
    checkpoints = Checkpoints(stage_dir / "checkpoints", keep=t["keep_checkpoints"])
    accelerator = make_accelerator(config)
    log = (lambda *m: None) if quiet or not accelerator.is_main_process else (lambda *m: print(*m, file=sys.stderr, flush=True))
    device = accelerator.device
    torch.manual_seed(int(config["seed"]))
    ae = load_frozen_autoencoder(config, ae_path, device)
    model = build_refiner(config)
    ema = ema_model(model, r["ema_decay"], device)
    opt = torch.optim.Adam(model.parameters(), lr=float(r["lr"]))
    schedule = lr_schedule(opt, r["lr_schedule"], int(r["steps"]))
    model, opt = accelerator.prepare(model, opt)
    state = StageState()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if r["lr_schedule"] != "constant":
        # Registered last and only when it changes anything: checkpoints of runs without it keep their layout.
        accelerator.register_for_checkpointing(schedule)
    last = checkpoints.last() if resume else None
    if last is not None:
        accelerator.load_state(str(last))
        log(f"{name}: resumed from {last} (step {state.step})")
    rows = read_rows(run_dir / f"steps_{name}.csv", state.step)
    total, rank, blank = int(r["steps"]), accelerator.process_index, float(d["blank_value"])
    blur_vox = float(r["blur_max_mm"]) / min(float(s) for s in d["spacing_mm"])
    bar = progress(total=total, desc=name, unit="step", quiet=quiet or not accelerator.is_main_process)
    bar.update(state.step)
    model.train()
    sums: dict[str, float] = {}
    started = time.perf_counter()
    while state.step < total:
        x, m, core = (torch.from_numpy(a).to(device) for a in bank.batch(
            "tumor", r["batch_size"], seed=config["seed"], stage="refiner", index=state.step, rank=rank,
            flip=d["flip"], cores=True))
        # The degradations of this step come from (seed, step, rank) alone: a resumed run repeats them.
        generator = torch.Generator().manual_seed(int(config["seed"]) * 1_000_003 + state.step * 101 + rank)
        decoded = degraded_decode(ae, x, m, latent_noise=float(r["latent_noise"]), blur_vox=blur_vox, generator=generator,
                                  contrast_shrink=float(r["contrast_shrink"]))
        with accelerator.autocast():
            refined = refine(model, decoded, x, m, core, blank).float()
        error = (refined - x).abs()
        inside = (error * m).sum() / m.sum().clamp(min=1.0)
        outside = (error * (1.0 - m)).sum() / (1.0 - m).sum().clamp(min=1.0)
        loss = inside + float(r["outside_weight"]) * outside
        accelerator.backward(loss)
        if t["max_grad_norm"]:
            accelerator.clip_grad_norm_(model.parameters(), float(t["max_grad_norm"]))
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(accelerator.unwrap_model(model).parameters())
        for key, value in (("l1_inside", inside), ("l1_outside", outside), ("loss", loss)):
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        state.step += 1
        bar.update(1)
        sums, stopped = after_step(
            accelerator, checkpoints, rows, sums, step=state.step, total=total, train=t, started=started,
            path=run_dir / f"steps_{name}.csv", fields=FIELDS, stop_at_step=stop_at_step,
            preview=lambda: _preview(ae, _ema_refiner(accelerator.unwrap_model(model), ema, config), bank, config,
                                     run_dir, state.step, device, blur_vox, name))
        if stopped:
            bar.close()
            return None
    bar.close()
    out = refiner_done_path(run_dir, member)
    if accelerator.is_main_process:
        unwrapped = _ema_refiner(accelerator.unwrap_model(model), ema, config)
        _preview(ae, unwrapped, bank, config, run_dir, state.step, device, blur_vox, name)
        plot_curves(run_dir / f"curves_{name}.png", rows, ["l1_inside", "l1_outside"], f"border {name.replace('_', ' ')}")
        save_weights(unwrapped, out)
    accelerator.wait_for_everyone()
    log(f"{name}: {state.step} steps done -> {out}")
    return out


def _ema_refiner(model, ema, config):
    """The refiner holding its EMA weights (what is saved and previewed), or itself without EMA."""
    return ema_copy(model, ema, lambda: build_refiner(config))


def _preview(ae, refiner, bank: CropBank, config: dict, run_dir: Path, step: int, device, blur_vox: float,
             name: str = "refiner") -> None:
    x, m, core = (torch.from_numpy(a).to(device) for a in bank.batch("tumor", 1, seed=config["seed"], stage="preview",
                                                                    index=0, flip=False, cores=True))
    was = refiner.training
    refiner.eval()
    generator = torch.Generator().manual_seed(int(config["seed"]))
    decoded = degraded_decode(ae, x, m, latent_noise=float(config["refiner"]["latent_noise"]), blur_vox=blur_vox,
                              generator=generator, contrast_shrink=float(config["refiner"]["contrast_shrink"]))
    with torch.inference_mode():
        refined = refine(refiner, decoded, x, m, core, float(config["data"]["blank_value"])).float()
    refiner.train(was)
    panels = [a[0, 0].cpu().numpy() for a in (x, decoded, refined)]
    save_preview(run_dir / "previews" / f"{name}_step{step:07d}.png", panels,
                 ["real", "decoded, degraded", "refined"], mask=core[0, 0].cpu().numpy())
