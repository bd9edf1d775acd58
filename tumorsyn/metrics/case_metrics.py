"""The per-case segmentation metrics of ``tumorsyn evaluate``, declared in one place.

Each :class:`CaseMetric` in :data:`CASE_METRICS` is computed for every case by
:func:`tumorsyn.metrics.evaluate_case`, aggregated (n, mean, sd, median, min, max) by
:func:`tumorsyn.metrics.summarize` as ``summary["segmentation"]["<name>_per_case"]``, written to the
case rows of ``report.json`` under its name, printed in ``report.md`` (a line of the segmentation
section and a column of the per-case table), and described in the conventions as
``<name>_<parameter>`` and ``<name>_rule``. The realism descriptors work the same way
(:data:`tumorsyn.metrics.realism.descriptors.DESCRIPTORS`).

Adding a metric is one entry here (plus its tests)::

    register_case_metric(CaseMetric(
        name="hd95_mm", column="HD95 (mm)",
        compute=lambda ref, pred, spacing_mm, params: my_hd95(ref, pred, spacing_mm),
        definition="95th percentile of boundary-to-boundary distances in mm"))

Entries registered at run time reach only this process: ``--workers`` starts fresh processes that
see the entries declared below, so a metric meant for the command line belongs in this file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM, dice, surface_dice

__all__ = ["CaseMetric", "CASE_METRICS", "register_case_metric", "unregister_case_metric", "metric_parameters",
           "case_metric_values", "metric_applies"]

# compute(reference, prediction, spacing_mm, params) -> value; params holds the metric's own parameters.
MetricFunction = Callable[[np.ndarray, np.ndarray, Sequence[float], Mapping[str, float]], "float | None"]


@dataclass(frozen=True)
class CaseMetric:
    """One per-case metric: how to compute it and how the report names and defines it.

    Attributes
    ----------
    name : str
        Key of the value in the case rows and ``<name>_per_case`` in the summary (a Python identifier).
    column : str
        Header of its column in the per-case table of ``report.md``.
    compute : callable
        ``compute(reference, prediction, spacing_mm, params) -> float | None``: boolean masks of shape
        (X, Y, Z) on one grid (organ-restricted when an organ mask is given), voxel size in mm, and the
        metric's parameters. ``None`` or NaN means undefined for this case (left out of the summary).
    definition : str
        One line with units, written to the conventions as ``<name>_rule``.
    tumour_positive_only : bool, optional
        Computed only where the reference holds a lesion (None elsewhere), as Dice (default True).
    parameters : dict of str to float, optional
        Defaults of the metric's parameters, written to the conventions as ``<name>_<parameter>``
        before the rule and passed to ``compute`` as ``params``.
    line : str, optional
        The ``report.md`` line of the summary, a format string over ``mean``, ``median``, ``n``
        (formatted figures) and the parameters; default ``"<column> per case: mean {mean}, median
        {median} (n = {n})"`` (", tumour-free scans included" inside the brackets when it applies to all).
    """

    name: str
    column: str
    compute: MetricFunction
    definition: str
    tumour_positive_only: bool = True
    parameters: Mapping[str, float] = field(default_factory=dict)
    line: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"a case metric name must be a Python identifier, got {self.name!r}")

    def report_line(self, stats: Mapping[str, str], params: Mapping[str, float]) -> str:
        """The summary line of ``report.md`` from formatted ``mean``/``median``/``n`` and the parameters."""
        scope = "" if self.tumour_positive_only else ", tumour-free scans included"
        template = self.line or (self.column + " per case: mean {mean}, median {median} (n = {n}" + scope + ")")
        return template.format(**stats, **params)


def _dice(reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float],
          params: Mapping[str, float]) -> float:
    return dice(reference, prediction)


def _surface_dice(reference: np.ndarray, prediction: np.ndarray, spacing_mm: Sequence[float],
                  params: Mapping[str, float]) -> float:
    return surface_dice(reference, prediction, spacing_mm=spacing_mm, tolerance_mm=params["tolerance_mm"])


# Report order: case-row keys, summary keys, conventions, report.md lines and columns all follow it.
# The texts below predate the registry and are kept word for word (reports are compared byte for byte),
# which is why Dice's rule also states the scope shared by every tumour-positive metric.
CASE_METRICS: dict[str, CaseMetric] = {m.name: m for m in (
    CaseMetric(
        name="dice", column="Dice", compute=_dice,
        definition="per-case Dice and surface Dice on tumour-positive scans only; global Dice pools "
                   "voxel counts of tumour-positive scans; tumour-free scans never enter Dice",
        line="Dice per case: mean {mean}, median {median} (n = {n})"),
    CaseMetric(
        name="surface_dice", column="surface Dice", compute=_surface_dice,
        definition="normalised surface Dice (Nikolov et al. 2021): boundary = mask voxels removed "
                   "by a 6-connected erosion; Euclidean distance between voxel centres in mm; "
                   "correct when <= tolerance (as MONAI compute_surface_dice, use_subvoxels=False)",
        parameters={"tolerance_mm": SURFACE_TOLERANCE_MM},
        line="Surface Dice at {tolerance_mm:g} mm per case: mean {mean}, median {median}"),
)}


def register_case_metric(metric: CaseMetric) -> CaseMetric:
    """Add ``metric`` after the others; its name must be new (unregister first to replace one)."""
    if metric.name in CASE_METRICS:
        raise ValueError(f"a case metric named {metric.name!r} is already registered; "
                         f"call unregister_case_metric({metric.name!r}) first to replace it")
    CASE_METRICS[metric.name] = metric
    return metric


def unregister_case_metric(name: str) -> CaseMetric:
    """Remove the metric called ``name`` and return it."""
    if name not in CASE_METRICS:
        raise ValueError(f"no case metric named {name!r}; registered: {', '.join(CASE_METRICS)}")
    return CASE_METRICS.pop(name)


def metric_parameters(overrides: Mapping[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Each registered metric's parameters: its defaults, replaced by ``overrides``.

    Parameters
    ----------
    overrides : mapping, optional
        Values keyed as in the conventions, ``<name>_<parameter>`` (e.g. ``surface_dice_tolerance_mm``).

    Returns
    -------
    dict
        ``{metric name: {parameter: value}}`` for every registered metric, in registry order.

    Raises
    ------
    ValueError
        An override that names no parameter of a registered metric.
    """
    resolved = {name: {p: float(v) for p, v in m.parameters.items()} for name, m in CASE_METRICS.items()}
    keys = {f"{name}_{p}": (name, p) for name, params in resolved.items() for p in params}
    for key, value in (overrides or {}).items():
        if key not in keys:
            raise ValueError(f"unknown case metric parameter {key!r}; known: {', '.join(keys) or 'none'}")
        name, p = keys[key]
        resolved[name][p] = float(value)
    return resolved


