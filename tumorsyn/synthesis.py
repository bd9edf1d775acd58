"""The public API: draw a tumour spec (random), then apply it (deterministic).

>>> import numpy as np, tumorsyn
>>> ct = np.full((60, 60, 40), -1000.0, np.float32)
>>> organ = np.zeros(ct.shape, bool); organ[10:50, 10:50, 5:35] = True
>>> ct[organ] = 60.0 + np.random.default_rng(0).normal(0, 10, organ.sum())
>>> spec = tumorsyn.sample_spec(organ, (1.0, 1.0, 1.5), organ="liver", size_mm=(8, 12), ct_hu=ct, rng=0)
>>> out, tumor = tumorsyn.synthesize(ct, organ, (1.0, 1.0, 1.5), spec)
>>> 8 <= tumorsyn.measure.equivalent_diameter_mm(tumor, (1.0, 1.0, 1.5)) <= 12
True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tumorsyn.errors import ConfigError, InputError, OrganTooSmallError
from tumorsyn.generators import generator_class, get_generator
from tumorsyn.measure import equivalent_diameter_mm
from tumorsyn.placement import PlacementContext, box_slices, check_placement
from tumorsyn.spec import TumorSpec

__all__ = ["check_range_mm", "check_options", "sample_spec", "sample_specs", "synthesize", "synthesize_local", "synthesize_local_batch",
           "synthesize_local_groups", "batch_groups", "render_label", "LocalResult"]

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


def check_options(method: str, options: dict) -> None:
    """Refuse options neither ``method``'s generator nor :func:`sample_spec` takes (``None`` values pass).

    A misspelled option, or one another generator has (``appearance`` for ``ca``), would
    otherwise be dropped without a word and the tumour drawn with defaults.
    """
    given = [key for key, value in options.items() if value is not None and key not in SAMPLING_OPTIONS]
    generator_class(method).check_options(given, also=SAMPLING_OPTIONS)


def _box_for(spec: TumorSpec, generator) -> tuple[slice, ...]:
    half = [generator.extent_mm(spec) / s + 1.0 for s in spec.spacing_mm]
    return box_slices(spec.center_vox, half, spec.grid_shape)


def render_label(spec: TumorSpec, organ_mask: np.ndarray, *, device: str = "auto", ct_hu: np.ndarray | None = None):
    """The tumour's visible label in its box, without writing a CT: ``(slices, rendering)``.

    Generators whose shape depends on the scan (``uses_ct``, e.g. the cellular automaton, which
    grows through the tissue's HU) get ``ct_box=ct_hu[slices]`` when ``ct_hu`` is given.
    """
    generator = get_generator(spec.method, device=device)
    slices = _box_for(spec, generator)
    origin = tuple(s.start for s in slices)
    if ct_hu is not None and getattr(generator, "uses_ct", False):
        return slices, generator.render(spec, organ_mask[slices], origin, ct_box=ct_hu[slices])
    return slices, generator.render(spec, organ_mask[slices], origin)


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
            return spec
        reasons[reason] = reasons.get(reason, 0) + 1
    summary = "; ".join(f"{k} ({v}x)" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    advice = list(dict.fromkeys(_ADVICE.get(k, "a smaller --size-mm") for k in sorted(reasons, key=lambda k: -reasons[k])))
    raise OrganTooSmallError(f"could not place a {lo:g}-{hi:g} mm {organ} tumour in {max_tries} tries: {summary}; "
                             f"try {' or '.join(advice)}")


def sample_specs(organ_mask: np.ndarray, spacing_mm, *, count: int, organ: str, rng=None, ct_hu=None,
                 avoid=None, **kwargs) -> list[TumorSpec]:
    """Draw ``count`` specs for one scan whose tumours never overlap (each avoids the previous ones).

    ``kwargs`` go to :func:`sample_spec` (``device`` included: every tumour is rendered there).
    """
    rng = np.random.default_rng(rng)
    context = kwargs.pop("context", None) or PlacementContext(
        organ_mask, spacing_mm, organ, ct_hu=ct_hu, avoid=None if avoid is None else avoid.copy(),
        organ_stats=kwargs.pop("organ_stats", None))
    specs = []
    for _ in range(int(count)):
        spec = sample_spec(organ_mask, spacing_mm, organ=organ, rng=rng, context=context, **kwargs)
        slices, rendering = render_label(spec, organ_mask, ct_hu=context.ct_hu, device=kwargs.get("device", "auto"))
        context.add_avoid(slices, rendering.label)
        specs.append(spec)
    return specs


@dataclass
class LocalResult:
    """What one tumour changes: the box, its new HU, its label and the voxels it touched."""

    slices: tuple[slice, ...]
    ct_box: np.ndarray
    label_box: np.ndarray
    changed_box: np.ndarray


def _check_inputs(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, spec: TumorSpec) -> None:
    if ct.shape != organ_mask.shape:
        raise InputError(f"CT shape {ct.shape} differs from organ mask shape {organ_mask.shape}")
    if tuple(ct.shape) != tuple(spec.grid_shape):
        raise InputError(f"spec was drawn for a grid of shape {tuple(spec.grid_shape)}, this scan is {tuple(ct.shape)}; "
                         "specs replay only on the scan (grid) they were drawn for")
    if not np.allclose(spacing_mm, spec.spacing_mm, rtol=1e-4, atol=1e-6):
        raise InputError(f"spec was drawn for spacing {tuple(spec.spacing_mm)} mm, this scan has {tuple(spacing_mm)} mm")


def synthesize_local(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, spec: TumorSpec, *,
                     device: str = "auto") -> LocalResult:
    """Apply one spec inside its box only: cost grows with the tumour, not with the scan.

    Parameters
    ----------
    ct : ndarray of float, shape (X, Y, Z)
        Scan in HU (canonical RAS+); not modified.
    organ_mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
    spec : TumorSpec
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU kernel run; every device gives the same result.

    Returns
    -------
    LocalResult
    """
    _check_inputs(ct, organ_mask, spacing_mm, spec)
    generator = get_generator(spec.method, device=device)
    generator.validate(spec)
    slices = _box_for(spec, generator)
    origin = tuple(s.start for s in slices)
    ct_box, label_box, changed_box = generator.apply(ct[slices], organ_mask[slices], spec, origin)
    return LocalResult(slices=slices, ct_box=ct_box, label_box=label_box, changed_box=changed_box)


def synthesize(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, spec: TumorSpec | Sequence[TumorSpec], *,
               device: str = "auto"):
    """Write the tumour(s) described by ``spec`` into a copy of ``ct``; a pure function.

    Parameters
    ----------
    ct : ndarray of float, shape (X, Y, Z)
        Scan in HU, canonical RAS+.
    organ_mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
        Voxel size in mm; must match the spec's.
    spec : TumorSpec or sequence of TumorSpec
        One tumour, or several applied in order.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU kernel run; every device gives the same result.

    Returns
    -------
    ct_out : ndarray of float32, shape (X, Y, Z)
        The scan with the tumour(s), as float32 HU (the in-memory contract); voxels outside the
        tumours' blend zones equal ``ct`` cast to float32. To keep a file's own bytes, re-encode
        only the changed voxels (see :func:`tumorsyn.io.write_ct_like`).
    tumor : ndarray of uint8, shape (X, Y, Z)
        1 where the tumour is visible (necrotic core included), else 0.
    """
    specs = [spec] if isinstance(spec, TumorSpec) else list(spec)
    ct_out = np.array(ct, dtype=np.float32, copy=True)
    organ_mask = np.asarray(organ_mask, dtype=bool)
    tumor = np.zeros(ct_out.shape, dtype=np.uint8)
    for group in batch_groups(specs, device):
        for result in synthesize_local_batch(ct_out, organ_mask, spacing_mm, group, device=device):
            ct_out[result.slices] = result.ct_box
            tumor[result.slices] |= result.label_box.astype(np.uint8)
    return ct_out, tumor


def _overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))


def batch_groups(specs: Sequence[TumorSpec], device: str = "auto") -> list[list[TumorSpec]]:
    """Consecutive specs that may be applied together: one batch key, boxes that do not touch.

    Tumours whose boxes are disjoint do not see each other, so applying them together equals
    applying them in order; a spec whose box meets an earlier one of its group starts a new group.
    """
    groups: list[list[TumorSpec]] = []
    boxes: list[tuple[slice, ...]] = []
    key = None
    for one in specs:
        generator = get_generator(one.method, device=device)
        this_key = generator.batch_key(one)
        box = _box_for(one, generator)
        if groups and this_key is not None and this_key == key and not any(_overlap(box, b) for b in boxes):
            groups[-1].append(one)
            boxes.append(box)
        else:
            groups.append([one])
            boxes, key = [box], this_key
    return groups


def _jobs(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, specs: Sequence[TumorSpec], generator):
    """Checked ``(ct_box, organ_box, spec, origin)`` jobs of one scan's specs, with their boxes."""
    jobs, all_slices = [], []
    for one in specs:
        _check_inputs(ct, organ_mask, spacing_mm, one)
        if one.method != specs[0].method:
            raise ConfigError(f"a batch holds one method, got {specs[0].method!r} and {one.method!r}")
        generator.validate(one)
        slices = _box_for(one, generator)
        all_slices.append(slices)
        jobs.append((ct[slices], organ_mask[slices], one, tuple(s.start for s in slices)))
    return jobs, all_slices


def synthesize_local_batch(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, specs: Sequence[TumorSpec], *,
                           device: str = "auto") -> list[LocalResult]:
    """:func:`synthesize_local` for several specs of one generator at once (one GPU batch where it can).

    Every spec is applied to the same ``ct``: give specs whose boxes do not overlap when the
    results are to be written into one scan.
    """
    return synthesize_local_groups([(ct, organ_mask, spacing_mm, specs)], device=device)[0]


def synthesize_local_groups(tasks: Sequence[tuple], *, device: str = "auto") -> list[list[LocalResult]]:
    """:func:`synthesize_local_batch` for groups of specs from several scans, batched across them.

    Parameters
    ----------
    tasks : sequence of (ct, organ_mask, spacing_mm, specs)
        One group per scan (e.g. one per item of a training batch), each as :func:`batch_groups`
        makes them: specs of one batch key whose boxes do not touch.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU kernel run.

    Returns
    -------
    list of list of LocalResult
        Per task, one result per spec, each computed on that task's ``ct``. Groups of different
        scans that share a batch key (one diffusion model and step count) go to the generator in
        one :meth:`~tumorsyn.generators.base.Generator.apply_batch` call: one GPU batch for a
        whole training batch. Groups without a key are applied one spec at a time.
    """
    results: list[list[LocalResult] | None] = [None] * len(tasks)
    buckets: dict = {}
    for t, (ct, organ_mask, spacing_mm, specs) in enumerate(tasks):
        specs = list(specs)
        if not specs:
            results[t] = []
            continue
        generator = get_generator(specs[0].method, device=device)
        jobs, all_slices = _jobs(ct, organ_mask, spacing_mm, specs, generator)
        key = generator.batch_key(specs[0])
        if key is not None and all(generator.batch_key(one) == key for one in specs):
            buckets.setdefault((specs[0].method, key), (generator, []))[1].append((t, jobs, all_slices))
        else:
            results[t] = [LocalResult(slices, *generator.apply(*job)) for job, slices in zip(jobs, all_slices)]
    for generator, members in buckets.values():
        jobs = [job for _, task_jobs, _ in members for job in task_jobs]
        outputs = iter(generator.apply_batch(jobs) if len(jobs) > 1 else [generator.apply(*jobs[0])])
        for t, task_jobs, all_slices in members:
            results[t] = [LocalResult(slices, *next(outputs)) for slices in all_slices]
    return results
