"""Tumour priors fitted to real tumours: what the generators draw shapes, contrast, texture and edges from.

The numbers live in ``tumorsyn/data/tumour_priors.json``. They are derived statistics of real tumours
(quantiles of ``tumorsyn realism`` descriptors), never the data. ``benchmarks/fit_priors.py`` writes
the file from the CALIBRATION half of the real tumours in ``../shared/data/real``
(``benchmarks/realdata.py`` defines the split). The file records its provenance: sources, lesion
counts, the split rule and the tool version.

Each prior is a set of quantiles at the levels ``QUANTILE_LEVELS`` per organ and size class
(``early`` < 20 mm, ``large`` >= 20 mm equivalent diameter). :func:`draw` samples from the
piecewise-linear distribution through those quantiles; its tails run half an inter-quantile step
beyond the 5 % and 95 % points. An organ or class without real data for a descriptor uses the
entry named by its ``fallback`` (for example, pancreatic intensity priors are the liver's in units of
the host's noise). The file says so, and so does ``docs/realism.md``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np

from tumorsyn.errors import ConfigError

__all__ = ["QUANTILE_LEVELS", "EARLY_BELOW_MM", "load_priors", "size_class", "prior_quantiles", "draw", "ellipsoid_axes",
           "texture_sd_for_spread"]

QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
EARLY_BELOW_MM = 20.0  # early (small) tumours: equivalent diameter below 2 cm
BORROW_FROM = "liver"   # the organ with real tumour data whose priors an organ without any borrows


@lru_cache(maxsize=1)
def load_priors() -> dict:
    """The shipped priors (``tumorsyn/data/tumour_priors.json``), parsed once per process."""
    text = (files("tumorsyn") / "data" / "tumour_priors.json").read_text()
    return json.loads(text)


def size_class(size_mm: float) -> str:
    """``"early"`` below :data:`EARLY_BELOW_MM` (equivalent diameter, mm), else ``"large"``."""
    return "early" if float(size_mm) < EARLY_BELOW_MM else "large"


def prior_quantiles(organ: str, size_mm: float, name: str) -> list[float]:
    """Quantiles (at :data:`QUANTILE_LEVELS`) of descriptor ``name`` for this organ and size.

    Follows ``fallback`` entries (``"liver/early"``) when the organ or class has no such prior. An
    organ the file does not name at all (one just added to the organ registry) borrows the liver's
    priors of its size class, as the kidney and spleen entries say explicitly.
    """
    organs = load_priors()["organs"]
    key = f"{organ if organ in organs else BORROW_FROM}/{size_class(size_mm)}"
    seen = set()
    while key not in seen:
        seen.add(key)
        organ_name, cls = key.split("/")
        entry = organs.get(organ_name, {}).get(cls, {})
        if name in entry.get("quantiles", {}):
            return [float(v) for v in entry["quantiles"][name]]
        fallback = entry.get("fallback", {})
        key = fallback.get(name, fallback.get("*", key))
    raise ConfigError(f"no prior for {name!r} of a {size_mm:g} mm {organ} tumour in tumour_priors.json")


def draw(rng: np.random.Generator, organ: str, size_mm: float, name: str) -> float:
    """One value of descriptor ``name`` drawn from its prior for this organ and size (one uniform draw)."""
    q = np.asarray(prior_quantiles(organ, size_mm, name), dtype=np.float64)
    levels = np.asarray(QUANTILE_LEVELS, dtype=np.float64)
    # Tails: half a step beyond the outer quantiles, at probabilities 0 and 1.
    low = q[0] - 0.5 * (q[1] - q[0])
    high = q[-1] + 0.5 * (q[-1] - q[-2])
    knots_p = np.concatenate([[0.0], levels, [1.0]])
    knots_v = np.concatenate([[low], q, [high]])
    return float(np.interp(rng.random(), knots_p, knots_v))


def ellipsoid_axes(rng: np.random.Generator, organ: str, size_mm: float) -> np.ndarray:
    """Relative semi-axes ``(1, e, f)`` scaled to unit geometric mean, from the elongation and flatness priors.

    For a solid ellipsoid with semi-axes ``a >= b >= c`` the realism descriptors give elongation
    ``b / a`` and flatness ``c / a``; dividing by ``(e f)^(1/3)`` keeps the volume of the sphere of
    the requested diameter.
    """
    elongation = float(np.clip(draw(rng, organ, size_mm, "elongation"), 0.2, 1.0))
    flatness = float(np.clip(draw(rng, organ, size_mm, "flatness"), 0.15, elongation))
    axes = np.array([1.0, elongation, flatness])
    return axes / float(np.prod(axes)) ** (1.0 / 3.0)


# Interquartile range of a normal distribution in units of its SD.
_IQR_PER_SD = 1.349


def texture_sd_for_spread(internal_iqr_noise: float, noise_hu: float) -> float:
    """SD (HU) of the texture to add to the host's own grain so the lesion's inner IQR is ``internal_iqr_noise`` x noise.

    Inside a tumour the host's noise grain is kept; an independent texture of SD ``t`` gives an IQR
    of about ``1.349 sqrt(noise^2 + t^2)``, so ``t = noise sqrt((iqr / 1.349)^2 - 1)`` (0 when the
    grain alone is as spread as the prior asks).
    """
    ratio = float(internal_iqr_noise) / _IQR_PER_SD
    return float(noise_hu) * float(np.sqrt(max(ratio * ratio - 1.0, 0.0)))
