"""Size bins of lesions by maximum 3D diameter, and per-component size measurements.

Bins follow ANCHORS.md: ``< 10 mm``, ``10-20 mm``, ``> 20 mm`` by default. A diameter that equals an
inner edge goes to the bin above it (``10.0`` is in ``10-20 mm``), except the last edge, which stays in
the bin below so that the top bin is a strict ``> 20 mm`` (``20.0`` is in ``10-20 mm``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from tumorsyn.lesion_size import equivalent_diameter_mm, max_diameter_mm

__all__ = [
    "DEFAULT_BINS_MM",
    "EARLY_MAX_DIAMETER_MM",
    "check_bins_mm",
    "size_bin_labels",
    "size_bin_index",
    "is_early",
    "component_sizes",
]

DEFAULT_BINS_MM: tuple[float, ...] = (10.0, 20.0)
# "early/small" tumours: maximum diameter strictly below 2 cm.
EARLY_MAX_DIAMETER_MM = 20.0


def check_bins_mm(bins_mm: Sequence[float]) -> tuple[float, ...]:
    """Validate bin edges (mm): at least one, finite, positive and strictly increasing.

    Raises
    ------
    ValueError
        Naming the bad edges.
    """
    edges = tuple(float(b) for b in bins_mm)
    if not edges:
        raise ValueError("size bins need at least one edge in mm, e.g. 10,20")
    if not all(math.isfinite(e) and e > 0 for e in edges):
        raise ValueError(f"size bin edges {edges} must be finite and > 0 mm")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"size bin edges {edges} must be strictly increasing")
    return edges


def _fmt(value: float) -> str:
    return f"{value:g}"


def size_bin_labels(bins_mm: Sequence[float] = DEFAULT_BINS_MM) -> list[str]:
    """Human labels of the bins, e.g. ``['<10 mm', '10-20 mm', '>20 mm']``.

    With a single edge ``e`` the bins are ``<e mm`` and ``>=e mm``.
    """
    edges = check_bins_mm(bins_mm)
    if len(edges) == 1:
        return [f"<{_fmt(edges[0])} mm", f">={_fmt(edges[0])} mm"]
    inner = [f"{_fmt(a)}-{_fmt(b)} mm" for a, b in zip(edges, edges[1:])]
    return [f"<{_fmt(edges[0])} mm", *inner, f">{_fmt(edges[-1])} mm"]


def size_bin_index(diameter_mm: float, bins_mm: Sequence[float] = DEFAULT_BINS_MM) -> int:
    """Index of the bin holding ``diameter_mm`` (see the module docstring for edge values).

    Parameters
    ----------
    diameter_mm : float
        Maximum 3D diameter in mm.
    bins_mm : sequence of float
        Increasing bin edges in mm.

    Returns
    -------
    int
        0 .. len(bins_mm).

    Examples
    --------
    >>> [size_bin_index(d) for d in (9.99, 10.0, 20.0, 20.01)]
    [0, 1, 1, 2]
    """
    edges = check_bins_mm(bins_mm)
    d = float(diameter_mm)
    index = int(np.searchsorted(edges, d, side="right"))  # edge values go to the bin above ...
    if len(edges) > 1 and d == edges[-1]:
        index = len(edges) - 1  # ... except the top edge, so that the last bin is strict '>'
    return index


def is_early(diameter_mm: float) -> bool:
    """True for an "early/small" lesion: maximum diameter < 20 mm."""
    return float(diameter_mm) < EARLY_MAX_DIAMETER_MM


def component_sizes(labels: np.ndarray, count: int, *, spacing_mm: Sequence[float]) -> list[dict]:
    """Voxel count, volume and diameters of each labelled component.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Components numbered 1..count (0 = background).
    count : int
        Number of components.
    spacing_mm : sequence of 3 float
        Voxel size in mm.

    Returns
    -------
    list of dict
        One per component, in label order, with ``voxels``, ``volume_mm3``,
        ``max_diameter_mm``, ``equivalent_diameter_mm``, ``centroid_vox`` (x, y, z voxel index) and
        ``box`` (tuple of slices).
    """
    if count == 0:
        return []
    voxel_mm3 = float(np.prod([float(s) for s in spacing_mm]))
    boxes = ndimage.find_objects(labels, max_label=count)
    out = []
    for index, box in enumerate(boxes, start=1):
        # Crop first: measuring on the full grid would cost a full-volume pass per lesion.
        crop = labels[box] == index
        voxels = int(np.count_nonzero(crop))
        centre = np.argwhere(crop).mean(axis=0) + np.array([s.start for s in box])
        out.append({
            "voxels": voxels,
            "volume_mm3": voxels * voxel_mm3,
            "max_diameter_mm": max_diameter_mm(crop, spacing_mm),
            "equivalent_diameter_mm": equivalent_diameter_mm(crop, spacing_mm),
            "centroid_vox": tuple(float(c) for c in centre),
            "box": box,
        })
    return out
