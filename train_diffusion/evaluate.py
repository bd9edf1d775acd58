"""Held-out figures of a trained model: autoencoder error and inpainted tumour statistics.

``tumorsyn train-diffusion CONFIG --evaluate`` reads the tumours of ``data.holdout_sources`` (never
trained on) the way training reads its crops, and measures on each centred crop:

- **reconstruction**: mean absolute HU error of decode(encode(crop)) inside the tumour (undilated
  mask) and outside it, both within the HU window (values beyond it are clipped by the crop);
- **inpainting**: the tumour region blanked and sampled ``samples`` times; mean, median and
  standard deviation of HU inside the tumour, the median of a rim 2-5 mm outside the generated
  region, and the contrast (tumour median - rim median), for the real crop and each sample. A model that learnt tumours gives a tumour-to-rim contrast of the
  real crops' sign and size; an untrained one gives noise around the window's middle.
- **descriptors**: the realism descriptors of ``tumorsyn realism`` (:data:`train_diffusion.figures.FIGURES`:
  contrast in units of the host's noise, HU spread inside, edge sharpness; the edge gradient beside
  them) of each real held-out tumour and each sample, both read on the same crop grid with the same
  tumour mask, the crop's organ and other lesions: the real median and interquartile range, the
  generated median, and whether it lies inside that range. ``working`` is true when every figure of
  ``FIGURES`` does: the issue-16 test of a model that makes tumours. ``working_share`` says how firm
  that verdict is: the share of bootstrap resamples (held-out tumours, and crops with all their
  samples) in which every figure is inside.

Writes ``heldout.json`` and ``heldout.png`` (rows: crops; columns: real | blanked | reconstruction |
samples) to the output folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from tumorsyn.errors import ConfigError
from tumorsyn.generators.diffusion.sampler import blank_crop, decode, encode, hu_to_unit, inpaint, unit_to_hu

from train_diffusion.data import CropBank, load_holdout, load_training_tumours
from train_diffusion.figures import crop_descriptors, figures_against, figures_line

__all__ = ["EVALUATION_FOLDERS", "masked_mae", "rim_mask", "reconstruct", "evaluate_bank", "evaluate_model",
           "summary_line"]



def masked_mae(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean absolute difference of ``a`` and ``b`` where ``mask`` is set (None when it is empty)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    return float(np.abs(np.asarray(a, np.float64)[mask] - np.asarray(b, np.float64)[mask]).mean())


def rim_mask(region: np.ndarray, spacing_mm, *, inner_mm: float = 2.0, outer_mm: float = 5.0) -> np.ndarray:
    """Voxels ``inner_mm`` to ``outer_mm`` (mm) outside ``region``: the tissue a tumour is compared with."""
    region = np.asarray(region, bool)
    distance = ndimage.distance_transform_edt(~region, sampling=[float(s) for s in spacing_mm])
    return (distance >= float(inner_mm)) & (distance <= float(outer_mm))


def reconstruct(model, images: np.ndarray, *, batch_size: int = 4) -> np.ndarray:
    """decode(encode(x)) of crops (N, X, Y, Z) in [-1, 1] through the model's autoencoder (a mixture's crop k
    through member k mod K: each autoencoder judged on its share of the crops)."""
    import torch

    if getattr(model, "members", ()):
        out = np.empty_like(np.asarray(images, np.float32))
        for k, member in enumerate(model.members):
            idx = list(range(k, len(images), len(model.members)))
            if idx:
                out[idx] = reconstruct(member, images[idx], batch_size=batch_size)
        return out
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size, None])).to(model.device)
            out.append(decode(model.autoencoder, encode(model.autoencoder, x))[:, 0].float().clamp(-1, 1).cpu().numpy())
    return np.concatenate(out)


def _stats(hu: np.ndarray, core: np.ndarray, rim: np.ndarray) -> dict:
    # Medians: a rim that touches fat, air or a vessel would pull a mean far from the organ's value.
    inside, around = hu[core], hu[rim]
    return {"tumour_mean_hu": round(float(inside.mean()), 1), "tumour_median_hu": round(float(np.median(inside)), 1),
            "tumour_std_hu": round(float(inside.std()), 1), "rim_median_hu": round(float(np.median(around)), 1),
            "contrast_hu": round(float(np.median(inside) - np.median(around)), 1)}


def _written(real_hu, masks, generated, windows, bank: CropBank, spacing, grain: str) -> list[list[np.ndarray]]:
    """Each sample as the generator writes it (HU): the model's values inside the region it filled, the real crop
    outside; with ``grain="host"`` or ``"noise"`` the model's content carries the grain of a tumour-free crop of
    the same scan (:func:`tumorsyn.generators.diffusion.grain.grained`; never the real tumour's own voxels)."""
    from tumorsyn.generators.diffusion.grain import grained

    sources, source_windows = bank.centred_grain()
    out = []
    for k in range(len(real_hu)):
        region = masks[k] > 0.5
        row = []
        for s, g in enumerate(generated[k]):
            hu = unit_to_hu(g, windows[k])
            if grain != "model" and len(sources):
                j = (k * len(generated[k]) + s) % len(sources)
                hu = grained(grain, hu, unit_to_hu(sources[j], source_windows[j]), spacing)
            row.append(np.where(region, hu, real_hu[k]).astype(np.float32))
        out.append(row)
    return out


def evaluate_bank(model, bank: CropBank, *, samples: int = 4, steps: int | None = None, seed: int = 0,
                  preview: str | Path | None = None, grain: str | None = None) -> dict:
    """The held-out figures of ``model`` on the tumour crops of ``bank`` (see the module docstring).

    Parameters
    ----------
    model : DiffusionModel
        A loaded model folder; its spacing, crop size and HU window must be the bank's.
    bank : CropBank
        Held-out tumour crops (:func:`train_diffusion.data.load_holdout`).
    samples : int
        Inpainted samples per crop (seeds ``seed * 1000 + k``); 0 measures the autoencoder only.
    steps : int, optional
        Sampling steps (default: the model's).
    preview : path, optional
        Where to write the PNG of mid-slices.
    grain : {'host', 'model', 'noise'}, optional
        The generator's ``grain`` option: the samples are measured as the generator would write them
        (see :func:`_written`); default: the generator's default for this model.

    Returns
    -------
    dict
        ``reconstruction`` (pooled and per-crop MAE in HU inside and outside tumours), ``inpainting``
        (per crop: real and sampled tumour statistics in HU) and ``summary``.
    """
    from tumorsyn.generators.diffusion.grain import default_grain

    grain = grain or default_grain(model.config)
    window = model.hu_window
    images, masks, cores = bank.centred()
    # Each crop back to HU with the window it was mapped with (its own host's, for a relative model).
    windows = bank.tumor_windows or [window] * len(images)
    spacing = model.spacing_mm
    recon = reconstruct(model, images)
    real_hu = np.stack([unit_to_hu(im, w) for im, w in zip(images, windows)])
    recon_hu = np.stack([unit_to_hu(im, w) for im, w in zip(recon, windows)])
    per_crop, inside_err, outside_err = [], [], []
    for k in range(len(images)):
        diff = np.abs(real_hu[k].astype(np.float64) - recon_hu[k])
        inside_err.append(diff[cores[k]])
        outside_err.append(diff[~cores[k]])
        per_crop.append({**bank.tumors[k], "mae_inside_hu": round(float(diff[cores[k]].mean()), 2),
                         "mae_outside_hu": round(float(diff[~cores[k]].mean()), 2)})
    result = {
        "crops": len(images), "spacing_mm": list(spacing), "crop_size": list(images.shape[1:]), "hu_window": list(window),
        "intensity": getattr(model, "intensity", "absolute"),
        "reconstruction": {"mae_inside_hu": round(float(np.concatenate(inside_err).mean()), 2),
                           "mae_outside_hu": round(float(np.concatenate(outside_err).mean()), 2),
                           "voxels_inside": int(sum(len(e) for e in inside_err)), "per_crop": per_crop},
    }
    generated = []
    if samples > 0:
        n = len(images)
        seeds = [int(seed) * 1000 + s for _ in range(n) for s in range(samples)]
        # A mixture's members take the samples in turn, so each draws its share of every figure (the seeds
        # repeat from crop to crop, and would give one member the same samples of every crop).
        members = len(getattr(model, "members", ()))
        picks = [i % members for i in range(len(seeds))] if members else None
        generated = inpaint(model, np.repeat(images, samples, axis=0), np.repeat(masks, samples, axis=0), steps=steps,
                            seeds=seeds, batch_size=4, cores=np.repeat(cores, samples, axis=0),
                            picks=picks).reshape(n, samples, *images.shape[1:])
        sample_hu = _written(real_hu, masks, generated, windows, bank, spacing, grain)
        rows = []
        for k in range(n):
            rim = rim_mask(masks[k] > 0.5, spacing)
            real = _stats(real_hu[k], cores[k], rim)
            sampled = [_stats(hu, cores[k], rim) for hu in sample_hu[k]]
            rows.append({**bank.tumors[k], "real": real, "samples": sampled})
        contrast_real = [r["real"]["contrast_hu"] for r in rows]
        contrast_gen = [s["contrast_hu"] for r in rows for s in r["samples"]]
        result["inpainting"] = {
            "samples_per_crop": int(samples), "grain": grain if bank.grain_images else "model", "steps": int(steps or model.config["sampling"]["steps"]),
            "sampler": model.config["sampling"]["sampler"], "per_crop": rows,
            "contrast_real_mean_hu": round(float(np.mean(contrast_real)), 1),
            "contrast_generated_mean_hu": round(float(np.mean(contrast_gen)), 1),
            "contrast_generated_sd_hu": round(float(np.std(contrast_gen)), 1),
            "tumour_std_real_hu": round(float(np.mean([r["real"]["tumour_std_hu"] for r in rows])), 1),
            "tumour_std_generated_hu": round(float(np.mean([s["tumour_std_hu"] for r in rows for s in r["samples"]])), 1),
        }
        if bank.tumor_organs:
            organs, others = bank.centred_context()
            real_rows = [crop_descriptors(real_hu[k], cores[k], organs[k], others[k], spacing) for k in range(n)]
            generated_rows = [crop_descriptors(hu, cores[k], organs[k], others[k], spacing)
                              for k in range(n) for hu in sample_hu[k]]
            # A crop's samples share its context: they are resampled together.
            result["descriptors"] = {"real": real_rows, "generated": generated_rows,
                                     "figures": figures_against(real_rows, generated_rows,
                                                                generated_groups=[k for k in range(n) for _ in sample_hu[k]])}
    if preview is not None:
        # The samples as written (grain, real crop outside the region), in the crop's own [-1, 1] mapping.
        shown = [[hu_to_unit(hu, windows[k]) for hu in sample_hu[k]] for k in range(len(images))] if samples > 0 else []
        _preview(Path(preview), images, masks, recon, shown, float(model.config["data"].get("blank_value", 0.0)))
    return result


def _preview(path: Path, images, masks, recon, generated, blank: float) -> Path:
    """One row per crop: real | blanked | reconstruction | samples (axial slice through the tumour), all labelled."""
    from train_diffusion.runlog import preview_tiles, save_sheet

    samples = len(generated[0]) if len(generated) else 0
    columns = ["real", "blanked", "reconstruction", *(f"sample {s + 1}" for s in range(samples))]
    rows = []
    for k in range(len(images)):
        panels = [images[k], blank_crop(images[k], masks[k], blank), recon[k], *(list(generated[k]) if samples else [])]
        rows.append(preview_tiles(panels, mask=masks[k] > 0.5, scale=3))
    return save_sheet(path, rows, columns, [f"crop {k + 1}" for k in range(len(images))])


EVALUATION_FOLDERS = {"heldout": "heldout", "training": "training_fit"}


def evaluate_model(config: dict, *, model_dir: str | Path | None = None, out_dir: str | Path | None = None,
                   samples: int = 4, steps: int | None = None, device: str = "auto", grain: str | None = None,
                   on: str = "heldout", log=lambda *a: None) -> dict:
    """Evaluate a model folder on the config's held-out tumours; write ``heldout.json`` + ``heldout.png``.

    ``model_dir`` defaults to ``<output_dir>/model`` and ``out_dir`` to ``<output_dir>/heldout``. With
    ``on="training"`` the same figures are read on the tumours of ``data.tumor_sources`` instead (the
    model's own training tumours; default ``out_dir``: ``<output_dir>/training_fit``), and no host is
    written into: what a model learnt, beside what it generalises to.

    Raises
    ------
    ConfigError
        No held-out sources, or crops that differ from the model's (spacing, crop size, HU window).
    ModelError
        A bad model folder.
    """
    from tumorsyn.generators.diffusion.model_folder import load_model

    if on not in EVALUATION_FOLDERS:
        raise ConfigError(f"evaluate on must be one of {', '.join(EVALUATION_FOLDERS)}, got {on!r}")
    run_dir = Path(config["output_dir"])
    model_dir = Path(model_dir) if model_dir else run_dir / "model"
    out_dir = Path(out_dir) if out_dir else run_dir / EVALUATION_FOLDERS[on]
    model = load_model(model_dir, device=device)
    d = config["data"]
    ours = ([float(s) for s in d["spacing_mm"]], [int(n) for n in d["crop_size"]], [float(v) for v in d["hu_window"]])
    theirs = (list(model.spacing_mm), list(model.crop_size), list(model.hu_window))
    if ours != theirs:
        raise ConfigError(f"the config's crops (spacing {ours[0]} mm, size {ours[1]}, window {ours[2]} HU) differ from "
                          f"the model's in {model_dir} ({theirs[0]} mm, {theirs[1]}, {theirs[2]} HU); "
                          "evaluate with the config the model was trained with")
    ours_i = (d["intensity"], [float(v) for v in d["relative_window_sd"]])
    theirs_i = (model.intensity, list(model.relative_window_sd))
    if ours_i[0] != theirs_i[0] or (ours_i[0] == "relative" and ours_i[1] != theirs_i[1]):
        raise ConfigError(f"the config's intensity ({ours_i[0]}, relative_window_sd {ours_i[1]}) differs from the "
                          f"model's in {model_dir} ({theirs_i[0]}, {theirs_i[1]}); "
                          "evaluate with the config the model was trained with (data.intensity: absolute for "
                          "a model folder without data.intensity)")
    bank = load_holdout(config, log=log) if on == "heldout" else load_training_tumours(config, log=log)
    log(f"{'held-out' if on == 'heldout' else 'training'}: {len(bank.tumor_images)} tumour crop(s); "
        f"{samples} sample(s) each")
    result = evaluate_bank(model, bank, samples=samples, steps=steps, seed=int(config["seed"]), grain=grain,
                           preview=out_dir / "heldout.png")
    result["tumours"] = on
    result["model"] = str(model.path)
    result["model_checksum"] = model.checksum
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "heldout.json").write_text(json.dumps(result, indent=2))
    e = config["evaluation"]
    if e["hosts"] and on == "heldout":
        from train_diffusion.host_check import check_hosts

        log(f"hosts: {e['tumours_per_organ']} tumour(s) of {e['size_mm'][0]:g}-{e['size_mm'][1]:g} mm per organ "
            f"({', '.join(e['host_organs'])}) in {len(e['hosts'])} scan(s)")
        # Host tumours are read on their host's own grid, so the reference is read on the held-out scans' own
        # grid too (the crops' trilinear resampling smooths noise, which moves the noise-unit figures).
        from train_diffusion.data import HeldoutReference

        reference = HeldoutReference(config)
        hosts = check_hosts(model_dir, e["hosts"], e["host_organs"], tumours=e["tumours_per_organ"],
                            size_mm=e["size_mm"], seed=int(config["seed"]), steps=steps, device=device, grain=grain,
                            reference=reference.native, reference_on_grid=reference, preview=out_dir / "hosts.png",
                            log=log)
        hosts["reference"] = {"what": "held-out real tumours, described on their own scan's grid",
                              "rows": reference.native}
        hosts["reference_on_grid"] = {"what": "the same tumours averaged onto each host's voxels (partial volume), "
                                              "the reference of each host's figures",
                                      "rows": {"x".join(f"{v:g}" for v in k): rows
                                               for k, rows in reference.on_grid.items()}}
        (out_dir / "hosts.json").write_text(json.dumps(hosts, indent=2))
        result["hosts"] = hosts
    return result


