"""The evaluation conventions, written out in words and numbers for every result file."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Callable, Mapping, Sequence

from tumorsyn.io.names import READ_SUFFIXES
from tumorsyn.metrics.case import PROBABILITY_THRESHOLD
from tumorsyn.metrics.case_metrics import CASE_METRICS, metric_parameters
from tumorsyn.metrics.froc import FROC_FP_RATES
from tumorsyn.metrics.lesions import MATCH_CRITERIA, PICAI_MIN_IOU
from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM
from tumorsyn.metrics.sizes import EARLY_MAX_DIAMETER_MM, EDGE_TOLERANCE_MM, SIZE_MEASURES, size_convention
from tumorsyn.metrics.stats import Z_95

__all__ = ["conventions", "versions", "describe_conventions", "CASE_ID_RULE"]

# The one naming rule's read side (tumorsyn.io.names): what tumorsyn writes as <id>_tumor reads back as <id>.
CASE_ID_SUFFIXES = tuple(f"_{word}" for word in READ_SUFFIXES)
CASE_ID_RULE = ("file name without .nii.gz/.nii, then trailing suffixes among "
                + ", ".join(CASE_ID_SUFFIXES) + " removed repeatedly (e.g. case_001_0000.nii.gz, case_001_pred.nii.gz -> case_001); "
                "in a folder, segment predict's files of the other role are left out (<id>_organ among tumour masks, "
                "<id>_tumor and <id>_pred among organ masks); a CSV gives case_id,path rows instead")


def conventions(*, match: str = "any", min_volume_mm3: float = 0.0, bins_mm: Sequence[float] | None = None,
                tolerance_mm: float = SURFACE_TOLERANCE_MM, organ_restricted: bool = False,
                tumour_labels: Sequence[int] | None = None, organ_labels: Sequence[int] | None = None,
                size_convention_name: str = "max-diameter", fp_rates: Sequence[float] = FROC_FP_RATES,
                fp_rates_name: str = "luna16", volume_thresholds_mm3: Sequence[float] | None = None,
                picai_extract: bool = False) -> dict:
    """Every choice behind the figures, as a JSON-able dict (numbers plus a sentence each).

    Each per-case metric of :data:`~tumorsyn.metrics.case_metrics.CASE_METRICS` adds its parameters
    (``<name>_<parameter>``) and its definition (``<name>_rule``), in registry order. The ``picai``
    match adds ``picai_*`` keys, a volume sweep ``volume_sweep_*`` keys.
    """
    sizes = size_convention(size_convention_name, bins_mm)
    edges = sizes.bins_mm
    top_rule = ("bins are half-open: a size equal to an edge goes to the bin above it (the top bin is >= the last edge)"
                if sizes.top_closed or len(edges) == 1 else
                "a diameter equal to an inner edge goes to the bin above it; one equal to the "
                "last edge stays in the bin below (the top bin is strictly greater)")
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
        "size_convention": sizes.name,
        "size_convention_rule": sizes.description,
        "size_measure": SIZE_MEASURES[sizes.measure],
        "size_bins_mm": list(edges),
        "size_bin_labels": sizes.labels(),
        "size_bin_rule": top_rule,
        "size_edge_tolerance_mm": EDGE_TOLERANCE_MM,
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
        "froc_fp_rates": fp_rates_name,
        "froc_fp_rates_per_scan": [float(r) for r in fp_rates],
        "froc_fp_rates_rule": "sensitivity at a rate r = the highest sensitivity of a curve point with at most r "
                              "false positives per scan (a step, no interpolation); their mean is reported too",
        **(_picai_conventions(picai_extract) if match == "picai" else {}),
        **(_volume_conventions(volume_thresholds_mm3) if volume_thresholds_mm3 is not None else {}),
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


def _picai_conventions(extract: bool) -> dict:
    return {
        "picai_min_iou": PICAI_MIN_IOU,
        "picai_candidates": ("report_guided_annotation.extract_lesion_candidates(prediction)[0] (default "
                             "arguments), as picai_eval with that y_det_postprocess_func") if extract else
                            "the prediction as a detection map: each 26-connected component of non-zero voxels "
                            "is a candidate scored by its maximum; no 0.5 cut (a softmax map is refused, as picai_eval does)",
        "picai_rule": "lesion entries: a matched lesion (1, its candidate's score), a missed lesion (1, 0), an "
                      "unmatched candidate (0, its score); AP over these entries (precision at score 0 counts as 0); "
                      "AUROC of the case score (maximum of the detection map) against tumour-positive; FROC over "
                      "the entries with the lowest threshold replaced by (same sensitivity, infinite FP), "
                      "sensitivity at r = the last point with FP per case <= r (as picai_eval 1.4)",
    }


def _volume_conventions(thresholds_mm3: Sequence[float]) -> dict:
    return {
        "volume_sweep_mm3": [float(t) for t in thresholds_mm3],
        "volume_sweep_rule": "a scan is called tumour-positive when its predicted tumour volume (binary "
                             "prediction voxels x voxel volume, after the organ cut) is >= T mm^3; sensitivity "
                             "over tumour-positive scans, specificity over tumour-free scans, at each T",
    }


def versions() -> dict:
    """Versions of Python, tumorsyn and the libraries the figures depend on."""
    out = {"python": platform.python_version()}
    for name in ("tumorsyn", "numpy", "scipy", "scikit-image", "nibabel", "matplotlib", "picai_eval",
                 "report_guided_annotation"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _words(value: object) -> str:
    """A convention value as prose: lists joined by commas, numbers without trailing zeros."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value)
    return str(value)


