"""Reference lesions, predicted components, and which of them match.

A lesion is a 26-connected component of the reference tumour mask; a predicted component is a
26-connected component of the (binary) prediction. A pair (lesion r, component p) matches under:

- ``any``: they share at least one voxel;
- ``iou0.5``: their intersection over union is > 0.5;
- ``dice0.1``: their Dice is > 0.1;
- ``centroid``: the centre of mass of p, rounded to the nearest voxel, lies in r.

A lesion is detected when it matches at least one counted component; a counted component (volume
>= ``min_volume_mm3``) that matches no lesion is a false positive. Components below the minimum volume
are ignored: they neither detect a lesion nor count as false positives.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from tumorsyn.lesion_size import label_lesions
from tumorsyn.metrics.sizes import DEFAULT_BINS_MM, component_sizes, size_bin_index, size_bin_labels
from tumorsyn.placement import bounding_box

__all__ = ["MATCH_CRITERIA", "Lesion", "LesionMatch", "match_lesions"]

MATCH_CRITERIA: dict[str, str] = {
    "any": "a predicted component shares at least one voxel with the reference lesion",
    "iou0.5": "intersection over union of the reference lesion and one predicted component > 0.5",
    "dice0.1": "Dice of the reference lesion and one predicted component > 0.1",
    "centroid": "the centre of mass of a predicted component, rounded to the nearest voxel, lies inside the reference lesion",
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
        that match it (its detection threshold on the FROC curve). None without probabilities.
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


def _make(kind: str, index: int, size: dict, bins_mm: Sequence[float], labels: list[str]) -> Lesion:
    return Lesion(kind=kind, lesion_id=index, voxels=size["voxels"], volume_mm3=size["volume_mm3"],
                  max_diameter_mm=size["max_diameter_mm"], equivalent_diameter_mm=size["equivalent_diameter_mm"],
                  size_bin=labels[size_bin_index(size["max_diameter_mm"], bins_mm)],
                  centroid_vox=size["centroid_vox"])


def match_lesions(reference: np.ndarray, prediction: np.ndarray, *, spacing_mm: Sequence[float],
                  match: str = "any", min_volume_mm3: float = 0.0, probability: np.ndarray | None = None,
                  bins_mm: Sequence[float] = DEFAULT_BINS_MM) -> LesionMatch:
    """Find reference lesions and predicted components, measure them, and match them.

    Parameters
    ----------
    reference : ndarray of bool, shape (X, Y, Z)
        Reference tumour mask (already restricted to the organ if wanted).
    prediction : ndarray of bool, shape (X, Y, Z)
        Binary prediction on the same grid.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    match : {'any', 'iou0.5', 'dice0.1', 'centroid'}
        Match criterion (see the module docstring).
    min_volume_mm3 : float, optional
        Predicted components smaller than this volume (mm^3) are ignored.
    probability : ndarray of float, shape (X, Y, Z), optional
        Probability map; a component's score is its maximum probability (for FROC).
    bins_mm : sequence of float
        Size bin edges in mm (maximum 3D diameter).

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
    labels = size_bin_labels(bins_mm)
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
    refs = [_make("reference", i, s, bins_mm, labels)
            for i, s in enumerate(component_sizes(ref_labels, n_ref, spacing_mm=spacing_mm), start=1)]
    pred_sizes = component_sizes(pred_labels, n_pred, spacing_mm=spacing_mm)
    preds = [_make("predicted", i, s, bins_mm, labels) for i, s in enumerate(pred_sizes, start=1)]
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
