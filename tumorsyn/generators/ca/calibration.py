"""Steps -> diameter: the measured growth curve that turns a size in millimetres into a step count.

Growth is measured in growth voxels (:func:`growth_voxel_mm`: the grid's finest spacing, at most 1 mm for new
specs): the direction weights of
:func:`~tumorsyn.generators.ca.model.direction_weights` make a cell advance the same mean distance
in millimetres along every direction, scaled to ``min(spacing_mm)``. So one table serves every
grid: ``diameter_mm(steps) = growth_voxel_mm * D(steps * speed)``, where ``D`` is the visible
label's equivalent-sphere diameter in finest voxels, measured by
:func:`~tumorsyn.generators.ca.trajectory.measure_table` (a growth trajectory) on a
homogeneous isotropic organ with the reference parameters, averaged over seeds, and ``speed``
corrects for a spec's own invasion and proliferation probabilities. The table gives the first
guess; :func:`tumorsyn.sample_spec` then refines the step count on the real organ (``rescale``)
until the written tumour has the requested size.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TABLE_STEPS", "TABLE_DIAMETER_VOX", "MAX_STEPS", "REFERENCE", "growth_voxel_mm", "diameter_vox",
           "steps_for_diameter", "rescale_steps", "reach_mm", "necrosis_schedule"]

MAX_STEPS = 600

# Reference parameters of the measurement (mid-range draws of CAGenerator.sample_params).
REFERENCE = {"mid": 0.725, "p_proliferate": 0.8}

# Measured by trajectory.measure_table(): steps -> equivalent diameter of the label, in finest voxels
# (median over seeds 0-3, 1 mm isotropic, homogeneous MID tissue, REFERENCE parameters):
# measure_table(200, seeds=range(4), every=10). About 0.3 finest voxels of diameter per step
# once the clone has filled its first voxels (~15 steps).
TABLE_STEPS = np.arange(0.0, 201.0, 10.0)
TABLE_DIAMETER_VOX = np.array([0.0, 0.0, 2.48, 5.21, 8.18, 11.11, 13.96, 16.8, 19.67, 22.67, 25.66, 28.69, 31.74,
                               34.75, 37.8, 40.83, 43.82, 46.84, 49.88, 52.95, 56.02])


def growth_voxel_mm(spacing_mm, params: dict | None = None) -> float:
    """Side (mm) of the automaton's growth voxel: the scan's finest spacing, at most ``params["growth_mm"]``.

    Specs drawn before ``growth_mm`` existed grow on the finest spacing whatever it is.
    """
    finest = float(min(spacing_mm))
    cap = (params or {}).get("growth_mm")
    return min(finest, float(cap)) if cap else finest


def _speed(params: dict | None) -> float:
    """Growth speed of a spec relative to the reference (front speed ~ acceptance x division rate)."""
    if not params:
        return 1.0
    mid = float(params.get("invasion", {}).get("mid", REFERENCE["mid"]))
    prolif = float(params.get("p_proliferate", REFERENCE["p_proliferate"]))
    return (mid / REFERENCE["mid"]) ** 0.7 * (prolif / REFERENCE["p_proliferate"]) ** 0.5


def _extrapolate_slope() -> float:
    """Diameter gained per step (finest voxels) at the end of the table."""
    n = len(TABLE_STEPS)
    k = max(n - 6, 0)
    return float((TABLE_DIAMETER_VOX[-1] - TABLE_DIAMETER_VOX[k]) / max(TABLE_STEPS[-1] - TABLE_STEPS[k], 1.0))


def diameter_vox(steps: float) -> float:
    """Expected label diameter (finest voxels) after ``steps`` reference steps (linear beyond the table)."""
    if steps <= TABLE_STEPS[-1]:
        return float(np.interp(steps, TABLE_STEPS, TABLE_DIAMETER_VOX))
    return float(TABLE_DIAMETER_VOX[-1] + _extrapolate_slope() * (steps - TABLE_STEPS[-1]))


def _steps_for_vox(diameter: float) -> float:
    if diameter <= TABLE_DIAMETER_VOX[-1]:
        return float(np.interp(diameter, TABLE_DIAMETER_VOX, TABLE_STEPS))
    return float(TABLE_STEPS[-1] + (diameter - TABLE_DIAMETER_VOX[-1]) / max(_extrapolate_slope(), 1e-6))


def steps_for_diameter(size_mm: float, spacing_mm, params: dict | None = None) -> int:
    """Step count whose tumour has an expected equivalent diameter of ``size_mm`` (mm) on this grid."""
    steps = _steps_for_vox(float(size_mm) / growth_voxel_mm(spacing_mm, params)) / _speed(params)
    return int(min(max(round(steps), 1), MAX_STEPS))


def expected_diameter_mm(steps: int, spacing_mm, params: dict | None = None) -> float:
    """Expected equivalent diameter (mm) of the label after ``steps`` steps on this grid."""
    return growth_voxel_mm(spacing_mm, params) * diameter_vox(steps * _speed(params))


def rescale_steps(steps: int, factor: float, spacing_mm, params: dict | None = None) -> int:
    """Steps whose expected diameter is ``factor`` times that of ``steps``; moves at least one step."""
    target = expected_diameter_mm(steps, spacing_mm, params) * float(factor)
    new = steps_for_diameter(max(target, 1e-3), spacing_mm, params)
    if factor > 1.0:
        new = max(new, steps + 1)
    elif factor < 1.0:
        new = min(new, steps - 1)
    return int(min(max(new, 1), MAX_STEPS))


def reach_mm(steps: int, spacing_mm, params: dict | None = None) -> float:
    """Half-width (mm) of a box that holds the tumour after ``steps``: generous for lobulated growth."""
    radius = 0.5 * expected_diameter_mm(steps, spacing_mm, params)
    return 1.6 * radius + 2.0 * float(max(spacing_mm)) + 1.0


def necrosis_schedule(necrosis: dict, spacing_mm, params: dict) -> tuple[int, int]:
    """``(necrosis_step, necrosis_age)``: when the core may die, and how long saturated a cell must be.

    Necrosis starts once the expected diameter reaches ``start_mm``; a viable rim of ``rim_mm``
    survives: a cell saturated for ``rim_mm / front speed`` steps lies about that deep.
    """
    start = steps_for_diameter(float(necrosis["start_mm"]), spacing_mm, params)
    front_mm_per_step = 0.5 * growth_voxel_mm(spacing_mm, params) * max(_extrapolate_slope(), 1e-3) * _speed(params)
    age = int(min(max(round(float(necrosis["rim_mm"]) / front_mm_per_step), 1), 255))
    return start, age