def _labels(what: str, value: object) -> str:
    return f"{what}: {'any non-zero label' if value is None else _words(value)}"


# One sentence per convention key; ``{v}`` is the value in words, ``{V}`` the same with a capital.
# A callable gets the raw value (for yes/no and null cases that read differently).
_SENTENCES: dict[str, str | Callable[[object], str]] = {
    "lesion": "A lesion is a {v}.",
    "connectivity": "Connected components use {v}-connectivity.",
    "orientation": "Orientation: {v}.",
    "size": "Lesion size is the {v}.",
    "equivalent_diameter": "The equivalent diameter is {v}.",
    "size_bins_mm": "Size-bin edges: {v} mm.",
    "size_bin_labels": "Size bins: {v}.",
    "size_bin_rule": "At a bin edge, {v}.",
    "size_convention": "Size convention: `{v}`.",
    "size_convention_rule": "Sizes: {v}.",
    "size_measure": "Binned size: {v}.",
    "size_edge_tolerance_mm": "A size within {v} mm of a bin edge counts as on the edge.",
    "froc_fp_rates": "FROC operating points: {v}.",
    "froc_fp_rates_per_scan": "FROC sensitivity is read at {v} false positives per scan.",
    "froc_fp_rates_rule": "At a false-positive rate, {v}.",
    "picai_min_iou": "picai: a candidate detects a lesion at IoU >= {v}.",
    "picai_candidates": "picai candidates: {v}.",
    "picai_rule": "picai figures: {v}.",
    "volume_sweep_mm3": "Patient-level volume thresholds: {v} mm³.",
    "volume_sweep_rule": "Volume sweep: {V}.",
    "early_small": "An early (small) lesion has a {v}.",
    "match": "Lesions are matched with the `{v}` criterion.",
    "match_rule": "A match means {v}.",
    "detected_rule": "{V}.",
    "min_volume_mm3": "Minimum volume of a counted predicted component: {v} mm³.",
    "min_volume_rule": "{V}.",
    "false_positive_rule": "A false positive is {v}.",
    "fp_per_scan_rule": "False positives per scan = {v}.",
    "patient_sensitivity_rule": "Patient sensitivity = {v}.",
    "patient_specificity_rule": "Patient specificity = {v}.",
    "probability_threshold": "Probability maps are binarised at p >= {v}.",
    "probability_rule": "{V}.",
    "froc_rule": "FROC: {v}.",
    "organ_restricted": lambda v: ("Evaluation is restricted to the organ mask." if v
                                   else "Evaluation is not restricted to an organ mask."),
    "organ_rule": "{V}.",
    "organ_labels": lambda v: _labels("Organ-mask labels", v) + ".",
    "tumour_labels": lambda v: _labels("Tumour labels", v) + ".",
    "tumour_label_rule": "{V}.",
    "confidence_interval": "Confidence intervals: {v}.",
    "paired_test": "Paired test: {v}.",
    "case_id_rule": "Case id: {v}.",
}


def describe_conventions(conv: Mapping[str, object]) -> list[str]:
    """The conventions as short sentences, one per key and in the dict's order (``report.md``).

    Keys of per-case metrics (``<name>_rule``, ``<name>_<parameter>``) read as "<column>: ..."
    using the metric registry; a key nothing here knows (from a newer or older tumorsyn) still
    gets a plain "<key in words>: <value>." sentence, so no convention is ever dropped.
    """
    # Per-case metric keys, from the registry (longest name first: "surface_dice" before "dice").
    metric_keys: dict[str, str] = {}
    for name, metric in sorted(CASE_METRICS.items(), key=lambda item: -len(item[0])):
        metric_keys.setdefault(f"{name}_rule", f"{metric.column}: {{v}}.")
        for param in metric.parameters:
            metric_keys.setdefault(f"{name}_{param}", f"{metric.column}, parameter {param}: {{v}}.")
    sentences = []
    for key, value in conv.items():
        template = _SENTENCES.get(key) or metric_keys.get(key) or (key.replace("_", " ").capitalize() + ": {v}.")
        if callable(template):
            sentences.append(template(value))
        else:
            text = _words(value)
            sentences.append(template.format(v=text, V=text[:1].upper() + text[1:]))
        sentences[-1] = sentences[-1][:1].upper() + sentences[-1][1:]  # a metric column may start lower case
    return sentences
