"""Draw tumour specs: every random choice of a tumour, before it is applied (TorchIO's pattern).

:func:`sample_spec` draws one :class:`~tumorsyn.spec.TumorSpec` (size, place, generator parameters,
seed) that fits the organ; :func:`iter_specs` and :func:`sample_specs` draw several tumours for one
scan that keep clear of each other. Applying a spec is deterministic and lives in
:mod:`tumorsyn.apply`.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from tumorsyn.apply import render_label
from tumorsyn.errors import ConfigError, OrganTooSmallError
from tumorsyn.generators import generator_class, get_generator
from tumorsyn.lesion_size import equivalent_diameter_mm
from tumorsyn.placement import PlacementContext, check_placement
from tumorsyn.spec import TumorSpec

__all__ = ["SAMPLING_OPTIONS", "check_range_mm", "parse_size_bins", "check_options", "sample_spec", "iter_specs",
           "sample_specs"]

_FIT_ITERATIONS = 4
_FIT_TOLERANCE = 0.03  # relative size error accepted without another rescale
# sample_spec's own keywords that callers collecting options for later (RandTumorSynthesisd's
# ``**options``) may pass along with the generator's options.
SAMPLING_OPTIONS = ("allow_smaller", "exophytic", "max_tries", "organ_stats")


def check_range_mm(size_mm) -> tuple[float, float]:
    """One parser for size ranges: a number or a (low, high) pair of positive millimetres."""
    if np.isscalar(size_mm):
        size_mm = (size_mm, size_mm)
    try:
        lo, hi = (float(v) for v in size_mm)
    except (TypeError, ValueError):
        raise ConfigError(f"size_mm must be a number or a (low, high) pair in mm, got {size_mm!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise ConfigError(f"size_mm must satisfy 0 < low <= high, got {size_mm!r}")
    return lo, hi


def parse_size_bins(size_mm) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...]]:
    """Size choices as ``(ranges_mm, probabilities)``: a number, a (low, high) pair, or weighted bins.

    Parameters
    ----------
    size_mm : float, (float, float) or sequence of ((float, float), float)
        Equivalent-sphere diameter in millimetres: one range, or weighted bins
        ``[((low_mm, high_mm), weight), ...]`` (lists, as YAML gives them, work too). Weights need
        not sum to 1.

    Returns
    -------
    ranges_mm : tuple of (float, float)
    probabilities : tuple of float
        Summing to 1, one per range.

    Raises
    ------
    ConfigError
        Naming the bad bin or weight.
    """
    if np.isscalar(size_mm) or (isinstance(size_mm, Sequence) and len(size_mm) == 2
                                and all(np.isscalar(v) for v in size_mm)):
        return (check_range_mm(size_mm),), (1.0,)
    try:
        items = list(size_mm)
    except TypeError:
        raise ConfigError(f"size_mm must be a (low, high) pair in mm or a list of ((low, high), weight) bins, "
                          f"got {size_mm!r}") from None
    ranges, weights = [], []
    for item in items:
        try:
            span, weight = item
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"size_mm bin {item!r} is not ((low_mm, high_mm), weight); "
                              "write e.g. [((5, 10), 0.8), ((10, 20), 0.1), ((20, 40), 0.1)]") from None
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"size_mm bin weight must be a non-negative number, got {weight!r} in {item!r}")
        ranges.append(check_range_mm(span))
        weights.append(weight)
    total = sum(weights)
    if not ranges or total <= 0:
        raise ConfigError(f"size_mm bins need at least one positive weight, got {size_mm!r}")
    return tuple(ranges), tuple(w / total for w in weights)


def check_options(method: str, options: dict) -> None:
    """Refuse options neither ``method``'s generator nor :func:`sample_spec` takes (``None`` values pass).

    A misspelled option, or one another generator has (``appearance`` for ``ca``), would
    otherwise be dropped without a word and the tumour drawn with defaults.
    """
    given = [key for key, value in options.items() if value is not None and key not in SAMPLING_OPTIONS]
    generator_class(method).check_options(given, also=SAMPLING_OPTIONS)


def _fit_size(spec: TumorSpec, generator, organ_mask: np.ndarray, target_mm: float, ct_hu: np.ndarray | None = None):
    """Rescale the spec until its rendered label has the target equivalent diameter (on ``generator.device``)."""
    slices, rendering = render_label(spec, organ_mask, ct_hu=ct_hu, device=generator.device)
    for _ in range(_FIT_ITERATIONS):
        size = equivalent_diameter_mm(rendering.label, spec.spacing_mm)
        if size == 0 or abs(size - target_mm) <= _FIT_TOLERANCE * target_mm:
            break
        rescaled = generator.rescale(spec, float(np.clip(target_mm / size, 0.5, 2.0)))
        if rescaled is spec:
            break
        spec = rescaled
        slices, rendering = render_label(spec, organ_mask, ct_hu=ct_hu, device=generator.device)
    return spec, slices, rendering


# What helps against each reason check_placement gives (the advice of a failed placement).
_ADVICE = {
    "overlaps or touches an existing lesion": "fewer tumours (--count)",
    "written size off the requested range": "a wider --size-mm range",
    "empty tumour": "a larger --size-mm or a scan with finer voxels",
    "exophytic tumour not straddling the organ surface": "--exophytic no",
    "exophytic part reaches air": "--exophytic no",
}


def _too_thin(organ: str, deepest_mm: float, spacing, preset) -> str:
    """The message for an organ no tumour fits in, whatever its size: say what would help instead."""
    least = 2 * max(spacing)
    margin = f" and a {preset.margin_mm:g} mm margin is kept" if preset.margin_mm > 0 else ""
    text = (f"the {organ} is too thin for any tumour: its deepest point is {deepest_mm:.1f} mm from its surface"
            f"{margin}, and a tumour needs at least {least:.1f} mm (2 voxels) across, so a smaller --size-mm cannot "
            f"help; check that the label marks the {organ} (--organ-label), or use a scan with finer voxels")
    if preset.exophytic_probability > 0:
        text += ", or allow tumours that bulge out of it (--exophytic yes)"
    return text


def sample_spec(organ_mask: np.ndarray, spacing_mm, *, organ: str, method: str = "rules", size_mm=(5.0, 20.0),
                ct_hu: np.ndarray | None = None, rng=None, avoid: np.ndarray | None = None,
                context: PlacementContext | None = None, exophytic: bool | None = None,
                allow_smaller: bool = False, max_tries: int = 200, device="auto", **options) -> TumorSpec:
    """Draw every random choice of one tumour into a :class:`~tumorsyn.spec.TumorSpec`.

    Parameters
    ----------
    organ_mask : ndarray of bool, shape (X, Y, Z)
        The host organ, canonical RAS+.
    spacing_mm : sequence of 3 float
        Voxel size (X, Y, Z) in millimetres; anisotropic spacing is fine.
    organ : {'liver', 'pancreas', 'kidney'}
    method : str
        Generator name (see :func:`tumorsyn.available_generators`).
    size_mm : float or (float, float)
        Range of the written tumour's equivalent-sphere diameter, in millimetres.
    ct_hu : ndarray of float, shape (X, Y, Z), optional
        The scan in HU: gives the organ statistics that intensities are relative to, and the
        vessels that tumours avoid. Without it, pass ``organ_stats=(mean_hu, std_hu)``.
    rng : numpy.random.Generator or int, optional
        Source of every random choice.
    avoid : ndarray of bool, optional
        Existing lesions to keep clear of.
    context : PlacementContext, optional
        Reuse the per-scan placement facts across many calls (faster for several tumours).
    exophytic : bool, optional
        Force (or forbid) an exophytic tumour; by default the organ preset decides.
    allow_smaller : bool
        When the organ cannot hold the requested size, shrink the range instead of failing.
    max_tries : int
        Placements tried before giving up.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU path render the candidate tumours (the automaton grows each
        one to measure it); every device draws the same spec.
    **options
        Generator options, e.g. ``appearance="rim"`` for the rules generator (each generator's
        ``options`` lists its own).

    Returns
    -------
    TumorSpec

    Raises
    ------
    OrganTooSmallError
        No place in the organ holds a tumour of the requested size.
    ConfigError
        An option the generator does not take (misspelled, or another generator's).
    """
    return _draw(organ_mask, spacing_mm, organ=organ, method=method, size_mm=size_mm, ct_hu=ct_hu, rng=rng,
                 avoid=avoid, context=context, exophytic=exophytic, allow_smaller=allow_smaller,
                 max_tries=max_tries, device=device, **options)[0]


def _draw(organ_mask: np.ndarray, spacing_mm, *, organ: str, method: str = "rules", size_mm=(5.0, 20.0),
          ct_hu=None, rng=None, avoid=None, context=None, exophytic=None, allow_smaller: bool = False,
          max_tries: int = 200, device="auto", **options):
    """:func:`sample_spec`, returning also the placed tumour's ``(slices, rendering)`` (no need to redraw it)."""
    rng = np.random.default_rng(rng)
    lo, hi = check_range_mm(size_mm)
    organ_stats = options.pop("organ_stats", None)
    if context is None:
        context = PlacementContext(organ_mask, spacing_mm, organ, ct_hu=ct_hu, avoid=avoid, organ_stats=organ_stats)
    elif context.organ != organ:
        raise ConfigError(f"placement context is for {context.organ}, not {organ}")
    check_options(method, options)
    generator = get_generator(method, device=device)
    preset = context.preset
    spacing = context.spacing_mm
    exo_allowed = preset.exophytic_probability > 0

    if exophytic and not exo_allowed:
        raise ConfigError(f"exophytic tumours are only available for the kidney, not the {organ}")

    def needed_depth(diameter: float, exo: bool) -> float:
        return 0.0 if exo else preset.margin_mm + 0.5 * diameter * preset.min_inside_fraction

    if exophytic is not True:
        # Fail early, with a number, when even the smallest size cannot fit.
        deepest = context.max_depth_mm
        if deepest < needed_depth(lo, False):
            fit = max((deepest - preset.margin_mm) / (0.5 * max(preset.min_inside_fraction, 1e-6)), 0.0)
            if fit < 2 * max(spacing):
                raise OrganTooSmallError(_too_thin(organ, deepest, spacing, preset))
            if not allow_smaller:
                raise OrganTooSmallError(
                    f"the {organ} is too small for a {lo:g} mm tumour: its deepest point is {deepest:.1f} mm from the "
                    f"surface (a {preset.margin_mm:g} mm margin is kept); ask for --size-mm up to about {fit:.0f}")
            lo, hi = min(lo, 0.75 * fit), min(hi, fit)
        elif deepest < needed_depth(hi, False) and allow_smaller:
            hi = max(lo, (deepest - preset.margin_mm) / (0.5 * max(preset.min_inside_fraction, 1e-6)))

    reasons: dict[str, int] = {}
    for _ in range(max_tries):
        target = float(rng.uniform(lo, hi))
        exo = bool(exophytic) if exophytic is not None else bool(exo_allowed and rng.random() < preset.exophytic_probability)
        if exo:
            center = context.sample_center(rng, min_depth_mm=0.0, max_depth_mm=max(0.25 * target, 2 * max(spacing)))
        else:
            center = context.sample_center(rng, min_depth_mm=needed_depth(target, False),
                                           min_clearance_mm=0.5 * target)
        if center is None:
            reasons["no centre deep enough"] = reasons.get("no centre deep enough", 0) + 1
            continue
        params = generator.sample_params(rng, size_mm=target, preset=preset, organ_mean_hu=context.organ_stats[0],
                                         organ_std_hu=context.organ_stats[1], organ_noise_hu=context.organ_noise_hu,
                                         spacing_mm=spacing, options=options)
        spec = TumorSpec(method=method, organ=organ, seed=int(rng.integers(0, 2**63 - 1)), center_vox=center,
                         size_mm=target, spacing_mm=spacing, grid_shape=context.organ_mask.shape,
                         organ_mean_hu=float(context.organ_stats[0]), organ_std_hu=float(context.organ_stats[1]),
                         exophytic=exo, params=params)
        spec, slices, rendering = _fit_size(spec, generator, context.organ_mask, target, ct_hu=context.ct_hu)
        reason = check_placement(rendering.label, rendering.presence, slices, context, size_range_mm=(lo, hi),
                                 exophytic=exo, margin_mm=preset.margin_mm)
        if reason is None:
            return spec, slices, rendering
        reasons[reason] = reasons.get(reason, 0) + 1
    summary = "; ".join(f"{k} ({v}x)" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    advice = list(dict.fromkeys(_ADVICE.get(k, "a smaller --size-mm") for k in sorted(reasons, key=lambda k: -reasons[k])))
    raise OrganTooSmallError(f"could not place a {lo:g}-{hi:g} mm {organ} tumour in {max_tries} tries: {summary}; "
                             f"try {' or '.join(advice)}")


def iter_specs(organ_mask: np.ndarray, spacing_mm, *, count: int, organ: str, size_mm=(5.0, 20.0), rng=None,
               ct_hu=None, avoid=None, centers=None, **kwargs) -> Iterator[TumorSpec]:
    """Draw up to ``count`` specs for one scan, one at a time; their tumours never overlap.

    Each tumour keeps clear of the previous ones (they join the placement context's ``avoid``).
    A caller that can use fewer tumours than asked (a training pipeline) keeps the specs drawn
    before an :class:`~tumorsyn.errors.OrganTooSmallError`.

    Parameters
    ----------
    organ_mask, spacing_mm, organ, rng, ct_hu, avoid
        As in :func:`sample_spec`.
    count : int
        Tumours to draw.
    size_mm : float, (float, float) or sequence of ((float, float), float)
        A range, or weighted bins (:func:`parse_size_bins`); with bins one is drawn per tumour
        (from ``rng``), then a size in it.
    centers : ndarray of bool, shape (X, Y, Z), optional
        Where tumour centres may lie (:class:`~tumorsyn.placement.PlacementContext`); ignored
        when a ``context`` is given.
    **kwargs
        Passed to :func:`sample_spec` (``context``, ``device``, ``method``, generator options ...).

    Yields
    ------
    TumorSpec
    """
    rng = np.random.default_rng(rng)
    ranges, weights = parse_size_bins(size_mm)
    context = kwargs.pop("context", None) or PlacementContext(
        organ_mask, spacing_mm, organ, ct_hu=ct_hu, avoid=None if avoid is None else avoid.copy(),
        organ_stats=kwargs.pop("organ_stats", None), centers=centers)
    for _ in range(int(count)):
        # One range needs no bin draw (the draws, and so the specs, stay those of a plain range).
        k = 0 if len(ranges) == 1 else int(rng.choice(len(ranges), p=weights))
        spec, slices, rendering = _draw(organ_mask, spacing_mm, organ=organ, size_mm=ranges[k], ct_hu=ct_hu, rng=rng,
                                        context=context, **kwargs)
        context.add_avoid(slices, rendering.label)  # later tumours keep clear of this one
        yield spec


def sample_specs(organ_mask: np.ndarray, spacing_mm, *, count: int, organ: str, rng=None, ct_hu=None,
                 avoid=None, **kwargs) -> list[TumorSpec]:
    """Draw ``count`` specs for one scan whose tumours never overlap (see :func:`iter_specs`).

    ``kwargs`` go to :func:`sample_spec` (``device`` included: every tumour is rendered there).

    Raises
    ------
    OrganTooSmallError
        When any of the tumours cannot be placed.
    """
    return list(iter_specs(organ_mask, spacing_mm, count=count, organ=organ, rng=rng, ct_hu=ct_hu, avoid=avoid,
                           **kwargs))
