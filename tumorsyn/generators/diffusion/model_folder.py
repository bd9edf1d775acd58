"""The model folder of a trained diffusion generator: what it holds, how it is checked and loaded.

A model folder (written by ``tumorsyn train-diffusion``) holds::

    config.json               format marker, networks' constructor arguments, latent scale,
                              sampler, data settings (spacing, crop, HU window, intensity mode), training summary
    autoencoder.safetensors   stage 1 weights (MONAI AutoencoderKL or VQVAE)
    unet.safetensors          stage 2 weights (MONAI DiffusionModelUNet, EMA weights when trained with EMA)
    scheduler_config.json     the training noise schedule (diffusers format)
    refiner.safetensors       optional: the border refiner (MONAI UNet at full resolution), named in
                              config.json's "refiner" section when the model has one
    refiner_1.safetensors ... with "members": K > 1 in that section, the other K - 1 refiners of an
                              ensemble (their corrections are averaged, see .ensemble)

A **mixture** folder (``models: K`` in the training config) holds K such folders, ``member_0/`` ...,
each a whole model trained from its own seed, and a config.json with their shared ``organs``,
``data``, ``sampling`` and ``refiner`` sections and ``"mixture": {"members": [...]}`` instead of
weights. Each tumour is drawn by one member, the one its seed names (:func:`member_index`): one run's
seeds set how smooth its tumours' interiors are (benchmarks/RESULTS.md, fourteenth and fifteenth
sessions), and drawing from several runs' models averages that out without blurring any tumour.

This module is the small interface through which ``tumorsyn`` uses a model: it never imports the
training package and never touches the network. Loaded models are cached per process, keyed by
folder, checksum and device, so a training pipeline that draws tumours every epoch loads once.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumorsyn.errors import ModelError
from tumorsyn.generators.diffusion.intensity import DEFAULT_RELATIVE_WINDOW_SD, INTENSITY_MODES, LEGACY_INTENSITY

__all__ = ["FORMAT", "FORMAT_VERSION", "DiffusionModel", "build_network", "load_model", "member_index",
           "mixture_folders", "model_checksum", "read_model_config", "refiner_files", "resolve_device", "SAMPLERS",
           "PREDICTION_TYPES", "SHARED_SECTIONS", "unshared_section"]

FORMAT = "tumorsyn-diffusion"
FORMAT_VERSION = 1
WEIGHT_FILES = {"autoencoder": "autoencoder.safetensors", "unet": "unet.safetensors"}
OPTIONAL_WEIGHT_FILES = {"refiner": "refiner.safetensors"}
SCHEDULER_FILE = "scheduler_config.json"
# What every member of a mixture must share (the crops it reads and writes, how it samples, its organs).
SHARED_SECTIONS = ("organs", "data", "sampling", "refiner")
# Network classes a model folder may name, with the MONAI class that builds each.
NETWORKS = {"AutoencoderKL": "monai.networks.nets:AutoencoderKL",
            "VQVAE": "monai.networks.nets:VQVAE",
            "DiffusionModelUNet": "monai.networks.nets:DiffusionModelUNet",
            "UNet": "monai.networks.nets:UNet"}
SAMPLERS = ("ddim", "dpm_solver", "unipc", "euler")  # euler: rectified flow
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow")

_CACHE: dict[tuple, "DiffusionModel"] = {}
_SUMS: dict[tuple, str] = {}
_LOCK = threading.Lock()


@dataclass
class DiffusionModel:
    """A loaded model: networks in eval mode on ``device``, plus the folder's config.

    Attributes
    ----------
    path : Path
        The model folder (resolved).
    checksum : str
        SHA-256 of the folder's files (config and weights); recorded in every spec that uses it.
    config : dict
        ``config.json``.
    scheduler_config : dict
        ``scheduler_config.json`` (diffusers format).
    autoencoder, unet : torch.nn.Module
    device : torch.device
    refiner : torch.nn.Module or None
        The border refiner (:func:`tumorsyn.generators.diffusion.sampler.refine`), when the folder has one.
    members : tuple of DiffusionModel
        A mixture's loaded members (empty for a single model, whose networks are the attributes above;
        a mixture has none of its own).
    """

    path: Path
    checksum: str
    config: dict
    scheduler_config: dict
    autoencoder: Any = field(repr=False)
    unet: Any = field(repr=False)
    device: Any = None
    refiner: Any = field(default=None, repr=False)
    members: tuple = field(default=(), repr=False)

    @property
    def has_refiner(self) -> bool:
        """Whether its tumours' borders are drawn by a border refiner (every member's, for a mixture)."""
        return bool(self.config.get("refiner"))

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) of the model's crops."""
        return tuple(float(s) for s in self.config["data"]["spacing_mm"])

    @property
    def crop_size(self) -> tuple[int, int, int]:
        """Crop shape (voxels) at :attr:`spacing_mm`."""
        return tuple(int(n) for n in self.config["data"]["crop_size"])

    @property
    def hu_window(self) -> tuple[float, float]:
        """HU mapped linearly to [-1, 1] (clipped)."""
        lo, hi = self.config["data"]["hu_window"]
        return float(lo), float(hi)

    @property
    def intensity(self) -> str:
        """``relative`` (crops standardised by their host parenchyma) or ``absolute`` (the fixed HU window).

        Folders written before the key existed were trained on absolute HU and load as ``absolute``.
        """
        return str(self.config["data"].get("intensity", LEGACY_INTENSITY))

    @property
    def relative_window_sd(self) -> tuple[float, float]:
        """Robust SDs of the host parenchyma mapped to [-1, 1] (relative mode)."""
        lo, hi = self.config["data"].get("relative_window_sd", DEFAULT_RELATIVE_WINDOW_SD)
        return float(lo), float(hi)

    @property
    def spread_per_noise(self) -> float | None:
        """Relative models: the training crops' ring spread per unit of their tumours' shell noise (None for
        folders written before it was recorded: they read the host's ring spread)."""
        value = (self.config.get("training") or {}).get("spread_per_noise")
        return float(value) if value else None

    @property
    def mask_dilate_mm(self) -> float:
        """How far (mm) training grew its tumour masks (0 for folders written before it was recorded)."""
        return float(self.config["data"].get("mask_dilate_mm") or 0.0)


