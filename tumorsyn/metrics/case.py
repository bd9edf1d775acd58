"""All figures of one case: lesions and their matches, false positives, and the per-case metrics
(:data:`tumorsyn.metrics.case_metrics.CASE_METRICS`: Dice, surface Dice, ...)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tumorsyn.metrics.case_metrics import case_metric_values
from tumorsyn.metrics.lesions import PICAI_MIN_IOU, Lesion, LesionCounts, match_lesions
from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM

__all__ = ["PROBABILITY_THRESHOLD", "CaseResult", "evaluate_case"]

# A probability map becomes the binary prediction at p >= 0.5.
PROBABILITY_THRESHOLD = 0.5


@dataclass
class CaseResult(LesionCounts):
    """Figures of one case (picklable, so that worker processes can return it).

    Attributes
    ----------
    case_id : str
    has_tumour : bool
        The (organ-restricted) reference holds at least one lesion.
    reference, predicted : list of Lesion
    metrics : dict of str to float or None
        Every registered per-case metric by name, in registry order (``dice``, ``surface_dice``, ...);
        None where it does not apply (a tumour-free case, for tumour-positive-only metrics) or is
        undefined. ``dice`` and ``surface_dice`` are also attributes.
    ref_voxels, pred_voxels, overlap_voxels : int
        Voxel counts for the pooled (global) Dice.
    probabilistic : bool
        The prediction carried probabilities (component scores are set).
    ref_voxels_outside_organ, pred_voxels_outside_organ : int
        Voxels dropped by the organ restriction (0 without an organ mask).
    spacing_mm : tuple of float
    inputs : dict
        Paths and checksums of the files, filled in by the dataset layer.
    case_score : float or None
        ``picai`` only: the case's score, the maximum of its detection map (0 when empty).
    """

    case_id: str
    has_tumour: bool
    reference: list[Lesion]
    predicted: list[Lesion]
    metrics: dict[str, float | None]
    ref_voxels: int
    pred_voxels: int
    overlap_voxels: int
    probabilistic: bool
    ref_voxels_outside_organ: int = 0
    pred_voxels_outside_organ: int = 0
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    inputs: dict = field(default_factory=dict)
    case_score: float | None = None

    @property
    def dice(self) -> float | None:
        return self.metrics.get("dice")

    @property
    def surface_dice(self) -> float | None:
        return self.metrics.get("surface_dice")

    @property
    def has_counted_prediction(self) -> bool:
        return any(c.counted for c in self.predicted)

    def summary_row(self) -> dict:
        """One line of the per-case table."""
        return {
            "case_id": self.case_id,
            "has_tumour": self.has_tumour,
            "n_lesions": len(self.reference),
            "n_detected": self.n_detected,
            "n_predicted_components": sum(c.counted for c in self.predicted),
            "n_false_positives": self.n_false_positives,
            **self.metrics,
            "ref_voxels": self.ref_voxels,
            "pred_voxels": self.pred_voxels,
            "overlap_voxels": self.overlap_voxels,
            "probabilistic": self.probabilistic,
            "ref_voxels_outside_organ": self.ref_voxels_outside_organ,
            "pred_voxels_outside_organ": self.pred_voxels_outside_organ,
            "spacing_mm": list(self.spacing_mm),
            # Only under the picai convention, so that the other conventions' rows stay as they were.
            **({} if self.case_score is None else {"case_score": self.case_score}),
        }


def evaluate_case(reference: np.ndarray, prediction: np.ndarray, *, spacing_mm: Sequence[float],
                  case_id: str = "case", organ_mask: np.ndarray | None = None,
                  probability: np.ndarray | None = None, match: str = "any", min_volume_mm3: float = 0.0,
                  bins_mm: Sequence[float] | None = None, size_convention: str = "max-diameter",
                  tolerance_mm: float = SURFACE_TOLERANCE_MM, picai_extract: bool = False,
                  min_iou: float = PICAI_MIN_IOU) -> CaseResult:
    """Evaluate one prediction against one reference tumour mask.

    Parameters
    ----------
    reference : ndarray of bool, shape (X, Y, Z)
        Reference tumour mask.
    prediction : ndarray of bool, shape (X, Y, Z), or None
        Binary predicted tumour mask. May be None when ``probability`` is given: it is then
        ``probability >= 0.5``.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    case_id : str, optional
        Name used in the result rows.
    organ_mask : ndarray of bool, shape (X, Y, Z), optional
        When given, reference and prediction are both cut to the organ before anything else: lesions
        and components outside it vanish (they are neither missed lesions nor false positives), and
        Dice is computed inside the organ.
    probability : ndarray of float in [0, 1], shape (X, Y, Z), optional
        Probability map: components are scored by their maximum probability (FROC).
    match, min_volume_mm3, bins_mm, min_iou
        See :func:`tumorsyn.metrics.match_lesions`. With ``match='picai'`` the candidates are the
        components of the detection map (:func:`tumorsyn.metrics.picai.detection_map` of ``probability``,
        or of the binary prediction), with no 0.5 cut; Dice still uses the binary prediction.
    size_convention : str, optional
        A name of :data:`tumorsyn.metrics.sizes.SIZE_CONVENTIONS`.
    tolerance_mm : float, optional
        Surface Dice tolerance in mm (default 2).
    picai_extract : bool, optional
        ``picai`` only: extract candidates with report_guided_annotation (see
        :func:`tumorsyn.metrics.picai.detection_map`).

    Returns
    -------
    CaseResult
    """
    reference = np.asarray(reference) != 0
    if prediction is None:
        if probability is None:
            raise ValueError("give a prediction mask or a probability map")
        prediction = np.asarray(probability) >= PROBABILITY_THRESHOLD
    prediction = np.asarray(prediction) != 0
    if reference.shape != prediction.shape:
        raise ValueError(f"case {case_id}: reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    if probability is not None and np.asarray(probability).shape != reference.shape:
        raise ValueError(f"case {case_id}: probability shape {np.asarray(probability).shape} differs from {reference.shape}")
    ref_out = pred_out = 0
    if organ_mask is not None:
        organ = np.asarray(organ_mask) != 0
        if organ.shape != reference.shape:
            raise ValueError(f"case {case_id}: organ mask shape {organ.shape} differs from {reference.shape}")
        ref_out = int(np.count_nonzero(reference & ~organ))
        pred_out = int(np.count_nonzero(prediction & ~organ))
        reference = reference & organ
        prediction = prediction & organ
    else:
        organ = None

    case_score = None
    if match == "picai":
        from tumorsyn.metrics.picai import detection_map

        values = np.asarray(probability) if probability is not None else prediction
        y_det = detection_map(values if organ is None else np.where(organ, values, 0), extract=picai_extract)
        case_score = float(y_det.max()) if y_det.size else 0.0
        matched = match_lesions(reference, y_det != 0, spacing_mm=spacing_mm, match=match, probability=y_det,
                                min_volume_mm3=min_volume_mm3,
                                bins_mm=bins_mm, size_convention_name=size_convention, min_iou=min_iou)
    else:
        matched = match_lesions(reference, prediction, spacing_mm=spacing_mm, match=match,
                                min_volume_mm3=min_volume_mm3, probability=probability, bins_mm=bins_mm,
                                size_convention_name=size_convention)
    has_tumour = bool(matched.reference)
    ref_voxels = int(np.count_nonzero(reference))
    pred_voxels = int(np.count_nonzero(prediction))
    overlap = int(np.count_nonzero(reference & prediction))
    # Dice is undefined-or-trivial on a tumour-free reference, so tumour-positive-only metrics skip those cases.
    values = case_metric_values(reference, prediction, spacing_mm=spacing_mm, has_tumour=has_tumour,
                                overrides={"surface_dice_tolerance_mm": tolerance_mm})
    return CaseResult(case_id=case_id, has_tumour=has_tumour, reference=matched.reference,
                      predicted=matched.predicted, metrics=values,
                      ref_voxels=ref_voxels, pred_voxels=pred_voxels, overlap_voxels=overlap,
                      probabilistic=probability is not None, ref_voxels_outside_organ=ref_out,
                      pred_voxels_outside_organ=pred_out,
                      spacing_mm=tuple(float(s) for s in spacing_mm), case_score=case_score)
