"""What the nnU-Net trainer synthesises, and how nnU-Net's normalised CT maps back to HU.

Two small pieces, light to import (no torch, no nnunetv2):

- :class:`TumorSynSettings`: the ``tumorsyn_nnunet.json`` file beside the plans
  (``$nnUNet_preprocessed/Dataset<ID>_<NAME>/tumorsyn_nnunet.json``, or the file named by the
  ``TUMORSYN_NNUNET_CONFIG`` environment variable): organ, probability, size range, method ...
- :class:`CTIntensity`: nnU-Net's ``CTNormalization`` (clip to the foreground's 0.5 and 99.5
  percentiles, then ``(x - mean) / std`` with the foreground's mean and standard deviation, all
  kept in the plans) and its inverse, so tumours are drawn in HU and written back normalised.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tumorsyn.errors import ConfigError

__all__ = ["SETTINGS_FILE", "ENV_VAR", "MIN_WINDOW_HU", "TumorSynSettings", "CTIntensity", "settings_path",
           "load_settings", "dataset_label_values"]

SETTINGS_FILE = "tumorsyn_nnunet.json"
"""Name of the settings file beside the plans (``nnUNetPlans.json``)."""
ENV_VAR = "TUMORSYN_NNUNET_CONFIG"
"""Environment variable naming a settings file to use instead of the one beside the plans."""
MIN_WINDOW_HU = 100.0
"""Narrowest clip window (HU) that tumorsyn's HU check accepts around an organ (placement.check_hu_span)."""
_EPS = 1e-8  # CTNormalization's guard against a zero std (float32 targets)
_TUMOUR_WORDS = ("tumor", "tumour", "lesion", "cancer", "carcinoma", "metasta")