def _need(cond: bool, folder: Path, message: str) -> None:
    if not cond:
        raise ModelError(f"{message}; give a folder written by `tumorsyn train-diffusion` (its model/ folder)",
                         path=folder)


def read_model_config(path: str | Path) -> tuple[Path, dict]:
    """Check that ``path`` is a tumorsyn diffusion model folder; return ``(folder, config)``.

    Raises
    ------
    ModelError
        Naming the folder and what is wrong (missing, not a folder, no/invalid config.json,
        another format, missing weights).
    """
    if path is None or str(path) == "":
        raise ModelError("method 'diffusion' needs a trained model: pass model=MODEL_DIR "
                         "(tumorsyn generate --model MODEL_DIR); train one with `tumorsyn train-diffusion`")
    folder = Path(path).expanduser().resolve()
    if not folder.exists():
        raise ModelError("model folder not found", path=folder)
    _need(folder.is_dir(), folder, "is a file, not a model folder")
    config_file = folder / "config.json"
    _need(config_file.is_file(), folder, "no config.json: not a tumorsyn diffusion model")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"config.json is not valid JSON ({exc})", path=folder) from None
    _need(isinstance(config, dict) and config.get("format") == FORMAT, folder,
          f"config.json is not a {FORMAT} model (format {config.get('format') if isinstance(config, dict) else None!r})")
    _need(int(config.get("format_version", -1)) == FORMAT_VERSION, folder,
          f"model format version {config.get('format_version')!r} is not readable by this tumorsyn "
          f"(reads {FORMAT_VERSION})")
    mixture = "mixture" in config
    for key in ("data", "sampling", "organs") if mixture else ("autoencoder", "unet", "data", "sampling", "organs"):
        _need(key in config, folder, f"config.json lacks {key!r}")
    if mixture:
        _check_mixture(folder, config)
    if config.get("refiner"):
        members = config["refiner"].get("members", 1) if isinstance(config["refiner"], dict) else None
        _need(isinstance(members, int) and not isinstance(members, bool) and members >= 1, folder,
              f"refiner members must be a positive integer, got {members!r}")
    for part, name in _weight_files(config).items():
        section = config[_section(part)]
        _need((folder / name).is_file(), folder, f"missing {name}")
        _need(isinstance(section, dict) and section.get("class") in NETWORKS, folder,
              f"{_section(part)} class {section.get('class') if isinstance(section, dict) else None!r} is not one of "
              f"{', '.join(NETWORKS)}")
    _need(mixture or (folder / SCHEDULER_FILE).is_file(), folder, f"missing {SCHEDULER_FILE}")
    sampling = config["sampling"]
    _need(sampling.get("sampler") in SAMPLERS, folder, f"sampler {sampling.get('sampler')!r} is not one of {', '.join(SAMPLERS)}")
    _need(sampling.get("prediction_type") in PREDICTION_TYPES, folder,
          f"prediction_type {sampling.get('prediction_type')!r} is not one of {', '.join(PREDICTION_TYPES)}")
    data = config["data"]
    _need(len(data.get("spacing_mm", ())) == 3 and len(data.get("crop_size", ())) == 3
          and len(data.get("hu_window", ())) == 2, folder, "data needs spacing_mm (3), crop_size (3) and hu_window (2)")
    intensity = data.get("intensity", LEGACY_INTENSITY)
    _need(intensity in INTENSITY_MODES, folder,
          f"data.intensity {intensity!r} is not one of {', '.join(INTENSITY_MODES)}")
    window_sd = data.get("relative_window_sd", DEFAULT_RELATIVE_WINDOW_SD)
    _need(isinstance(window_sd, (list, tuple)) and len(window_sd) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in window_sd)
          and window_sd[0] < 0 < window_sd[1], folder,
          f"data.relative_window_sd must be [low, high] robust SDs with low < 0 < high, got {window_sd!r}")
    return folder, config


