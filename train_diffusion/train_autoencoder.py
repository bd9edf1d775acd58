"""Stage 1: the autoencoder (MONAI AutoencoderKL or VQVAE): L1 + KL or VQ + patch adversarial (+ optional perceptual) loss.

Writes ``<run>/autoencoder/``: ``checkpoints/`` (resumable), ``autoencoder.safetensors`` and
``network.json`` when done, and ``<run>/steps_autoencoder.csv``, ``curves_autoencoder.png``,
``previews/autoencoder_step<N>.png`` (input | reconstruction).
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from tumorsyn.errors import ConfigError
from tumorsyn.generators.diffusion.sampler import decode, encode

from train_diffusion.data import CropBank
from train_diffusion.models import autoencoder_spec, build_autoencoder, build_discriminator
from train_diffusion.runlog import (Checkpoints, StageState, after_step, plot_curves, read_rows,
                                    save_preview, save_weights)
from train_diffusion.runtime import make_accelerator

__all__ = ["train_autoencoder", "kl_loss", "FIELDS"]

FIELDS = ["step", "recon_l1", "kl", "vq", "gen_adv", "disc", "perceptual", "loss", "seconds"]


def kl_loss(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mu, sigma^2) from N(0, 1), summed over latent voxels, mean over the batch."""
    kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1.0)
    return kl.flatten(1).sum(1).mean()


def _perceptual(config: dict):
    """MONAI's perceptual loss; its network weights must already be cached (no download at run time)."""
    from monai.losses import PerceptualLoss

    try:
        return PerceptualLoss(spatial_dims=3, network_type="squeeze", is_fake_3d=True, fake_3d_ratio=0.25)
    except Exception as exc:  # torch.hub raises many kinds when offline
        raise ConfigError(f"autoencoder.perceptual_weight > 0 needs the perceptual network's weights in the torch hub "
                          f"cache, which could not be loaded ({type(exc).__name__}); set autoencoder.perceptual_weight=0") from None


def done_path(run_dir: Path) -> Path:
    return Path(run_dir) / "autoencoder" / "autoencoder.safetensors"


