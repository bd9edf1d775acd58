"""The sampling loop: encode a crop, denoise the tumour region in latent space, decode.

Three pieces kept apart (diffusers' habit): the autoencoder and the UNet come from the model
folder, the scheduler from :mod:`.schedulers`, and this module is the short loop between them::

    z_known = E(x)                      latent of the real crop (the known region)
    c       = E(x with the mask blanked) ; m = mask pooled to the latent grid
    z_T     = noise (one generator per crop: a crop's result does not depend on its batch)
    for t in timesteps:
        z = scheduler.step(UNet([z, c, m], t), t, z)
        z = m * z + (1 - m) * noised(z_known, t_next)     RePaint-style: keep the known region
    x_gen = D(z)

Everything is batched over crops (B, 1, X, Y, Z); on a GPU many tumours are sampled at once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorsyn.generators.diffusion.schedulers import is_flow, sampling_scheduler, training_scheduler

__all__ = ["hu_to_unit", "unit_to_hu", "grow_mask", "blank_crop", "refiner_input", "refine", "latent_mask", "encode", "decode", "inpaint"]


def hu_to_unit(hu: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """HU -> [-1, 1] by the window ``(low, high)`` (clipped), float32."""
    lo, hi = float(window[0]), float(window[1])
    return np.clip((np.asarray(hu, np.float32) - lo) * np.float32(2.0 / (hi - lo)) - 1.0, -1.0, 1.0).astype(np.float32)


def unit_to_hu(x: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """[-1, 1] -> HU by the window ``(low, high)``, float32."""
    lo, hi = float(window[0]), float(window[1])
    return ((np.clip(np.asarray(x, np.float32), -1.0, 1.0) + 1.0) * np.float32(0.5 * (hi - lo)) + lo).astype(np.float32)


def grow_mask(mask: np.ndarray, spacing_mm: Sequence[float], dilate_mm: float) -> np.ndarray:
    """A tumour mask grown as training grows it (``data.mask_dilate_mm``): a box of at least one voxel a side.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The tumour on the model's grid.
    spacing_mm : sequence of 3 float
        The model's voxel size (mm).
    dilate_mm : float
        Growth (mm); 0 leaves the mask as it is.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)

    Notes
    -----
    The model learns to draw a tumour that stops this far inside its mask, so sampling asks it to
    fill the tumour's shape grown the same way: the tumour it draws then fills the shape.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if dilate_mm <= 0:
        return mask
    radius = [max(1, int(round(dilate_mm / s))) for s in spacing_mm]
    return ndimage.binary_dilation(mask, structure=np.ones([2 * r + 1 for r in radius], bool))


def blank_crop(x, mask, blank_value: float):
    """The crop with the tumour region replaced by ``blank_value`` (in [-1, 1] units)."""
    return x * (1.0 - mask) + float(blank_value) * mask


def refiner_input(decoded, x, mask, core, blank_value: float):
    """The border refiner's input (B, 3, X, Y, Z): the decoded crop, the blanked crop (the known host), the exact mask.

    The refiner (:func:`refine`) sees what the latent grid cannot hold: the tumour's outline at full
    resolution (``core``, the undilated shape) and the host's own voxels around it.
    """
    import torch

    return torch.cat([decoded, blank_crop(x, mask, blank_value), core], dim=1)


def refine(refiner, decoded, x, mask, core, blank_value: float):
    """The decoded crop with the refiner's correction added: ``decoded + refiner(refiner_input(...))``.

    The latent is four times coarser than the crop, so the diffusion UNet knows the tumour's outline
    only to a latent voxel (5 mm at 1.25 mm) and the decoder draws a soft border; the refiner, trained
    after the autoencoder (``train_diffusion.train_refiner``), redraws it at the exact mask.
    """
    return decoded + refiner(refiner_input(decoded, x, mask, core, blank_value))


def latent_mask(mask, latent_shape):
    """Mask (B, 1, X, Y, Z) on the latent grid: a latent voxel is unknown if any voxel under it is."""
    import torch.nn.functional as F

    return F.adaptive_max_pool3d(mask, tuple(int(n) for n in latent_shape))


