"""Size bins of lesions, and per-component size measurements.

Bins follow ANCHORS.md by default (size convention ``max-diameter``): maximum 3D diameter, ``< 10 mm``,
``10-20 mm``, ``> 20 mm``. A diameter that equals an inner edge goes to the bin above it (``10.0`` is in
``10-20 mm``), except the last edge, which stays in the bin below so that the top bin is a strict
``> 20 mm`` (``20.0`` is in ``10-20 mm``). Published small-tumour conventions are selectable by name
(:data:`SIZE_CONVENTIONS`): ``radius`` (equivalent-sphere radius, [0-5), [5-10), [10-15), [15-20),
>= 20 mm, as in the SyntheticTumors evaluation) and ``diameter`` (the same bins as equivalent-sphere
diameters). A size within :data:`EDGE_TOLERANCE_MM` of an edge counts as on the edge, so that float
rounding of the spacing (25 voxels x 0.8 mm = 20.000000000000004) never moves a lesion across it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
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
    "EDGE_TOLERANCE_MM",
    "SizeConvention",
    "SIZE_CONVENTIONS",
    "SIZE_MEASURES",
    "size_convention",
]

DEFAULT_BINS_MM: tuple[float, ...] = (10.0, 20.0)
# "early/small" tumours: maximum diameter strictly below 2 cm.
EARLY_MAX_DIAMETER_MM = 20.0
# Sizes this close to a bin edge (mm) are on the edge: far below any voxel, far above float rounding.
EDGE_TOLERANCE_MM = 1e-6


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


def size_bin_labels(bins_mm: Sequence[float] = DEFAULT_BINS_MM, *, top_closed: bool = False) -> list[str]:
    """Human labels of the bins, e.g. ``['<10 mm', '10-20 mm', '>20 mm']``.

    With a single edge ``e``, or with ``top_closed``, the top bin is ``>=e mm``.
    """
    edges = check_bins_mm(bins_mm)
    if len(edges) == 1:
        return [f"<{_fmt(edges[0])} mm", f">={_fmt(edges[0])} mm"]
    inner = [f"{_fmt(a)}-{_fmt(b)} mm" for a, b in zip(edges, edges[1:])]
    return [f"<{_fmt(edges[0])} mm", *inner, f"{'>=' if top_closed else '>'}{_fmt(edges[-1])} mm"]


def size_bin_index(diameter_mm: float, bins_mm: Sequence[float] = DEFAULT_BINS_MM, *, top_closed: bool = False) -> int:
    """Index of the bin holding ``diameter_mm`` (see the module docstring for edge values).

    Parameters
    ----------
    diameter_mm : float
        The size in mm (maximum 3D diameter by default; any measure of a :class:`SizeConvention`).
    bins_mm : sequence of float
        Increasing bin edges in mm.
    top_closed : bool, optional
        True: half-open bins throughout, so a size equal to the last edge goes to the top bin
        (``>= 20 mm``). False (ANCHORS.md): it stays below, the top bin being a strict ``> 20 mm``.

    Returns
    -------
    int
        0 .. len(bins_mm).

    Examples
    --------
    >>> [size_bin_index(d) for d in (9.99, 10.0, 20.0, 20.000000000000004, 20.01)]
    [0, 1, 1, 1, 2]
    >>> size_bin_index(20.0, (5, 10, 15, 20), top_closed=True)
    4
    """
    edges = check_bins_mm(bins_mm)
    d = float(diameter_mm)
    # The one place sizes meet edges: a size within the tolerance of an edge is that edge (why: the
    # spacing's float rounding must not decide the bin of a lesion that lesions.csv prints as 20.0).
    nearest = min(edges, key=lambda e: abs(e - d))
    if abs(nearest - d) <= EDGE_TOLERANCE_MM:
        d = nearest
    index = int(np.searchsorted(edges, d, side="right"))  # edge values go to the bin above ...
    if len(edges) > 1 and d == edges[-1] and not top_closed:
        index = len(edges) - 1  # ... except the top edge, so that the last bin is strict '>'
    return index


@dataclass(frozen=True)
class SizeConvention:
    """A named way to bin lesions by size: which measure, which edges, and the rule at the top edge.

    Attributes
    ----------
    name : str
        Name on the command line (``--size-convention``) and in every report.
    measure : {'max_diameter_mm', 'equivalent_diameter_mm', 'equivalent_radius_mm'}
        The lesion size that is binned (mm).
    bins_mm : tuple of float
        Increasing edges in mm.
    top_closed : bool
        See :func:`size_bin_index`.
    description : str
        One sentence, with its source, for the report's conventions.
    """

    name: str
    measure: str
    bins_mm: tuple[float, ...]
    top_closed: bool
    description: str

    def labels(self) -> list[str]:
        return size_bin_labels(self.bins_mm, top_closed=self.top_closed)

    def size_of(self, size: dict) -> float:
        """The binned measure (mm) of a :func:`component_sizes` entry."""
        if self.measure == "equivalent_radius_mm":
            return size["equivalent_diameter_mm"] / 2.0
        return size[self.measure]

    def label_of(self, size: dict) -> str:
        """Bin label of a :func:`component_sizes` entry."""
        return self.labels()[size_bin_index(self.size_of(size), self.bins_mm, top_closed=self.top_closed)]


SIZE_MEASURES: dict[str, str] = {
    "max_diameter_mm": "maximum 3D diameter",
    "equivalent_diameter_mm": "equivalent-sphere diameter",  # 2*(3V/(4*pi))^(1/3)
    "equivalent_radius_mm": "equivalent-sphere radius",  # (3V/(4*pi))^(1/3)
}

SIZE_CONVENTIONS: dict[str, SizeConvention] = {c.name: c for c in (
    SizeConvention("max-diameter", "max_diameter_mm", DEFAULT_BINS_MM, False,
                   "maximum 3D diameter, < 10, 10-20, > 20 mm (ANCHORS.md; a size equal to the top edge stays below it)"),
    SizeConvention("radius", "equivalent_radius_mm", (5.0, 10.0, 15.0, 20.0), True,
                   "equivalent-sphere radius (3V/(4*pi))^(1/3), half-open bins [0-5), [5-10), [10-15), [15-20), >= 20 mm "
                   "(the SyntheticTumors evaluation, Hu et al., CVPR 2023)"),
    SizeConvention("diameter", "equivalent_diameter_mm", (10.0, 20.0, 30.0, 40.0), True,
                   "equivalent-sphere diameter, half-open bins [0-10), [10-20), [20-30), [30-40), >= 40 mm "
                   "(the radius bins read as diameters: a lesion falls in the same bin under both)"),
)}


def size_convention(name: str = "max-diameter", bins_mm: Sequence[float] | None = None) -> SizeConvention:
    """The size convention called ``name``, its edges replaced by ``bins_mm`` when given.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones) or bad edges.
    """
    if name not in SIZE_CONVENTIONS:
        raise ValueError(f"unknown size convention {name!r}; choose one of {', '.join(SIZE_CONVENTIONS)}")
    chosen = SIZE_CONVENTIONS[name]
    return chosen if bins_mm is None else replace(chosen, bins_mm=check_bins_mm(bins_mm))


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
