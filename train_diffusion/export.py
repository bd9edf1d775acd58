"""The model folder: ``config.json`` + ``autoencoder.safetensors`` + ``unet.safetensors`` + ``scheduler_config.json``
(+ ``refiner.safetensors`` when the run trained a border refiner), or a mixture of such folders (``models: K``).

Written under a temporary name and renamed, so a reader never sees half a model.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from tumorsyn.generators.diffusion.model_folder import (FORMAT, FORMAT_VERSION, OPTIONAL_WEIGHT_FILES, SCHEDULER_FILE,
                                                       SHARED_SECTIONS, WEIGHT_FILES, read_model_config, refiner_files,
                                                       unshared_section)

from train_diffusion.models import autoencoder_spec, refiner_spec, unet_spec

__all__ = ["model_config", "export_model", "export_mixture", "export_untrained", "pooled_organs", "MEMBER_FOLDER"]

# A mixture's members inside its model folder (and its members' run folders inside the run folder): member_0, ...
MEMBER_FOLDER = "member_{}"


def pooled_organs(config: dict) -> list[str]:
    """Organs the model serves: the config's organ, or every source's organ for a pooled model."""
    if config["organ"] != "pooled":
        return [config["organ"]]
    return sorted({s["organ"] for s in config["data"]["tumor_sources"]})


def model_config(config: dict, *, scale_factor: float, summary: dict | None = None, refiners: int = 0) -> dict:
    """``config.json`` of a model folder (also used in memory for previews during training).

    ``refiners``: how many border refiners the folder holds (0 = none; more than 1 = an ensemble whose
    corrections are averaged, ``refiner_1.safetensors`` ... beside ``refiner.safetensors``).
    """
    d, l = config["data"], config["ldm"]
    extra = {"refiner": {**refiner_spec(config), "weights": OPTIONAL_WEIGHT_FILES["refiner"]}} if refiners else {}
    if refiners > 1:
        extra["refiner"]["members"] = int(refiners)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "organs": pooled_organs(config),
        "autoencoder": {**autoencoder_spec(config), "scale_factor": float(scale_factor), "weights": WEIGHT_FILES["autoencoder"]},
        "unet": {**unet_spec(config), "weights": WEIGHT_FILES["unet"]},
        "sampling": {"sampler": l["sampler"], "steps": int(l["sampling_steps"]), "prediction_type": l["prediction_type"],
                     "known_region": "repaint-latent"},
        "data": {"spacing_mm": [float(s) for s in d["spacing_mm"]], "crop_size": [int(n) for n in d["crop_size"]],
                 "intensity": d["intensity"], "relative_window_sd": [float(v) for v in d["relative_window_sd"]],
                 "hu_window": [float(v) for v in d["hu_window"]], "blank_value": float(d["blank_value"]),
                 "min_diameter_mm": float(d["min_diameter_mm"]),
                 "max_diameter_mm": None if d["max_diameter_mm"] is None else float(d["max_diameter_mm"]),
                 "mask_dilate_mm": float(d["mask_dilate_mm"])},
        "training": summary or {},
        **extra,
    }


def _state(module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def export_model(folder: str | Path, config: dict, *, autoencoder, unet, noise_scheduler, scale_factor: float,
                 summary: dict, refiners=()) -> Path:
    """Write the model folder ``folder`` (replacing an older one only once the new one is complete).

    ``refiners``: the trained border refiners (none, one, or an ensemble's members in order).
    """
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(_state(autoencoder), str(tmp / WEIGHT_FILES["autoencoder"]))
        save_file(_state(unet), str(tmp / WEIGHT_FILES["unet"]))
        for refiner, name in zip(refiners, refiner_files(len(refiners))):
            save_file(_state(refiner), str(tmp / name))
        noise_scheduler.save_config(str(tmp))  # diffusers' own format, with _class_name
        if not (tmp / SCHEDULER_FILE).is_file():
            raise RuntimeError(f"diffusers wrote no {SCHEDULER_FILE}")
        (tmp / "config.json").write_text(json.dumps(model_config(config, scale_factor=scale_factor, summary=summary,
                                                                 refiners=len(refiners)), indent=2))

    return _write_folder(Path(folder), write)


def export_mixture(folder: str | Path, members, *, summary: dict) -> Path:
    """Write the mixture folder ``folder``: a copy of each member model folder (``member_0/`` ...) and a
    config.json naming them, with their shared sections (they must agree) and the run's ``summary``."""
    members = [read_model_config(m) for m in members]
    if len(members) < 2:
        raise ValueError("a mixture needs at least two member models")
    first = members[0][1]
    for path, config in members[1:]:
        key = unshared_section(config, first)
        if key is not None:
            raise ValueError(f"{path} differs from {members[0][0]} in {key!r}: a mixture's members share "
                             f"{', '.join(SHARED_SECTIONS)}")
    names = [MEMBER_FOLDER.format(k) for k in range(len(members))]

    def write(tmp: Path) -> None:
        for (path, _), name in zip(members, names):
            shutil.copytree(path, tmp / name)
        shared = {key: first[key] for key in SHARED_SECTIONS if key in first}
        (tmp / "config.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                     "mixture": {"members": names}, **shared,
                                                     "training": summary}, indent=2))

    return _write_folder(Path(folder), write)


def _write_folder(folder: Path, write) -> Path:
    """Run ``write(tmp)`` in a new temporary folder beside ``folder``, then put it in ``folder``'s place (an older
    one is replaced only once the new one is complete; a reader never sees half a model). config.json goes last."""
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        if folder.exists():
            folder.replace(old)
        tmp.replace(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def export_untrained(folder: str | Path, config: dict, *, seed: int = 0) -> Path:
    """A model folder with the config's architecture and random weights (benchmarks, tests of the plumbing).

    Its tumours are noise: use it to time sampling or to test loading, never to make data. The
    training summary says ``"untrained": true``.
    """
    import torch

    from train_diffusion.models import build_autoencoder, build_unet, noise_scheduler

    torch.manual_seed(int(seed))
    return export_model(folder, config, autoencoder=build_autoencoder(config), unet=build_unet(config),
                        noise_scheduler=noise_scheduler(config), scale_factor=1.0,
                        summary={"untrained": True, "seed": int(seed)})