def train_autoencoder(config: dict, bank: CropBank, *, resume: bool = True, quiet: bool = False,
                      stop_at_step: int | None = None) -> Path | None:
    """Train stage 1; return the weights file when all steps are done (None when stopped early)."""
    from monai.losses import PatchAdversarialLoss

    from tumorsyn.cli.common import progress

    a, t = config["autoencoder"], config["train"]
    run_dir = Path(config["output_dir"])
    stage_dir = run_dir / "autoencoder"
    checkpoints = Checkpoints(stage_dir / "checkpoints", keep=t["keep_checkpoints"])
    accelerator = make_accelerator(config)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    log = (lambda *m: None) if quiet or not accelerator.is_main_process else (lambda *m: print(*m, file=sys.stderr, flush=True))
    torch.manual_seed(int(config["seed"]))
    model = build_autoencoder(config)
    use_adv = float(a["adv_weight"]) > 0
    disc = build_discriminator(config) if use_adv else None
    perceptual = _perceptual(config) if float(a["perceptual_weight"]) > 0 else None
    opt_g = torch.optim.Adam(model.parameters(), lr=float(a["lr"]))
    state = StageState()
    if use_adv:
        opt_d = torch.optim.Adam(disc.parameters(), lr=float(a["lr"]))
        model, disc, opt_g, opt_d = accelerator.prepare(model, disc, opt_g, opt_d)
    else:
        model, opt_g = accelerator.prepare(model, opt_g)
    if perceptual is not None:
        perceptual = perceptual.to(accelerator.device)
    accelerator.register_for_checkpointing(state)
    last = checkpoints.last() if resume else None
    if last is not None:
        accelerator.load_state(str(last))
        log(f"autoencoder: resumed from {last} (step {state.step})")
    adv_loss = PatchAdversarialLoss(criterion="least_squares")
    rows = read_rows(run_dir / "steps_autoencoder.csv", state.step)
    total, accum, device = int(a["steps"]), int(t["grad_accum"]), accelerator.device
    rank = accelerator.process_index
    bar = progress(total=total, desc="autoencoder", unit="step", quiet=quiet or not accelerator.is_main_process)
    bar.update(state.step)
    model.train()
    sums: dict[str, float] = {}
    started = time.perf_counter()
    while state.step < total:
        step = state.step
        adv_on = use_adv and step >= int(a["adv_start_step"])
        for j in range(accum):
            micro = step * accum + j
            x, _ = bank.batch("mixed", a["batch_size"], seed=config["seed"], stage="autoencoder", index=micro, rank=rank,
                              flip=config["data"]["flip"], healthy_fraction=a["healthy_fraction"])
            x = torch.from_numpy(x).to(device)
            sync = nullcontext() if j == accum - 1 else accelerator.no_sync(model)
            with sync, accelerator.autocast():
                if a["kind"] == "vq":
                    recon, q_loss = model(x)
                    recon = recon.float()
                    parts = {"recon_l1": torch.nn.functional.l1_loss(recon, x), "vq": q_loss.float().mean()}
                    loss = parts["recon_l1"] + float(a["vq_weight"]) * parts["vq"]
                else:
                    recon, z_mu, z_sigma = model(x)
                    recon = recon.float()
                    parts = {"recon_l1": torch.nn.functional.l1_loss(recon, x), "kl": kl_loss(z_mu.float(), z_sigma.float())}
                    loss = parts["recon_l1"] + float(a["kl_weight"]) * parts["kl"]
                if perceptual is not None:
                    parts["perceptual"] = perceptual(recon, x)
                    loss = loss + float(a["perceptual_weight"]) * parts["perceptual"]
                if adv_on:
                    parts["gen_adv"] = adv_loss(disc(recon)[-1], target_is_real=True, for_discriminator=False)
                    loss = loss + float(a["adv_weight"]) * parts["gen_adv"]
            accelerator.backward(loss / accum)
            if adv_on:
                with (nullcontext() if j == accum - 1 else accelerator.no_sync(disc)), accelerator.autocast():
                    d_loss = 0.5 * (adv_loss(disc(recon.detach())[-1], target_is_real=False, for_discriminator=True)
                                    + adv_loss(disc(x)[-1], target_is_real=True, for_discriminator=True))
                accelerator.backward(d_loss / accum)
                parts["disc"] = d_loss
            parts["loss"] = loss
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / accum
        if t["max_grad_norm"]:
            accelerator.clip_grad_norm_(model.parameters(), float(t["max_grad_norm"]))
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        if adv_on:
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        state.step += 1
        bar.update(1)
        sums, stopped = after_step(accelerator, checkpoints, rows, sums, step=state.step, total=total, train=t,
                                   started=started, path=run_dir / "steps_autoencoder.csv", fields=FIELDS, stop_at_step=stop_at_step,
                                   preview=lambda: _preview(accelerator.unwrap_model(model), bank, config, run_dir, state.step, device))
        if stopped:
            bar.close()
            return None
    bar.close()
    out = done_path(run_dir)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        _preview(unwrapped, bank, config, run_dir, state.step, device)
        plot_curves(run_dir / "curves_autoencoder.png", rows, ["recon_l1", "gen_adv", "disc"], "autoencoder")
        (stage_dir / "network.json").write_text(json.dumps(autoencoder_spec(config), indent=2))
        save_weights(unwrapped, out)
    accelerator.wait_for_everyone()
    log(f"autoencoder: {state.step} steps done -> {out}")
    return out


def _preview(model, bank: CropBank, config: dict, run_dir: Path, step: int, device) -> None:
    x, m = bank.batch("tumor", 1, seed=config["seed"], stage="preview", index=0, flip=False)
    was = model.training
    model.eval()
    with torch.inference_mode():
        recon = decode(model, encode(model, torch.from_numpy(x).to(device))).float().cpu().numpy()
    model.train(was)
    save_preview(run_dir / "previews" / f"autoencoder_step{step:07d}.png", [x[0, 0], recon[0, 0]],
                 ["input", "reconstruction"], mask=m[0, 0])
