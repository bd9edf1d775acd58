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

Elongation and flatness are drawn together: real tumours that are longer are also flatter (rank
correlation 0.5-0.8 in the calibration half), so an entry's ``rank_correlation`` couples their two
uniform draws through a Gaussian copula. Each marginal stays its own prior.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np
from scipy.special import ndtr, ndtri

from tumorsyn.errors import ConfigError

__all__ = ["QUANTILE_LEVELS", "EARLY_BELOW_MM", "load_priors", "size_class", "prior_quantiles", "draw", "quantile_at",
           "axis_rank_correlation", "ellipsoid_axes", "texture_sd_for_spread"]

QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
EARLY_BELOW_MM = 20.0  # early (small) tumours: equivalent diameter below 2 cm
BORROW_FROM = "liver"   # the organ with real tumour data whose priors an organ without any borrows
AXES_PAIR = "elongation,flatness"  # the key of the axis ratios' rank correlation in an entry's rank_correlation


@lru_cache(maxsize=1)
def load_priors() -> dict:
    """The shipped priors (``tumorsyn/data/tumour_priors.json``), parsed once per process."""
    text = (files("tumorsyn") / "data" / "tumour_priors.json").read_text()
    return json.loads(text)


def size_class(size_mm: float) -> str:
    """``"early"`` below :data:`EARLY_BELOW_MM` (equivalent diameter, mm), else ``"large"``."""
    return "early" if float(size_mm) < EARLY_BELOW_MM else "large"


def _entry_with(organ: str, size_mm: float, name: str) -> dict:
    """The entry whose quantiles hold ``name`` for this organ and size, following ``fallback`` entries."""
    organs = load_priors()["organs"]
    key = f"{organ if organ in organs else BORROW_FROM}/{size_class(size_mm)}"
    seen = set()
    while key not in seen:
        seen.add(key)
        organ_name, cls = key.split("/")
        entry = organs.get(organ_name, {}).get(cls, {})
        if name in entry.get("quantiles", {}):
            return entry
        fallback = entry.get("fallback", {})
        key = fallback.get(name, fallback.get("*", key))
    raise ConfigError(f"no prior for {name!r} of a {size_mm:g} mm {organ} tumour in tumour_priors.json")


def prior_quantiles(organ: str, size_mm: float, name: str) -> list[float]:
    """Quantiles (at :data:`QUANTILE_LEVELS`) of descriptor ``name`` for this organ and size.

    Follows ``fallback`` entries (``"liver/early"``) when the organ or class has no such prior. An
    organ the file does not name at all (one just added to the organ registry) borrows the liver's
    priors of its size class, as the kidney and spleen entries say explicitly.
    """
    return [float(v) for v in _entry_with(organ, size_mm, name)["quantiles"][name]]


def axis_rank_correlation(organ: str, size_mm: float) -> float:
    """Spearman rank correlation of elongation and flatness in the real tumours of this organ and size.

    Read from the entry that holds the elongation prior (so it follows the same fallbacks); 0 (drawn
    independently) when that entry records none.
    """
    entry = _entry_with(organ, size_mm, "elongation")
    return float(entry.get("rank_correlation", {}).get(AXES_PAIR, 0.0))


def quantile_at(organ: str, size_mm: float, name: str, u: float) -> float:
    """The value of descriptor ``name`` at probability ``u`` (0-1) of its prior for this organ and size."""
    q = np.asarray(prior_quantiles(organ, size_mm, name), dtype=np.float64)
    levels = np.asarray(QUANTILE_LEVELS, dtype=np.float64)
    # Tails: half a step beyond the outer quantiles, at probabilities 0 and 1.
    low = q[0] - 0.5 * (q[1] - q[0])
    high = q[-1] + 0.5 * (q[-1] - q[-2])
    knots_p = np.concatenate([[0.0], levels, [1.0]])
    knots_v = np.concatenate([[low], q, [high]])
    return float(np.interp(u, knots_p, knots_v))


def draw(rng: np.random.Generator, organ: str, size_mm: float, name: str) -> float:
    """One value of descriptor ``name`` drawn from its prior for this organ and size (one uniform draw)."""
    return quantile_at(organ, size_mm, name, rng.random())


def _coupled_uniform(u_first: float, u_own: float, rank_correlation: float) -> float:
    """A uniform coupled to ``u_first`` through a Gaussian copula with the given Spearman correlation.

    ``u_own`` is the second draw's own uniform; with no correlation it is returned as is, so entries
    without a recorded correlation draw exactly as before.
    """
    if rank_correlation == 0.0:
        return u_own
    # Spearman's rho of a Gaussian copula is (6 / pi) asin(r / 2), so r = 2 sin(pi rho / 6).
    r = 2.0 * np.sin(np.pi * rank_correlation / 6.0)
    # Uniforms are in [0, 1): keep them off 0 so the normal scores stay finite.
    z_first, z_own = ndtri(max(u_first, 1e-12)), ndtri(max(u_own, 1e-12))
    return float(ndtr(r * z_first + np.sqrt(1.0 - r * r) * z_own))


def ellipsoid_axes(rng: np.random.Generator, organ: str, size_mm: float) -> np.ndarray:
    """Relative semi-axes ``(1, e, f)`` scaled to unit geometric mean, from the elongation and flatness priors.

    For a solid ellipsoid with semi-axes ``a >= b >= c`` the realism descriptors give elongation
    ``b / a`` and flatness ``c / a``; dividing by ``(e f)^(1/3)`` keeps the volume of the sphere of
    the requested diameter. The two draws are coupled by :func:`axis_rank_correlation` (two uniform
    draws either way, so later draws from ``rng`` do not shift).
    """
    u_elongation, u_flatness = rng.random(), rng.random()
    u_flatness = _coupled_uniform(u_elongation, u_flatness, axis_rank_correlation(organ, size_mm))
    elongation = float(np.clip(quantile_at(organ, size_mm, "elongation", u_elongation), 0.2, 1.0))
    flatness = float(np.clip(quantile_at(organ, size_mm, "flatness", u_flatness), 0.15, elongation))
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
