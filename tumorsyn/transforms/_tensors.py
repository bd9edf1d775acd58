"""Between MONAI items and the core's numpy arrays: keys, spacing, channel-first views, metadata.

The core works on (X, Y, Z) numpy arrays in HU with a spacing in mm; MONAI items hold channel-first
tensors (``MetaTensor`` with an affine) or arrays. These functions convert one way and back,
keeping each input's type, dtype, device and shape.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Hashable, Iterable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.utils import convert_to_dst_type

from tumorsyn.errors import ConfigError

__all__ = ["parse_keys", "parse_spacing", "parse_tumor_label", "item_spacing", "spatial", "like", "with_meta",
           "fingerprint"]


def parse_keys(keys: KeysCollection, name: str) -> tuple[Hashable, Hashable]:
    """``(image_key, label_key)`` from ``keys``; refuses any other number of keys."""
    keys = (keys,) if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable) else tuple(keys)
    if len(keys) != 2:
        raise ConfigError(f"{name} needs keys=(image_key, label_key), got {keys!r}")
    return keys[0], keys[1]


def parse_spacing(spacing_mm) -> tuple[float, float, float] | None:
    """Three positive voxel sizes in mm (``None`` passes: read it from the image later)."""
    if spacing_mm is None:
        return None
    try:
        values = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise ConfigError(f"spacing_mm must be three positive numbers (mm), got {spacing_mm!r}") from None
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"spacing_mm must be three positive numbers (mm), got {spacing_mm!r}")
    return values


def parse_tumor_label(tumor_label) -> int | None:
    """A positive integer label value, or ``None`` (the transform's default rule)."""
    if tumor_label is None:
        return None
    if isinstance(tumor_label, bool) or int(tumor_label) != tumor_label or int(tumor_label) <= 0:
        raise ConfigError(f"tumor_label must be a positive integer label value, got {tumor_label!r}")
    return int(tumor_label)


def item_spacing(data: Mapping, image_key: Hashable, name: str) -> tuple[float, float, float]:
    """Voxel size in mm from the image's affine (MetaTensor, or ``<key>_meta_dict`` affine / pixdim)."""
    image = data[image_key]
    affine = image.affine if isinstance(image, MetaTensor) else None
    meta = data.get(f"{image_key}_meta_dict")
    if affine is None and isinstance(meta, Mapping):
        if meta.get("affine") is not None:
            affine = meta["affine"]
        elif meta.get("pixdim") is not None:
            return parse_spacing(np.asarray(meta["pixdim"], dtype=float).ravel()[1:4])
    if affine is None:
        raise ConfigError(f"{name}: data[{image_key!r}] carries no affine to read its spacing "
                          "from; load it as a MetaTensor (LoadImaged) or give spacing_mm=(x, y, z)")
    affine = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    return parse_spacing(affine_to_spacing(affine.astype(np.float64), r=3))


def spatial(array, key: Hashable, name: str) -> np.ndarray:
    """The (X, Y, Z) numpy view of a channel-first (1, X, Y, Z) array or tensor, or of an (X, Y, Z) one."""
    if isinstance(array, torch.Tensor):
        values = array.detach().cpu().numpy()
    elif isinstance(array, np.ndarray):
        values = array
    else:
        raise ConfigError(f"{name}: data[{key!r}] must be a numpy array or torch tensor, got {type(array).__name__}")
    if values.ndim == 4 and values.shape[0] == 1:
        return values[0]
    if values.ndim == 3:
        return values
    raise ConfigError(f"{name}: data[{key!r}] has shape {tuple(values.shape)}; expected channel-first (1, X, Y, Z) "
                      "as after EnsureChannelFirstd, with one channel")


def like(values: np.ndarray, original) -> Any:
    """``values`` (shape of ``original``'s spatial part) in the type, dtype, device and shape of ``original``."""
    if isinstance(original, torch.Tensor):
        values = values.reshape(tuple(original.shape))
        return convert_to_dst_type(values, dst=original)[0]
    return values.reshape(original.shape)


def with_meta(tensor, updates: dict):
    """``tensor`` with ``updates`` in its ``.meta``, without touching the caller's MetaTensor."""
    if not isinstance(tensor, MetaTensor):
        return tensor
    # A new MetaTensor over the same storage: the input item's meta dict stays as it was.
    out = MetaTensor(tensor.as_tensor(), meta=dict(tensor.meta), applied_operations=list(tensor.applied_operations))
    out.meta.update(updates)
    return out


def fingerprint(values: np.ndarray, samples_per_axis: int = 16) -> str:
    """A cheap digest of a volume: a regular grid of about ``samples_per_axis``**3 voxels (not every voxel)."""
    steps = tuple(max(1, n // samples_per_axis) for n in values.shape)
    sample = np.ascontiguousarray(values[tuple(slice(None, None, k) for k in steps)])
    return hashlib.blake2b(sample.tobytes(), digest_size=16).hexdigest() + str(values.dtype)