@dataclass(frozen=True)
class TumorSynSettings:
    """The synthesis settings of one nnU-Net training (the keys of ``tumorsyn_nnunet.json``).

    Parameters
    ----------
    organ : {'liver', 'pancreas', 'kidney', ...}
        Host organ of the tumours (a name of :data:`tumorsyn.organs.ORGANS`).
    prob : float
        Probability, in [0, 1], that a training patch gets tumours.
    method : str
        Generator: ``"rules"``, ``"ca"``, or ``"diffusion"`` (with ``options={"model": DIR}``).
    size_mm : (float, float) or list of ((float, float), float)
        Equivalent-sphere diameter of each tumour in mm: a range, or weighted bins.
    count : int
        Tumours per selected patch; they never overlap.
    organ_labels : tuple of int, optional
        The organ's values in the dataset's label maps; by default the ``dataset.json`` label named
        like the organ (``"liver"``, ``"kidney"``/``"kidneys"``).
    tumor_label : int, optional
        The value written where a tumour is visible; by default the one ``dataset.json`` label whose
        name says tumour (``tumor``, ``tumour``, ``lesion``, ``cancer`` ...).
    channel : int
        The CT input channel (normalised with ``CTNormalization``).
    device : {'cpu', 'auto', 'cuda', 'cuda:N'}
        Where generators with a GPU path run. nnU-Net's augmentation workers are forked processes
        that cannot use CUDA once training has: keep ``"cpu"`` unless ``nnUNet_n_proc_DA=0``.
    options : dict
        Generator and sampling options (``{"appearance": "rim"}``, ``{"model": DIR, "steps": 50}``).
    """

    organ: str
    prob: float = 0.5
    method: str = "rules"
    size_mm: Any = (5.0, 20.0)
    count: int = 1
    organ_labels: tuple[int, ...] | None = None
    tumor_label: int | None = None
    channel: int = 0
    device: str = "cpu"
    options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping, *, path: str | os.PathLike | None = None) -> "TumorSynSettings":
        """Check every value and build the settings; a bad one raises a one-line ``ConfigError``."""
        from tumorsyn.device import parse_device
        from tumorsyn.organs import ORGANS
        from tumorsyn.sampling import parse_size_bins

        if not isinstance(data, Mapping):
            raise ConfigError(f"settings must be a JSON object, got {type(data).__name__}", path=path)
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", path=path)
        if "organ" not in data:
            raise ConfigError(f"'organ' is required (one of {', '.join(ORGANS)})", path=path)
        values = dict(data)
        if values["organ"] not in ORGANS:
            raise ConfigError(f"unknown organ {values['organ']!r}; choose one of {', '.join(ORGANS)}", path=path)
        prob = values.get("prob", 0.5)
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= float(prob) <= 1.0:
            raise ConfigError(f"prob must be a probability in [0, 1], got {prob!r}", path=path)
        values["prob"] = float(prob)
        for key, least in (("count", 1), ("channel", 0)):
            value = values.get(key, cls.__dataclass_fields__[key].default)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{key} must be a whole number >= {least}, got {value!r}", path=path)
        try:
            parse_size_bins(values.get("size_mm", (5.0, 20.0)))
            values["device"] = parse_device(values.get("device", "cpu"))
        except ConfigError as exc:
            raise ConfigError(str(exc), path=path) from None
        if "size_mm" in values:
            values["size_mm"] = _tuples(values["size_mm"])
        labels = values.get("organ_labels")
        if labels is not None:
            labels = [labels] if isinstance(labels, int) else labels
            if not labels or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in labels):
                raise ConfigError(f"organ_labels must be positive label values, got {values['organ_labels']!r}",
                                  path=path)
            values["organ_labels"] = tuple(labels)
        tumor = values.get("tumor_label")
        if tumor is not None and (isinstance(tumor, bool) or not isinstance(tumor, int) or tumor <= 0):
            raise ConfigError(f"tumor_label must be a positive label value, got {tumor!r}", path=path)
        if not isinstance(values.get("options", {}), Mapping):
            raise ConfigError(f"options must be a JSON object, got {values['options']!r}", path=path)
        values["options"] = dict(values.get("options", {}))
        if not isinstance(values.get("method", "rules"), str):
            raise ConfigError(f"method must be a generator name, got {values['method']!r}", path=path)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready values (tuples as lists)."""
        return json.loads(json.dumps(asdict(self)))

    def labels(self, dataset_json: Mapping, *, path: str | os.PathLike | None = None) -> tuple[tuple[int, ...], int]:
        """``(organ_labels, tumor_label)``: the settings' values, else found by name in ``dataset.json``."""
        names = dataset_label_values(dataset_json)
        organ_labels = self.organ_labels
        if organ_labels is None:
            hits = [v for n, v in names.items() if n.lower().replace(" ", "_") in (self.organ, self.organ + "s")]
            if len(hits) != 1:
                raise ConfigError(f"dataset.json names no label '{self.organ}' (labels: {_listing(names)}); "
                                  "give organ_labels in the settings", path=path)
            organ_labels = (hits[0],)
        tumor_label = self.tumor_label
        if tumor_label is None:
            hits = sorted({v for n, v in names.items() if any(w in n.lower() for w in _TUMOUR_WORDS)})
            if len(hits) != 1:
                which = "several" if hits else "no"
                raise ConfigError(f"dataset.json names {which} tumour label (labels: {_listing(names)}); "
                                  "give tumor_label in the settings", path=path)
            tumor_label = hits[0]
        if tumor_label in organ_labels:
            raise ConfigError(f"tumor_label {tumor_label} is also an organ label", path=path)
        if names and tumor_label not in names.values():
            raise ConfigError(f"tumor_label {tumor_label} is not a label of dataset.json (labels: {_listing(names)}); "
                              "add it there so nnU-Net trains it", path=path)
        return tuple(organ_labels), int(tumor_label)