def _is_vq(autoencoder) -> bool:
    return hasattr(autoencoder, "quantize")


def encode(autoencoder, x):
    """Deterministic latent of ``x`` (B, 1, X, Y, Z): the KL posterior mean, or the VQ codebook vectors."""
    if _is_vq(autoencoder):
        return autoencoder.encode_stage_2_inputs(x)
    z_mu, _ = autoencoder.encode(x)
    return z_mu


def decode(autoencoder, z):
    """Image of a latent (a VQ latent is snapped to its codebook first, as in training)."""
    if _is_vq(autoencoder):
        return autoencoder.decode_stage_2_outputs(z)
    return autoencoder.decode(z)


def _noised(z_known, noise, level: float, flow: bool, alphas_cumprod, t):
    """The known latent at the noise level the sampler reaches after a step."""
    if flow:
        return (1.0 - level) * z_known + level * noise
    a = float(alphas_cumprod[int(t)])
    return a ** 0.5 * z_known + (1.0 - a) ** 0.5 * noise


def inpaint(model, images, masks, *, steps: int | None = None, seeds: Sequence[int], sampler: str | None = None,
            batch_size: int | None = None, cores=None, picks: Sequence[int] | None = None):
    """Sample the masked region of each crop; return the decoded crops in [-1, 1].

    Parameters
    ----------
    model : DiffusionModel
        From :func:`tumorsyn.generators.diffusion.model_folder.load_model` (or the networks of a
        training run wrapped the same way). A mixture samples each crop with one member.
    images : ndarray of float32, shape (B, X, Y, Z)
        Crops at the model's spacing, in [-1, 1] (see :func:`hu_to_unit`).
    masks : ndarray of bool or float, shape (B, X, Y, Z)
        Region to generate (1) in each crop.
    steps : int, optional
        Sampling steps (default: the model's ``sampling.steps``).
    seeds : sequence of int
        One seed per crop: its starting noise. Same seed, same device: same output.
    sampler : str, optional
        Override the model's sampler (ddim, dpm_solver, unipc; euler for rectified flow).
    batch_size : int, optional
        Crops per network call (default: all at once).
    cores : ndarray of bool, shape (B, X, Y, Z), optional
        The tumours' exact (ungrown) shapes, for a model with a border refiner (default: ``masks``).
    picks : sequence of int, optional
        A mixture's member for each crop (default: the one its seed names,
        :func:`~tumorsyn.generators.diffusion.model_folder.member_index`); ignored by a single model.

    Returns
    -------
    ndarray of float32, shape (B, X, Y, Z)
    """
    images = np.asarray(images, np.float32)
    masks = np.asarray(masks, np.float32)
    if images.shape != masks.shape or images.ndim != 4:
        raise ValueError(f"images and masks must share a (B, X, Y, Z) shape, got {images.shape} and {masks.shape}")
    if len(seeds) != len(images):
        raise ValueError(f"one seed per crop: {len(seeds)} seeds for {len(images)} crops")
    cores = masks if cores is None else np.asarray(cores, np.float32)
    if cores.shape != masks.shape:
        raise ValueError(f"cores must have the masks' shape {masks.shape}, got {cores.shape}")
    cfg = model.config
    steps = int(steps or cfg["sampling"]["steps"])
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if getattr(model, "members", ()):
        return _inpaint_mixture(model, images, masks, cores, steps=steps, seeds=seeds, sampler=sampler,
                                batch_size=batch_size, picks=picks)
    out = []
    size = int(batch_size or len(images))
    for start in range(0, len(images), size):
        part = slice(start, start + size)
        out.append(_inpaint_batch(model, images[part], masks[part], cores[part], steps=steps,
                                  seeds=list(seeds[part]), sampler=sampler or cfg["sampling"]["sampler"]))
    return np.concatenate(out, axis=0) if out else np.zeros_like(images)


