"""Keep a synthetic case's host's own lesions out of view.

A synthetic case is a host scan with a tumour written into it; the host may hold real lesions of
its own (any label value the run's label preset, or ``--lesion-label``, marks as lesion). A reader
who sees one next to the case would judge a real tumour, or learn that this scan also holds real
ones. So the view (the in-plane field of view x the axial stack's depth, the box every rendered
image lies in) must hold no host lesion: its centre is moved, within the room the synthetic lesion
leaves, to the nearest place whose view clears every host lesion's box by ``HOST_MARGIN_MM``; a case
with no such place is left out (and counted).

Host lesions are taken as their bounding boxes (overlapping ones merged), which errs on the safe
side: a view may be refused that would only have shown the empty corner of a box.
"""
from __future__ import annotations

import itertools

import numpy as np

__all__ = ["HOST_MARGIN_MM", "view_half_mm", "clear_centre_mm", "merge_boxes"]

# Space between the view's edge and a host lesion's box: a lesion just outside the field of view
# must not show as a partial-volume smudge on the edge.
HOST_MARGIN_MM = 5.0


def view_half_mm(settings) -> np.ndarray:
    """Half extent (mm) of the view along canonical X, Y, Z; infinite in plane for a whole-slice view.

    ``settings.fov_mm`` None (or 'whole') means the whole axial slice is shown.
    """
    fov = getattr(settings, "fov_mm", None)
    in_plane = np.inf if fov is None or isinstance(fov, str) else float(fov) / 2.0
    return np.array([in_plane, in_plane, float(settings.depth_mm) / 2.0])


def merge_boxes(boxes, margin_mm: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes grown by ``margin_mm``; boxes that then overlap are replaced by their common bounding box."""
    merged = [(np.asarray(lo, float) - margin_mm, np.asarray(hi, float) + margin_mm) for lo, hi in boxes]
    changed = True
    while changed:
        changed = False
        for i, j in itertools.combinations(range(len(merged)), 2):
            (alo, ahi), (blo, bhi) = merged[i], merged[j]
            if np.all(alo < bhi) and np.all(blo < ahi):
                merged[i] = (np.minimum(alo, blo), np.maximum(ahi, bhi))
                del merged[j]
                changed = True
                break
    return merged


def clear_centre_mm(preferred_mm, lesion_mm, diameter_mm: float, extent_mm, half_mm, *, margin_mm: float,
                    host_boxes, host_margin_mm: float = HOST_MARGIN_MM) -> np.ndarray | None:
    """The view centre nearest ``preferred_mm`` whose view holds no host lesion, or None.

    Parameters
    ----------
    preferred_mm : array of 3 float
        Where the crop would be centred (the lesion plus its seeded jitter), mm.
    lesion_mm : array of 3 float
        Centre of the synthetic lesion, mm; it stays in view with ``margin_mm`` to spare.
    diameter_mm : float
        Its maximum 3D diameter.
    extent_mm : array of 3 float
        Position of the scan's last voxel centre (the first is at 0), mm: where the scan is larger
        than the view, the view stays inside it (air padding would be a tell).
    half_mm : array of 3 float
        Half extent of the view (:func:`view_half_mm`).
    margin_mm : float
        Room kept between the synthetic lesion and the view's edge.
    host_boxes : sequence of (low_mm, high_mm)
        The host's own lesions (:func:`reader_study.cases.host_lesion_boxes`).
    host_margin_mm : float
        Room kept between the view's edge and a host lesion's box.

    Returns
    -------
    ndarray or None
        ``preferred_mm`` itself when its view is clear; None when no view that shows the synthetic
        lesion is clear.

    Notes
    -----
    A view centred at ``c`` overlaps a box ``[lo, hi]`` when ``lo - half < c < hi + half`` on every
    axis: each host lesion forbids an open box of centres. The nearest allowed centre has, on each
    axis, either the preferred coordinate or an edge of an allowed range or of a forbidden box; all
    such points are tried.
    """
    preferred = np.asarray(preferred_mm, dtype=float)
    lesion = np.asarray(lesion_mm, dtype=float)
    half = np.asarray(half_mm, dtype=float)
    extent = np.asarray(extent_mm, dtype=float)
    boxes = merge_boxes(host_boxes, host_margin_mm)
    if not boxes:
        return preferred
    room = np.maximum(0.0, half - diameter_mm / 2.0 - margin_mm)
    low, high = lesion - room, lesion + room
    # Inside the scan where the scan is larger than the view (and the lesion allows it).
    fits = extent >= 2 * half
    inner_low, inner_high = np.maximum(low, half), np.minimum(high, extent - half)
    use = fits & (inner_low <= inner_high)
    low, high = np.where(use, inner_low, low), np.where(use, inner_high, high)
    forbidden_low = np.array([lo for lo, _ in boxes]) - half
    forbidden_high = np.array([hi for _, hi in boxes]) + half
    candidates = []
    for axis in range(3):
        values = {float(np.clip(preferred[axis], low[axis], high[axis]))}
        values |= {float(v) for v in (low[axis], high[axis]) if np.isfinite(v)}
        values |= {float(v) for v in (*forbidden_low[:, axis], *forbidden_high[:, axis])
                   if np.isfinite(v) and low[axis] <= v <= high[axis]}
        candidates.append(np.array(sorted(values)))
    grid = np.stack(np.meshgrid(*candidates, indexing="ij"), axis=-1).reshape(-1, 3)
    blocked = np.zeros(len(grid), dtype=bool)
    for lo, hi in zip(forbidden_low, forbidden_high):
        blocked |= np.all((grid > lo) & (grid < hi), axis=1)
    free = grid[~blocked]
    if free.size == 0:
        return None
    # Nearest to the preferred centre; ties go to the first in sorted order (deterministic).
    distance = np.linalg.norm(np.where(np.isfinite(half), free - preferred, 0.0), axis=1)
    best = free[int(np.argmin(distance))]
    return np.where(np.isfinite(half), best, preferred)
