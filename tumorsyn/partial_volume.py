"""Partial volume: the blur a voxel adds when content made on a finer grid is written into it.

A voxel integrates over its extent, a box of variance ``side^2 / 12``. Content made on voxels of
``from_mm`` and written into larger voxels of ``to_mm`` lacks ``(to^2 - from^2) / 12`` mm^2 of that
variance per axis. A Gaussian of that variance stands in for the box. The diffusion generator uses it
for a model crop written into a coarser scan; the CA generator uses it for a population grown on voxels
finer than the scan's.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["partial_volume_sigma"]


def partial_volume_sigma(from_mm: Sequence[float], to_mm: Sequence[float]) -> list[float]:
    """Gaussian SD (voxels of ``from_mm``) per axis that turns voxels of ``from_mm`` into voxels of ``to_mm``.

    Nothing is added where ``to`` is not larger (the anti-aliasing of a downsampling).

    Parameters
    ----------
    from_mm, to_mm : sequence of 3 float
        Voxel sides (mm) of the grid the content was made on, and of the grid it is written into.
    """
    return [float(np.sqrt(max(float(t) ** 2 - float(f) ** 2, 0.0) / 12.0) / float(f)) for f, t in zip(from_mm, to_mm)]