def _inpaint_mixture(model, images, masks, cores, *, steps, seeds, sampler, batch_size, picks):
    """Each crop sampled by its member of the mixture (a batch per member), returned in the input order."""
    from tumorsyn.generators.diffusion.model_folder import member_index

    count = len(model.members)
    picks = [member_index(s, count) for s in seeds] if picks is None else [int(k) for k in picks]
    if len(picks) != len(images) or any(not 0 <= k < count for k in picks):
        raise ValueError(f"picks must name one of the {count} members for each of the {len(images)} crops")
    out = np.empty_like(images)
    for k, member in enumerate(model.members):
        idx = [i for i, pick in enumerate(picks) if pick == k]
        if idx:
            out[idx] = inpaint(member, images[idx], masks[idx], steps=steps, seeds=[seeds[i] for i in idx],
                               sampler=sampler, batch_size=batch_size, cores=cores[idx])
    return out


def _inpaint_batch(model, images, masks, cores, *, steps, seeds, sampler):
    import torch

    cfg, device = model.config, model.device
    scale = float(cfg["autoencoder"]["scale_factor"])
    blank = float(cfg["data"].get("blank_value", 0.0))
    flow = is_flow(cfg["sampling"]["prediction_type"])
    train_sched = training_scheduler(**_schedule_args(model.scheduler_config, cfg["sampling"]["prediction_type"]))
    sched = sampling_scheduler(sampler, model.scheduler_config)
    with torch.inference_mode():
        x = torch.from_numpy(images[:, None]).to(device)
        m = torch.from_numpy(masks[:, None]).to(device)
        # One encoder call for the crop and its blanked twin (a batch of 2B is cheaper than two of B).
        both = encode(model.autoencoder, torch.cat([x, blank_crop(x, m, blank)], dim=0)) * scale
        z_known, cond = both[:len(x)], both[len(x):]
        m_lat = latent_mask(m, z_known.shape[2:])
        # Noise drawn on the CPU from each crop's own seed: independent of batch and device.
        noise = torch.stack([torch.randn(tuple(z_known.shape[1:]), generator=torch.Generator().manual_seed(int(s) % 2**63))
                             for s in seeds]).to(device)
        sched.set_timesteps(steps, device=device)
        timesteps = sched.timesteps
        z = noise * float(getattr(sched, "init_noise_sigma", 1.0))
        z = m_lat * z + (1.0 - m_lat) * (_noised(z_known, noise, float(sched.sigmas[0]), True, None, None) if flow
                                         else _noised(z_known, noise, 0.0, False, train_sched.alphas_cumprod, timesteps[0]))
        for i, t in enumerate(timesteps):
            scaled = sched.scale_model_input(z, t) if hasattr(sched, "scale_model_input") else z
            net_in = torch.cat([scaled, cond, m_lat], dim=1)
            t_batch = t.reshape(1).expand(len(z)).to(device)
            pred = model.unet(net_in, timesteps=t_batch if flow else t_batch.long())
            z = sched.step(pred, t, z).prev_sample
            if i + 1 < len(timesteps):
                known = (_noised(z_known, noise, float(sched.sigmas[i + 1]), True, None, None) if flow
                         else _noised(z_known, noise, 0.0, False, train_sched.alphas_cumprod, timesteps[i + 1]))
            else:
                known = z_known
            z = m_lat * z + (1.0 - m_lat) * known
        decoded = decode(model.autoencoder, z / scale)
        if getattr(model, "refiner", None) is not None:
            decoded = refine(model.refiner, decoded, x, m, torch.from_numpy(cores[:, None]).to(device), blank)
    return decoded[:, 0].float().clamp(-1.0, 1.0).cpu().numpy()


def _schedule_args(scheduler_config: dict, prediction_type: str) -> dict:
    args = {"prediction_type": prediction_type, "num_train_timesteps": scheduler_config.get("num_train_timesteps", 1000)}
    if not is_flow(prediction_type):
        for key in ("beta_schedule", "beta_start", "beta_end"):
            if key in scheduler_config:
                args[key] = scheduler_config[key]
    return args