def metric_applies(metric: CaseMetric, has_tumour: bool) -> bool:
    """Whether ``metric`` is computed for (and summarised over) a case with or without a lesion."""
    return has_tumour or not metric.tumour_positive_only


def case_metric_values(reference: np.ndarray, prediction: np.ndarray, *, spacing_mm: Sequence[float],
                       has_tumour: bool, overrides: Mapping[str, float] | None = None) -> dict[str, float | None]:
    """Every registered metric of one case, in registry order.

    Parameters
    ----------
    reference, prediction : ndarray of bool, shape (X, Y, Z)
        Masks on one grid (already cut to the organ where one is given).
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    has_tumour : bool
        The reference holds at least one lesion.
    overrides : mapping, optional
        Parameter values, see :func:`metric_parameters`.

    Returns
    -------
    dict
        ``{name: value}``; None where the metric does not apply or is undefined (NaN).
    """
    params = metric_parameters(overrides)
    values: dict[str, float | None] = {}
    for name, metric in CASE_METRICS.items():
        value = metric.compute(reference, prediction, spacing_mm, params[name]) if metric_applies(metric, has_tumour) else None
        # Undefined (NaN) is stored as None: JSON has no NaN, and the summary skips it either way.
        values[name] = None if value is None or math.isnan(value) else value
    return values
