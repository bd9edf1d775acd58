"""The evaluation conventions, written out in words and numbers for every result file."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from tumorsyn.metrics.case import PROBABILITY_THRESHOLD
from tumorsyn.metrics.case_metrics import CASE_METRICS, metric_parameters
from tumorsyn.metrics.lesions import MATCH_CRITERIA
from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM
from tumorsyn.metrics.sizes import DEFAULT_BINS_MM, EARLY_MAX_DIAMETER_MM, check_bins_mm, size_bin_labels
from tumorsyn.metrics.stats import Z_95

__all__ = ["conventions", "versions", "CASE_ID_RULE"]

CASE_ID_SUFFIXES = ("_0000", "_pred", "_seg", "_tumor", "_tumour", "_label", "_labels", "_gt")
CASE_ID_RULE = ("file name without .nii.gz/.nii, then trailing suffixes among "
                + ", ".join(CASE_ID_SUFFIXES) + " removed repeatedly (e.g. case_001_0000.nii.gz, case_001_pred.nii.gz -> case_001); "
                "a CSV gives case_id,path rows instead")


def conventions(*, match: str = "any", min_volume_mm3: float = 0.0, bins_mm: Sequence[float] = DEFAULT_BINS_MM,
                tolerance_mm: float = SURFACE_TOLERANCE_MM, organ_restricted: bool = False,
                tumour_labels: Sequence[int] | None = None, organ_labels: Sequence[int] | None = None) -> dict:
    """Every choice behind the figures, as a JSON-able dict (numbers plus a sentence each).

    Each per-case metric of :data:`~tumorsyn.metrics.case_metrics.CASE_METRICS` adds its parameters
    (``<name>_<parameter>``) and its definition (``<name>_rule``), in registry order.
    """
    edges = check_bins_mm(bins_mm)
    params = metric_parameters({"surface_dice_tolerance_mm": tolerance_mm})
    per_case_metrics: dict = {}
    for name, metric in CASE_METRICS.items():
        per_case_metrics.update({f"{name}_{p}": v for p, v in params[name].items()})
        per_case_metrics[f"{name}_rule"] = metric.definition
    return {
        "lesion": "26-connected component of the reference tumour mask",
        "connectivity": 26,
        "orientation": "arrays in canonical RAS+ (X, Y, Z); spacing from the reference file's affine",
        "size": "maximum 3D diameter in mm: largest distance between vertices of the marching-cubes "
                "surface at level 0.5, scaled by the spacing (pyradiomics Maximum3DDiameter)",
        "equivalent_diameter": "2*(3V/(4*pi))^(1/3), V = voxel count x voxel volume in mm^3",
        "size_bins_mm": list(edges),
        "size_bin_labels": size_bin_labels(edges),
        "size_bin_rule": "a diameter equal to an inner edge goes to the bin above it; one equal to the "
                         "last edge stays in the bin below (the top bin is strictly greater)",
        "early_small": f"maximum diameter < {EARLY_MAX_DIAMETER_MM:g} mm",
        "match": match,
        "match_rule": MATCH_CRITERIA[match],
        "detected_rule": "a reference lesion is detected when it matches at least one counted predicted component",
        "min_volume_mm3": float(min_volume_mm3),
        "min_volume_rule": "predicted components with volume < min_volume_mm3 are ignored: they neither "
                           "detect a lesion nor count as false positives (Dice still uses every voxel)",
        "false_positive_rule": "a counted predicted component (26-connected) that matches no reference lesion",
        "fp_per_scan_rule": "false-positive components over all scans / number of scans (tumour-free scans included)",
        "patient_sensitivity_rule": "tumour-positive scans with >= 1 detected lesion / tumour-positive scans",
        "patient_specificity_rule": "tumour-free scans with no counted predicted component / tumour-free scans",
        "probability_threshold": PROBABILITY_THRESHOLD,
        "probability_rule": "a prediction stored as floating point with all values in [0, 1] is a probability map: binary "
                            "prediction = p >= 0.5; FROC score of a component = its maximum probability",
        "froc_rule": "at each score threshold t, components with score >= t count; sensitivity = lesions "
                     "matched by such a component / all lesions; FP rate = such false positives / scans",
        **per_case_metrics,
        "organ_restricted": bool(organ_restricted),
        "organ_rule": ("reference and prediction are both cut to the organ mask before components are "
                       "found: lesions and predicted components outside the organ vanish (no miss, no "
                       "false positive) and Dice is computed inside the organ") if organ_restricted
                      else "no organ mask: the whole scan is evaluated",
        "organ_labels": None if organ_labels is None else [int(v) for v in organ_labels],
        "tumour_labels": None if tumour_labels is None else [int(v) for v in tumour_labels],
        "tumour_label_rule": "tumour = voxels whose label is in tumour_labels (null: any non-zero label)",
        "confidence_interval": f"Wilson score interval, 95 % (z = {Z_95:.6f})",
        "paired_test": "McNemar on lesions of the same reference (exact two-sided binomial p; "
                       "continuity-corrected chi-square also given)",
        "case_id_rule": CASE_ID_RULE,
    }


def versions() -> dict:
    """Versions of Python, tumorsyn and the libraries the figures depend on."""
    out = {"python": platform.python_version()}
    for name in ("tumorsyn", "numpy", "scipy", "scikit-image", "nibabel", "matplotlib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