def summary_line(result: dict) -> str:
    """One line of held-out figures (HU)."""
    r = result["reconstruction"]
    which = "training" if result.get("tumours") == "training" else "held-out"
    text = (f"{which} {result['crops']} tumour crop(s): autoencoder MAE {r['mae_inside_hu']:.1f} HU inside tumours, "
            f"{r['mae_outside_hu']:.1f} HU outside")
    if "inpainting" in result:
        i = result["inpainting"]
        text += (f"; tumour-to-rim contrast real {i['contrast_real_mean_hu']:+.1f} HU, generated "
                 f"{i['contrast_generated_mean_hu']:+.1f} +- {i['contrast_generated_sd_hu']:.1f} HU; HU std inside "
                 f"tumours real {i['tumour_std_real_hu']:.1f}, generated {i['tumour_std_generated_hu']:.1f}")
    if "descriptors" in result:
        text += "\n" + figures_line(which, result["descriptors"]["figures"])
    for entry in (result.get("hosts") or {}).get("hosts", []):
        where = (f"{entry['host']} {entry['organ']} ({len(entry['tumours'])} tumours, "
                 f"{entry.get('invisible', 0)} invisible, {len(entry['warnings'])} warnings)")
        if "figures" in entry:
            text += "\n" + figures_line(where, entry["figures"])
    return text