def _tuples(value):
    """Lists (as JSON gives them) to tuples, recursively."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _listing(names: Mapping[str, int]) -> str:
    return ", ".join(f"{n}={v}" for n, v in names.items()) or "none"


def dataset_label_values(dataset_json: Mapping) -> dict[str, int]:
    """``{name: value}`` of the integer labels of an nnU-Net ``dataset.json`` (region labels left out)."""
    labels = dataset_json.get("labels", {}) if isinstance(dataset_json, Mapping) else {}
    return {str(n): int(v) for n, v in labels.items() if isinstance(v, int) and not isinstance(v, bool)}


def settings_path(preprocessed_dataset_folder: str | os.PathLike | None) -> Path:
    """The settings file: ``$TUMORSYN_NNUNET_CONFIG`` when set, else ``tumorsyn_nnunet.json`` beside the plans."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    if preprocessed_dataset_folder is None:
        raise ConfigError(f"nnUNet_preprocessed is not set, so there is no {SETTINGS_FILE} to read; set it, or "
                          f"point {ENV_VAR} at a settings file")
    return Path(preprocessed_dataset_folder) / SETTINGS_FILE


def load_settings(path: str | os.PathLike) -> TumorSynSettings:
    """Read and check a settings file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no tumour synthesis settings here; write them with 'tumorsyn nnunet configure' "
                          f"(see docs/nnunet.md) or point {ENV_VAR} at a settings file", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid JSON ({exc})", path=path) from None
    return TumorSynSettings.from_dict(data, path=path)


@dataclass(frozen=True)
class CTIntensity:
    """nnU-Net's ``CTNormalization`` of one channel, and its inverse.

    Forward (as nnU-Net preprocesses): ``x = (clip(hu, lower_hu, upper_hu) - mean_hu) / max(std_hu, 1e-8)``,
    in float32. Inverse: ``hu = x * max(std_hu, 1e-8) + mean_hu``; voxels clipped by nnU-Net come
    back at the clip bounds (what was above ``upper_hu`` is lost, and stays lost).

    Parameters
    ----------
    mean_hu, std_hu : float
        The foreground's mean and standard deviation (HU), from the plans'
        ``foreground_intensity_properties_per_channel``.
    lower_hu, upper_hu : float
        Its ``percentile_00_5`` and ``percentile_99_5`` (HU): nnU-Net's clip window.
    """

    mean_hu: float
    std_hu: float
    lower_hu: float
    upper_hu: float

    @classmethod
    def from_plans(cls, scheme: str, properties: Mapping, *, channel: int = 0,
                   path: str | os.PathLike | None = None) -> "CTIntensity":
        """From a channel's normalisation scheme and foreground intensity properties (plans file values)."""
        if scheme != "CTNormalization":
            raise ConfigError(f"channel {channel} is normalised with {scheme}, not CTNormalization: tumour synthesis "
                              "needs CT in HU (name the channel 'CT' in dataset.json's channel_names and plan again)",
                              path=path)
        try:
            values = cls(float(properties["mean"]), float(properties["std"]), float(properties["percentile_00_5"]),
                         float(properties["percentile_99_5"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"channel {channel} has no usable foreground intensity properties ({exc!r})",
                              path=path) from None
        if not all(math.isfinite(v) for v in asdict(values).values()):
            raise ConfigError(f"channel {channel}'s foreground intensity properties are not finite: {values}", path=path)
        if values.upper_hu - values.lower_hu < MIN_WINDOW_HU:
            raise ConfigError(f"the plans clip channel {channel} to [{values.lower_hu:g}, {values.upper_hu:g}] HU (the "
                              f"foreground's 0.5-99.5 percentiles), narrower than the {MIN_WINDOW_HU:g} HU tumorsyn's "
                              "check that an image is in HU needs, so every patch would be refused; label more "
                              "structures (e.g. vessels, other organs) as foreground and plan again", path=path)
        return values

    def to_hu(self, normalised: np.ndarray) -> np.ndarray:
        """float32 HU from nnU-Net's normalised intensities (a new array)."""
        hu = np.array(normalised, dtype=np.float32, copy=True)
        hu *= max(self.std_hu, _EPS)
        hu += self.mean_hu
        return hu

    def normalise(self, hu: np.ndarray) -> np.ndarray:
        """nnU-Net's CTNormalization of ``hu`` (a new float32 array), operation for operation."""
        out = np.array(hu, dtype=np.float32, copy=True)
        np.clip(out, self.lower_hu, self.upper_hu, out=out)
        out -= self.mean_hu
        out /= max(self.std_hu, _EPS)
        return out
