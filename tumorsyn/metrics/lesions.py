"""Reference lesions, predicted components, and which of them match.

A lesion is a 26-connected component of the reference tumour mask; a predicted component is a
26-connected component of the (binary) prediction. A pair (lesion r, component p) matches under:

- ``any``: they share at least one voxel;
- ``iou0.5``: their intersection over union is > 0.5;
- ``dice0.1``: their Dice is > 0.1;
- ``centroid``: the centre of mass of p, rounded to the nearest voxel, lies in r;
- ``picai``: picai_eval's one-to-one matching (:func:`picai_assignment`): pairs with IoU >= 0.1 are
  assigned so that the most lesions are matched, then the largest total IoU; each lesion gets at most
  one component and each component at most one lesion.

A lesion is detected when it matches at least one counted component; a counted component (volume
>= ``min_volume_mm3``) that matches no lesion is a false positive. Components below the minimum volume
are ignored: they neither detect a lesion nor count as false positives. Under ``picai``, a component
that overlaps a lesion at IoU >= 0.1 but was not assigned to it is ignored too (as picai_eval does by
default), with ``ignored`` saying why.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from tumorsyn.lesion_size import label_lesions
from tumorsyn.metrics.sizes import SizeConvention, component_sizes, size_convention
from tumorsyn.placement import bounding_box

__all__ = ["MATCH_CRITERIA", "PICAI_MIN_IOU", "Lesion", "LesionMatch", "match_lesions", "picai_iou",
           "picai_assignment"]

# picai_eval's default min_overlap: a candidate detects a lesion at IoU >= 0.1.
PICAI_MIN_IOU = 0.1
# picai_eval adds this to numerator and denominator of every IoU (so 0/0 is 1, and x/10x lands just above 0.1).
_PICAI_IOU_EPSILON = 1e-8

MATCH_CRITERIA: dict[str, str] = {
    "any": "a predicted component shares at least one voxel with the reference lesion",
    "iou0.5": "intersection over union of the reference lesion and one predicted component > 0.5",
    "dice0.1": "Dice of the reference lesion and one predicted component > 0.1",
    "centroid": "the centre of mass of a predicted component, rounded to the nearest voxel, lies inside the reference lesion",
    "picai": "picai_eval's one-to-one matching: IoU (as picai_eval computes it, (shared + 1e-8) / (union + 1e-8)) "
             ">= 0.1, each lesion assigned at most one candidate and each candidate at most one lesion, "
             "maximising first the number of matched lesions and then their total IoU (scipy "
             "linear_sum_assignment, as picai_eval); a candidate with IoU >= 0.1 that was not assigned is "
             "neither a true nor a false positive",
}


@dataclass
class Lesion:
    """One reference lesion or one predicted component (a row of ``lesions.csv``).

    Attributes
    ----------
    kind : {'reference', 'predicted'}
    lesion_id : int
        Component number (1-based) in its own mask.
    voxels : int
    volume_mm3 : float
    max_diameter_mm : float
        Maximum 3D diameter (marching-cubes surface), mm.
    equivalent_diameter_mm : float
        Diameter of the sphere of equal volume, mm.
    size_bin : str
        Bin of ``max_diameter_mm``.
    centroid_vox : tuple of float
        Centre of mass, canonical (X, Y, Z) voxel index.
    matched : bool
        Reference: detected. Predicted: true positive (matches a lesion).
    counted : bool
        Predicted: volume >= the minimum volume. Always True for a reference lesion.
    partners : list of int
        Ids of the matched components (reference) or lesions (predicted).
    best_iou, best_dice : float
        Best overlap with any counterpart that shares a voxel (0 when none).
    score : float or None
        Predicted: maximum probability in the component. Reference: highest score of the components
        that match it (its detection threshold on the FROC curve); under ``picai``, the score of its
        assigned component. None without probabilities.
    ignored : str or None
        Predicted, ``picai`` only: why an uncounted component is ignored (``"unassigned_overlap"``:
        it overlaps a lesion at IoU >= 0.1 that was assigned another component).
    """

    kind: str
    lesion_id: int
    voxels: int
    volume_mm3: float
    max_diameter_mm: float
    equivalent_diameter_mm: float
    size_bin: str
    centroid_vox: tuple[float, float, float]
    matched: bool = False
    counted: bool = True
    partners: list[int] = field(default_factory=list)
    best_iou: float = 0.0
    best_dice: float = 0.0
    score: float | None = None
    ignored: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class LesionCounts:
    """Counts shared by every result holding ``reference`` lesions and ``predicted`` components."""

    reference: list[Lesion]
    predicted: list[Lesion]

    @property
    def n_detected(self) -> int:
        return sum(les.matched for les in self.reference)

    @property
    def n_false_positives(self) -> int:
        return sum(c.counted and not c.matched for c in self.predicted)


@dataclass
class LesionMatch(LesionCounts):
    """Result of :func:`match_lesions` for one case."""

    reference: list[Lesion]
    predicted: list[Lesion]


def _overlaps(ref_labels: np.ndarray, pred_labels: np.ndarray, n_pred: int) -> dict[tuple[int, int], int]:
    """Shared voxel count of every overlapping (lesion, component) pair."""
    both = (ref_labels > 0) & (pred_labels > 0)
    if not both.any():
        return {}
    key = ref_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    keys, counts = np.unique(key, return_counts=True)
    return {(int(k // (n_pred + 1)), int(k % (n_pred + 1))): int(c) for k, c in zip(keys, counts)}


def _make(kind: str, index: int, size: dict, sizes: SizeConvention) -> Lesion:
    return Lesion(kind=kind, lesion_id=index, voxels=size["voxels"], volume_mm3=size["volume_mm3"],
                  max_diameter_mm=size["max_diameter_mm"], equivalent_diameter_mm=size["equivalent_diameter_mm"],
                  size_bin=sizes.label_of(size), centroid_vox=size["centroid_vox"])


def picai_iou(shared: int, ref_voxels: int, pred_voxels: int) -> float:
    """IoU as picai_eval computes it: ``(shared + 1e-8) / (union + 1e-8)``.

    The epsilon matters at the threshold: 3 shared voxels of a 30-voxel union give 0.1000000003 here
    (a hit at >= 0.1), where plain ``3 / 30`` rounds to 0.09999999999999999.
    """
    union = ref_voxels + pred_voxels - shared
    return (shared + _PICAI_IOU_EPSILON) / (union + _PICAI_IOU_EPSILON)


def picai_assignment(iou: np.ndarray, *, min_iou: float = PICAI_MIN_IOU) -> list[tuple[int, int]]:
    """picai_eval's lesion-candidate assignment on an IoU matrix.

    Parameters
    ----------
    iou : ndarray of float, shape (L, C)
        IoU of every reference lesion (rows) with every candidate (columns), from :func:`picai_iou`.
    min_iou : float
        A pair below this IoU cannot match.

    Returns
    -------
    list of (int, int)
        0-based (lesion, candidate) pairs; each lesion and each candidate at most once.

    Notes
    -----
    Pairs at or above ``min_iou`` are worth 1 + IoU, others 0, and the assignment maximises the total
    (scipy's ``linear_sum_assignment``): the count of matched lesions comes first, their total IoU
    second. The same matrix in the same order gives picai_eval's pairs, ties included.
    """
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return []
    worth = np.where(iou >= min_iou, iou + 1.0, 0.0)
    rows, cols = linear_sum_assignment(worth, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if worth[r, c] > 0]


def match_lesions(reference: np.ndarray, prediction: np.ndarray, *, spacing_mm: Sequence[float],
                  match: str = "any", min_volume_mm3: float = 0.0, probability: np.ndarray | None = None,
                  bins_mm: Sequence[float] | None = None, size_convention_name: str = "max-diameter",
                  min_iou: float = PICAI_MIN_IOU) -> LesionMatch:
    """Find reference lesions and predicted components, measure them, and match them.

    Parameters
    ----------
    reference : ndarray of bool, shape (X, Y, Z)
        Reference tumour mask (already restricted to the organ if wanted).
    prediction : ndarray of bool, shape (X, Y, Z)
        Binary prediction on the same grid.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    match : {'any', 'iou0.5', 'dice0.1', 'centroid', 'picai'}
        Match criterion (see the module docstring). For ``picai`` give the candidates of the
        detection map as ``prediction`` (``detection_map != 0``) and the map as ``probability``.
    min_volume_mm3 : float, optional
        Predicted components smaller than this volume (mm^3) are ignored (0 under ``picai``).
    probability : ndarray of float, shape (X, Y, Z), optional
        Probability map; a component's score is its maximum probability (for FROC).
    bins_mm : sequence of float, optional
        Size bin edges in mm (default: those of the size convention).
    size_convention_name : str, optional
        A name of :data:`~tumorsyn.metrics.sizes.SIZE_CONVENTIONS` (default ``max-diameter``).
    min_iou : float, optional
        ``picai`` only: the IoU a pair needs (picai_eval's ``min_overlap``, default 0.1).

    Returns
    -------
    LesionMatch
        ``reference`` and ``predicted`` lists of :class:`Lesion`, in component order.
    """
    if match not in MATCH_CRITERIA:
        raise ValueError(f"unknown match criterion {match!r}; choose one of {', '.join(MATCH_CRITERIA)}")
    reference = np.asarray(reference) != 0
    prediction = np.asarray(prediction) != 0
    if reference.shape != prediction.shape or reference.ndim != 3:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} must be 3D arrays of one shape")
    if min_volume_mm3 < 0:
        raise ValueError(f"min_volume_mm3 must be >= 0, got {min_volume_mm3}")
    if match == "picai" and min_volume_mm3 > 0:
        raise ValueError("picai_eval has no minimum volume: give min_volume_mm3 = 0 with match 'picai'")
    sizes = size_convention(size_convention_name, bins_mm)
    box = bounding_box(reference | prediction)
    if box is None:
        return LesionMatch(reference=[], predicted=[])
    # Work inside the box holding every lesion and component: labelling a whole scan costs seconds.
    offset = np.array([s.start for s in box], dtype=np.float64)
    reference, prediction = np.ascontiguousarray(reference[box]), np.ascontiguousarray(prediction[box])
    if probability is not None:
        probability = np.asarray(probability)[box]

    ref_labels, n_ref = label_lesions(reference)
    pred_labels, n_pred = label_lesions(prediction)
    refs = [_make("reference", i, s, sizes)
            for i, s in enumerate(component_sizes(ref_labels, n_ref, spacing_mm=spacing_mm), start=1)]
    pred_sizes = component_sizes(pred_labels, n_pred, spacing_mm=spacing_mm)
    preds = [_make("predicted", i, s, sizes) for i, s in enumerate(pred_sizes, start=1)]
    for comp, size in zip(preds, pred_sizes):
        comp.counted = comp.volume_mm3 >= min_volume_mm3
        if probability is not None:
            box = size["box"]
            comp.score = float(np.asarray(probability)[box][pred_labels[box] == comp.lesion_id].max())

    overlaps = _overlaps(ref_labels, pred_labels, n_pred)
    pairs: set[tuple[int, int]] = set()
    for (r, p), shared in overlaps.items():
        union = refs[r - 1].voxels + preds[p - 1].voxels - shared
        iou = shared / union
        dsc = 2.0 * shared / (refs[r - 1].voxels + preds[p - 1].voxels)
        for les in (refs[r - 1], preds[p - 1]):
            les.best_iou = max(les.best_iou, iou)
            les.best_dice = max(les.best_dice, dsc)
        if match == "any" or (match == "iou0.5" and iou > 0.5) or (match == "dice0.1" and dsc > 0.1):
            pairs.add((r, p))
    if match == "picai":
        iou = np.zeros((n_ref, n_pred))
        for (r, p), shared in overlaps.items():
            iou[r - 1, p - 1] = picai_iou(shared, refs[r - 1].voxels, preds[p - 1].voxels)
        pairs = {(r + 1, p + 1) for r, p in picai_assignment(iou, min_iou=min_iou)}
        assigned = {p for _, p in pairs}
        for p in np.flatnonzero((iou >= min_iou).any(axis=0)) + 1:
            if int(p) not in assigned:  # overlaps enough, but its lesion went to another candidate
                preds[p - 1].counted, preds[p - 1].ignored = False, "unassigned_overlap"
    if match == "centroid":
        for comp in preds:
            idx = tuple(int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(comp.centroid_vox, ref_labels.shape))
            if ref_labels[idx] > 0:
                pairs.add((int(ref_labels[idx]), comp.lesion_id))

    for r, p in sorted(pairs):
        lesion, comp = refs[r - 1], preds[p - 1]
        if not comp.counted:
            continue
        lesion.matched = comp.matched = True
        lesion.partners.append(p)
        comp.partners.append(r)
        if comp.score is not None:
            lesion.score = comp.score if lesion.score is None else max(lesion.score, comp.score)
    for lesion in [*refs, *preds]:
        lesion.centroid_vox = tuple(float(c) for c in np.asarray(lesion.centroid_vox) + offset)
    return LesionMatch(reference=refs, predicted=preds)
