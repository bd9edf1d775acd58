"""Growth trajectories: the same tumour written at several step counts (figures, reader studies, calibration).

Built on the automaton's public steps (:meth:`CAGenerator.grow` with ``save_steps``, then
:meth:`CAGenerator.compose` or :meth:`CAGenerator.label` per saved step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumorsyn.errors import ConfigError
from tumorsyn.generators.ca.calibration import REFERENCE, TABLE_STEPS, diameter_vox
from tumorsyn.generators.ca.generator import CAGenerator
from tumorsyn.lesion_size import equivalent_diameter_mm
from tumorsyn.spec import TumorSpec, check_scan

__all__ = ["TrajectoryFrame", "grow_trajectory", "measure_table"]


@dataclass
class TrajectoryFrame:
    """One saved step of a growth trajectory.

    Attributes
    ----------
    step : int
        Automaton steps grown.
    ct : ndarray of float32, shape (X, Y, Z)
        The whole scan with the tumour as it is after ``step`` steps (HU).
    tumor : ndarray of uint8, shape (X, Y, Z)
        1 where that tumour is visible (necrotic core included).
    diameter_mm : float
        Equivalent-sphere diameter of ``tumor``, in mm.
    """

    step: int
    ct: np.ndarray
    tumor: np.ndarray
    diameter_mm: float


def grow_trajectory(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, spec: TumorSpec, *,
                    save_steps=(10, 20, 40), device="auto", generator: CAGenerator | None = None
                    ) -> list[TrajectoryFrame]:
    """Write the tumour of a ``method="ca"`` spec at each of ``save_steps`` automaton steps.

    One growth run, in a box large enough for the largest step, records every requested step.
    The automaton's hash counts voxels from the seed, not from the box, so the tumour's shape at
    ``spec.params["steps"]`` is the one :func:`tumorsyn.synthesize` grows (unless that tumour
    touched its own smaller box); the texture field is drawn for the trajectory's box, so HU
    values inside the tumour differ slightly from ``synthesize``'s.

    Parameters
    ----------
    ct : ndarray of float, shape (X, Y, Z)
        Scan in HU (canonical RAS+); not modified.
    organ_mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
        Voxel size in mm; must match the spec's.
    spec : TumorSpec
        A spec drawn with ``method="ca"``.
    save_steps : sequence of int
        Step counts to write (positive integers, any order; may exceed the spec's own steps).
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where the automaton runs when no ``generator`` is given.
    generator : CAGenerator, optional
        A generator that holds its device (``CAGenerator().to("cuda")``); used instead of ``device``.

    Returns
    -------
    list of TrajectoryFrame
        One frame per distinct step, in increasing order.

    Examples
    --------
    >>> frames = grow_trajectory(ct, organ, spacing, spec, save_steps=(10, 20, 40))  # doctest: +SKIP
    >>> [(f.step, round(f.diameter_mm, 1)) for f in frames]                           # doctest: +SKIP
    """
    if spec.method != "ca":
        raise ConfigError(f"growth trajectories need a method='ca' spec, got method={spec.method!r}")
    try:
        steps = sorted({int(s) for s in save_steps})
    except (TypeError, ValueError):
        raise ConfigError(f"save_steps must be integers, got {save_steps!r}") from None
    if not steps or steps[0] < 1:
        raise ConfigError(f"save_steps must be positive integers, got {tuple(save_steps)!r}")
    check_scan(spec, ct, organ_mask, spacing_mm)
    generator = generator if generator is not None else CAGenerator(device=device)
    generator.validate(spec)
    organ_mask = np.asarray(organ_mask, dtype=bool)
    # The box must hold the largest tumour asked for.
    big = spec.with_params(params={**spec.params, "steps": max(steps[-1], int(spec.params["steps"]))})
    slices = generator.box(big)
    origin = tuple(s.start for s in slices)
    ct_box = np.asarray(ct[slices], dtype=np.float32)
    organ_box = organ_mask[slices]
    result, _ = generator.grow(spec, organ_box, origin, ct_box=ct_box, save_steps=steps)
    frames = []
    for step in steps:
        out_box, label_box, _ = generator.compose(ct_box, organ_box, spec, result.snapshots[step][1:-1, 1:-1, 1:-1])
        ct_out = np.array(ct, dtype=np.float32, copy=True)
        ct_out[slices] = out_box
        tumor = np.zeros(ct_out.shape, np.uint8)
        tumor[slices] = label_box
        frames.append(TrajectoryFrame(step=step, ct=ct_out, tumor=tumor,
                                      diameter_mm=equivalent_diameter_mm(label_box, spec.spacing_mm)))
    return frames


def measure_table(max_steps: int = 200, *, seeds=range(8), every: int = 5, device="cpu"):
    """Measure the automaton's steps -> diameter table (finest voxels) with the generator's own label rule.

    Grows reference tumours in a homogeneous 1 mm organ and measures the label's equivalent
    diameter every ``every`` steps. Returns ``(steps, median_diameter_vox)``; the numbers stored
    in :mod:`~tumorsyn.generators.ca.calibration` came from ``measure_table()``.
    """
    marks = list(range(0, max_steps + 1, every))[1:]
    half = int(0.5 * diameter_vox(max_steps) * 1.4) + 8 if TABLE_STEPS[-1] >= max_steps else max_steps // 2 + 8
    n = 2 * half + 1
    organ = np.ones((n, n, n), bool)
    generator = CAGenerator(device=device)
    rows = []
    for seed in seeds:
        params = {"capacity": 10, "invasion": {"low": 0.9, "mid": REFERENCE["mid"], "high": 0.5, "vessel": 0.08,
                                               "outside": 0.4},
                  "p_proliferate": REFERENCE["p_proliferate"], "yield_pushes": 10, "steps": max_steps,
                  "delta_hu": -40.0, "edge_mm": 0.65, "texture_scale_mm": 2.0, "texture_amount": 0.2,
                  "necrosis": None, "capsule": None}
        spec = TumorSpec(method="ca", organ="liver", seed=int(seed), center_vox=(half, half, half), size_mm=10.0,
                         spacing_mm=(1.0, 1.0, 1.0), grid_shape=organ.shape, organ_mean_hu=100.0, organ_std_hu=15.0,
                         params=params)
        result, _ = generator.grow(spec, organ, (0, 0, 0), save_steps=marks)
        rows.append([equivalent_diameter_mm(generator.label(spec, result.snapshots[mark][1:-1, 1:-1, 1:-1], organ),
                                            (1.0, 1.0, 1.0)) for mark in marks])
    return np.array([0] + marks, dtype=float), np.concatenate([[0.0], np.median(np.array(rows), axis=0)])