def _check_mixture(folder: Path, config: dict) -> None:
    """A mixture's members: at least two subfolders, each a whole (non-mixture) model sharing :data:`SHARED_SECTIONS`."""
    names = config["mixture"].get("members") if isinstance(config["mixture"], dict) else None
    _need(isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n and Path(n).name == n
                                                                 and n not in (".", "..") for n in names), folder,
          f"mixture members must list at least two subfolder names, got {names!r}")
    for name in names:
        _need((folder / name).is_dir(), folder, f"missing mixture member {name}/")
        _, member = read_model_config(folder / name)
        _need("mixture" not in member, folder, f"mixture member {name}/ is itself a mixture")
        key = unshared_section(member, config)
        _need(key is None, folder, f"mixture member {name}/ differs from config.json in {key!r}: members must share "
                                   f"{', '.join(SHARED_SECTIONS)}")


def unshared_section(config: dict, other: dict) -> str | None:
    """The first of :data:`SHARED_SECTIONS` in which two model configs differ (None: they may share a mixture)."""
    return next((key for key in SHARED_SECTIONS if config.get(key) != other.get(key)), None)


def mixture_folders(folder: Path, config: dict) -> list[Path]:
    """A mixture's member folders in order (empty for a single model)."""
    return [folder / name for name in (config.get("mixture") or {}).get("members", [])]


def member_index(seed: int, members: int) -> int:
    """The member of a ``members``-model mixture that draws the tumour of ``seed``: ``seed mod members``.

    A tumour's seed already names its noise; the same seed always picks the same member, and the
    seeds of a dataset's tumours (spawned independently) spread evenly over the members.
    """
    return int(seed) % int(members)


def refiner_files(members: int) -> list[str]:
    """The weight files of a refiner ensemble of ``members`` networks: ``refiner.safetensors``, ``refiner_1...``."""
    first = OPTIONAL_WEIGHT_FILES["refiner"]
    return [first] + [first.replace(".safetensors", f"_{k}.safetensors") for k in range(1, int(members))]


def _weight_files(config: dict) -> dict:
    """The weight files a folder must hold: both stages', and the refiners' when config.json names them.

    Keys are ``autoencoder``, ``unet``, ``refiner`` and ``refiner_1`` ... (the ensemble's other members).
    """
    if "mixture" in config:
        return {}  # the members hold the weights
    files = dict(WEIGHT_FILES)
    if config.get("refiner"):
        for k, name in enumerate(refiner_files(config["refiner"].get("members", 1))):
            files["refiner" if k == 0 else f"refiner_{k}"] = name
    return files


