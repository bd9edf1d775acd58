"""TumorSpec: the complete, JSON-serialisable recipe of one synthetic tumour.

A spec is what :func:`tumorsyn.sample_spec` draws and :func:`tumorsyn.synthesize` applies. Every
random choice is in it (including ``seed``, which drives texture and growth noise), so a spec in a
manifest regenerates its tumour exactly.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from tumorsyn.errors import ConfigError, InputError

__all__ = ["TumorSpec", "SPEC_VERSION", "check_scan", "as_specs"]

SPEC_VERSION = 1


def _triple(name: str, value: Any, *, kind=float, positive: bool = False) -> tuple:
    try:
        items = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"spec field {name!r} must be three numbers, got {value!r}") from None
    if len(items) != 3 or not all(math.isfinite(v) for v in items):
        raise ConfigError(f"spec field {name!r} must be three finite numbers, got {value!r}")
    if positive and min(items) <= 0:
        raise ConfigError(f"spec field {name!r} must be positive, got {value!r}")
    return items


@dataclass(frozen=True)
class TumorSpec:
    """Everything needed to write one tumour into one scan, deterministically.

    Attributes
    ----------
    method : str
        Generator name (``"rules"``, ``"ca"``, ``"diffusion"``, or a registered plug-in).
    organ : str
        ``"liver"``, ``"pancreas"`` or ``"kidney"``.
    seed : int
        Seed of the generator's own noise (texture, shape noise, growth).
    center_vox : tuple of float
        Tumour centre as a canonical RAS+ voxel index (X, Y, Z), fractional.
    size_mm : float
        Requested equivalent-sphere diameter, in millimetres.
    spacing_mm : tuple of float
        Voxel size (X, Y, Z) in mm of the grid the spec was drawn for.
    grid_shape : tuple of int
        Canonical shape (X, Y, Z) of that grid.
    organ_mean_hu, organ_std_hu : float
        Robust mean and standard deviation of the organ's HU in the host scan; intensities in
        ``params`` are relative to them.
    exophytic : bool
        Whether the tumour may grow out of the organ (kidney only).
    params : dict
        Generator-specific parameters (JSON values only).
    version : int
        Spec format version.
    """

    method: str
    organ: str
    seed: int
    center_vox: tuple[float, float, float]
    size_mm: float
    spacing_mm: tuple[float, float, float]
    grid_shape: tuple[int, int, int]
    organ_mean_hu: float
    organ_std_hu: float
    exophytic: bool = False
    params: dict = field(default_factory=dict)
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_vox", _triple("center_vox", self.center_vox))
        object.__setattr__(self, "spacing_mm", _triple("spacing_mm", self.spacing_mm, positive=True))
        object.__setattr__(self, "grid_shape", _triple("grid_shape", self.grid_shape, kind=int, positive=True))
        if not isinstance(self.params, dict):
            raise ConfigError(f"spec field 'params' must be an object, got {type(self.params).__name__}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            raise ConfigError(f"spec field 'seed' must be a non-negative integer, got {self.seed!r}")
        if not (math.isfinite(self.size_mm) and self.size_mm > 0):
            raise ConfigError(f"spec field 'size_mm' must be a positive number, got {self.size_mm!r}")
        if self.version != SPEC_VERSION:
            raise ConfigError(f"spec version {self.version} is not supported by this tumorsyn (reads version {SPEC_VERSION})")

    # --- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        data = asdict(self)
        for key in ("center_vox", "spacing_mm", "grid_shape"):
            data[key] = list(data[key])
        return data

    def to_json(self, **kwargs) -> str:
        """JSON text; floats are written with full precision so the spec replays exactly."""
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "TumorSpec":
        """Build a spec from a dict, naming any missing or unknown field."""
        if not isinstance(data, dict):
            raise ConfigError(f"a tumour spec must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown spec field(s) {', '.join(unknown)}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ConfigError(f"spec lacks field(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad tumour spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "TumorSpec":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"tumour spec is not valid JSON ({exc})") from None

    def with_params(self, **changes) -> "TumorSpec":
        """A copy with some top-level fields replaced (``params`` replaced whole)."""
        data = self.to_dict()
        data.update(changes)
        return TumorSpec.from_dict(data)


def as_specs(specs) -> list[TumorSpec]:
    """Specs given as a TumorSpec, a dict, JSON text (one spec or a list), or a sequence of those, in order.

    Raises
    ------
    ConfigError
        Text that is not JSON, a spec that does not parse, or an item of another type.
    """
    if isinstance(specs, str) and specs.lstrip().startswith("["):
        try:
            specs = json.loads(specs)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"tumour specs are not valid JSON ({exc})") from None
    if isinstance(specs, (TumorSpec, dict, str)):
        specs = [specs]
    out = []
    for spec in specs:
        if isinstance(spec, str):
            spec = TumorSpec.from_json(spec)
        elif isinstance(spec, dict):
            spec = TumorSpec.from_dict(spec)
        elif not isinstance(spec, TumorSpec):
            raise ConfigError(f"a tumour spec must be a TumorSpec, dict or JSON text, got {type(spec).__name__}")
        out.append(spec)
    return out


def check_scan(spec: TumorSpec, ct, organ_mask, spacing_mm) -> None:
    """Refuse a scan the spec was not drawn for (grid shape, spacing) or a mask off the CT's grid.

    Parameters
    ----------
    spec : TumorSpec
    ct, organ_mask : array, shape (X, Y, Z)
    spacing_mm : sequence of 3 float

    Raises
    ------
    InputError
    """
    import numpy as np

    if ct.shape != organ_mask.shape:
        raise InputError(f"CT shape {ct.shape} differs from organ mask shape {organ_mask.shape}")
    if tuple(ct.shape) != tuple(spec.grid_shape):
        raise InputError(f"spec was drawn for a grid of shape {tuple(spec.grid_shape)}, this scan is {tuple(ct.shape)}; "
                         "specs replay only on the scan (grid) they were drawn for")
    if not np.allclose(spacing_mm, spec.spacing_mm, rtol=1e-4, atol=1e-6):
        raise InputError(f"spec was drawn for spacing {tuple(spec.spacing_mm)} mm, this scan has {tuple(spacing_mm)} mm")
