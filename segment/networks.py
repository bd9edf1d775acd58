"""MONAI segmentation networks by name, and initialisation from a local pre-trained checkpoint.

Every network takes one CT channel and gives ``out_channels`` logits (default 3: background, organ,
tumour). ``kwargs`` override the defaults below, which are sized for 96³ patches on one GPU;
the CPU demo shrinks them (e.g. ``channels: [8, 16, 32]``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from tumorsyn.errors import ConfigError, ModelError

__all__ = ["build_network", "dynunet_plan", "load_state_dict_file", "init_from_checkpoint", "NETWORK_DEFAULTS"]

NETWORK_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "instance"},
    "segresnet": {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
    "dynunet": {"filters": None, "res_block": True},
    "swinunetr": {"feature_size": 48, "use_checkpoint": False},
}


def dynunet_plan(roi_size: Sequence[int], *, max_levels: int = 5) -> tuple[list, list]:
    """nnU-Net-style kernel sizes and strides: halve each axis while it is >= 8 voxels (at least 3 levels)."""
    sizes = list(roi_size)
    kernels, strides = [[3, 3, 3]], [[1, 1, 1]]
    while len(strides) < max_levels:
        if len(strides) < 3 and all(s < 8 for s in sizes):
            raise ConfigError(f"data.roi_size {list(roi_size)} is too small for dynunet; use at least 16 voxels per axis")
        stride = [2 if s >= 8 else 1 for s in sizes]
        if all(s == 1 for s in stride):
            break
        sizes = [s // st for s, st in zip(sizes, stride)]
        strides.append(stride)
        kernels.append([3, 3, 3])
    return kernels, strides


def build_network(name: str, *, in_channels: int = 1, out_channels: int = 3, roi_size: Sequence[int] = (96, 96, 96),
                  **kwargs) -> nn.Module:
    """A MONAI 3D segmentation network by name.

    Parameters
    ----------
    name : {'unet', 'segresnet', 'dynunet', 'swinunetr'}
    in_channels, out_channels : int
        Input channels (1: CT) and output classes (3: background, organ, tumour).
    roi_size : (int, int, int)
        Training patch in voxels (DynUNet derives its strides from it).
    **kwargs
        Constructor arguments overriding :data:`NETWORK_DEFAULTS`.
    """
    from monai.networks import nets

    key = str(name).lower()
    if key not in NETWORK_DEFAULTS:
        raise ConfigError(f"unknown network {name!r}; choose one of {', '.join(NETWORK_DEFAULTS)}")
    options = {**NETWORK_DEFAULTS[key], **kwargs}
    try:
        if key == "unet":
            return nets.UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
        if key == "segresnet":
            return nets.SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
        if key == "dynunet":
            kernels, strides = dynunet_plan(roi_size)
            options.setdefault("kernel_size", kernels)
            options.setdefault("strides", strides)
            options.setdefault("upsample_kernel_size", options["strides"][1:])
            if options.get("filters") is None:
                options.pop("filters")
            return nets.DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
        try:
            import einops  # noqa: F401 - MONAI's SwinUNETR needs it
        except ImportError:
            raise ConfigError("network swinunetr needs the einops package: pip install einops") from None
        return nets.SwinUNETR(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"network {key}: bad network.kwargs or roi_size ({exc})") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint: ``.safetensors``, or a torch file holding a state dict.

    A folder is read as a saved model (``model.safetensors``). Torch files may wrap the weights
    under ``state_dict``, ``model``, ``net`` or ``network`` (SuPreM, MedicalNet, MONAI bundles).
    """
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.pt")) + sorted(path.glob("*.pth"))
        if not candidates:
            raise ModelError("folder holds no .safetensors/.pt/.pth weights", path=path)
        path = candidates[0]
    if not path.is_file():
        raise ModelError("checkpoint not found", path=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reading failure is a bad checkpoint file
        raise ModelError(f"cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", path=path) from None
    for key in ("state_dict", "model", "net", "network", "model_state_dict"):
        if isinstance(data, Mapping) and key in data and isinstance(data[key], Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError("checkpoint holds no state dict of tensors", path=path)
    return dict(data)


def _strip(name: str) -> str:
    for prefix in ("module.", "model.", "backbone.", "net."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name


def init_from_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Copy every weight of ``path`` whose name (prefixes ``module.``/``model.``/``backbone.`` ignored)
    and shape match into ``model``; return the report.

    Returns
    -------
    dict
        ``matched``, ``shape_mismatch`` (name, checkpoint shape, model shape), ``missing`` (model
        weights left at their initial values), ``unexpected`` (checkpoint weights not used), and counts.

    Raises
    ------
    ModelError
        When no weight matches: the checkpoint belongs to another architecture.
    """
    source = {_strip(k): v for k, v in load_state_dict_file(path).items()}
    target = model.state_dict()
    matched, mismatch, update = [], [], {}
    for name, tensor in target.items():
        key = _strip(name)
        if key in source:
            if tuple(source[key].shape) == tuple(tensor.shape):
                update[name] = source[key].to(tensor.dtype)
                matched.append(name)
            else:
                mismatch.append([name, list(source[key].shape), list(tensor.shape)])
    used = {_strip(n) for n in matched}
    report = {
        "checkpoint": str(path),
        "matched": matched,
        "shape_mismatch": mismatch,
        "missing": [n for n in target if n not in update],
        "unexpected": sorted(k for k in source if k not in used and k not in {_strip(m[0]) for m in mismatch}),
    }
    report["counts"] = {k: len(v) for k, v in report.items() if isinstance(v, list)}
    report["counts"]["model_tensors"] = len(target)
    if not matched:
        raise ModelError(f"no weight of the checkpoint matches the network by name and shape "
                         f"({len(source)} checkpoint tensors, {len(target)} model tensors); is it the same architecture?",
                         path=path)
    model.load_state_dict(update, strict=False)
    return report


def describe_init(report: dict) -> str:
    """One line for the log: how many weights matched."""
    c = report["counts"]
    return (f"init from {report['checkpoint']}: {c['matched']}/{c['model_tensors']} tensors matched, "
            f"{c['shape_mismatch']} shape mismatches, {c['missing']} left at random init, {c['unexpected']} unused")


def save_model(model: nn.Module, folder: str | Path, config: dict) -> Path:
    """Save ``config.json`` + ``model.safetensors`` (diffusers' habit) into ``folder``, atomically per file."""
    from safetensors.torch import save_model as save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.safetensors.tmp"
    save_safetensors(model, str(tmp))  # handles weights shared between modules (DynUNet)
    tmp.replace(folder / "model.safetensors")
    tmp_json = folder / ".config.json.tmp"
    tmp_json.write_text(json.dumps(config, indent=2, sort_keys=True))
    tmp_json.replace(folder / "config.json")
    return folder