def model_checksum(path: str | Path) -> str:
    """SHA-256 of the model folder's files, cached while their sizes and times are unchanged."""
    from tumorsyn.io.checksums import sha256_file

    folder, _ = read_model_config(path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    key = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    with _LOCK:
        if key not in _SUMS:
            _SUMS[key] = sha256_file(folder)
        return _SUMS[key]


def build_network(spec: dict):
    """Build a MONAI network from ``{"class": name, "kwargs": {...}}`` (constructor arguments only)."""
    import importlib

    cls_name = spec.get("class")
    if cls_name not in NETWORKS:
        raise ModelError(f"network class {cls_name!r} is not one of {', '.join(NETWORKS)}")
    module, _, attr = NETWORKS[cls_name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    try:
        return cls(**dict(spec.get("kwargs", {})))
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"cannot build {cls_name} from its config ({exc})") from None


def resolve_device(device=None):
    """The ``torch.device`` for a request (:func:`tumorsyn.device.resolve_device`: auto, cpu, cuda, cuda:N)."""
    import torch

    from tumorsyn.device import resolve_device as resolve

    return torch.device(str(resolve(device, backend="torch")))


def load_model(path: str | Path, *, device: str | None = "auto", checksum: str | None = None) -> DiffusionModel:
    """Load (or reuse) the model in ``path`` on ``device``; never touches the network.

    Parameters
    ----------
    path : str or Path
        Model folder.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    checksum : str, optional
        Expected SHA-256 (from a spec being replayed): a different folder content is an error.

    Raises
    ------
    ModelError
        Bad folder, checksum mismatch, or weights that do not fit the networks.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder, config = read_model_config(path)
    actual = model_checksum(folder)
    if checksum is not None and checksum != actual:
        raise ModelError(f"model checksum {actual[:12]}... differs from the one recorded in the spec "
                         f"({checksum[:12]}...): the folder changed since the spec was drawn; use the original model",
                         path=folder)
    dev = resolve_device(device)
    key = (str(folder), actual, str(dev))
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    if "mixture" in config:
        # Members load (and are cached) on their own, outside the lock they take themselves.
        members = tuple(load_model(sub, device=device) for sub in mixture_folders(folder, config))
        model = DiffusionModel(path=folder, checksum=actual, config=config, scheduler_config={}, autoencoder=None,
                               unet=None, device=dev, members=members)
        with _LOCK:
            return _CACHE.setdefault(key, model)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        nets = {}
        for part, name in _weight_files(config).items():
            net = build_network(config[_section(part)])
            try:
                state = load_file(str(folder / name))
            except (SafetensorError, OSError, ValueError) as exc:
                raise ModelError(f"{name} is not a readable safetensors file ({exc})", path=folder) from None
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0] if str(exc) else "mismatch"
                raise ModelError(f"{name} does not fit the {config[_section(part)]['class']} in config.json ({first})",
                                 path=folder) from None
            nets[part] = net.to(dev).eval().requires_grad_(False)
        scheduler_config = json.loads((folder / SCHEDULER_FILE).read_text())
        model = DiffusionModel(path=folder, checksum=actual, config=config, scheduler_config=scheduler_config,
                               autoencoder=nets["autoencoder"], unet=nets["unet"], device=dev,
                               refiner=_refiner(nets))
        _CACHE[key] = model
        return model


def _section(part: str) -> str:
    """The config.json section that builds a weight file's network (every refiner member: ``refiner``)."""
    return "refiner" if part.startswith("refiner") else part


def _refiner(nets: dict):
    """The refiner of a loaded folder: None, one network, or the mean of an ensemble's (:mod:`.ensemble`)."""
    members = [nets[part] for part in sorted(nets, key=lambda p: (len(p), p)) if part.startswith("refiner")]
    if len(members) < 2:
        return members[0] if members else None
    from tumorsyn.generators.diffusion.ensemble import RefinerEnsemble

    return RefinerEnsemble(members).eval()


def clear_cache() -> None:
    """Forget every loaded model (tests, or to free GPU memory)."""
    with _LOCK:
        _CACHE.clear()
        _SUMS.clear()
