"""Detection and segmentation metrics for real tumours: plain functions on arrays plus spacing in mm.

Conventions (ANCHORS.md, "Evaluation conventions"): a lesion is a 26-connected component of the
reference tumour mask; its size is the maximum 3D diameter in mm (the equivalent-sphere diameter is
reported too); bins < 10, 10-20, > 20 mm; a lesion is detected when a predicted component overlaps it
(or by a stricter criterion); Wilson 95 % intervals; Dice and surface Dice (2 mm) on tumour-positive
cases only. :func:`conventions` spells out every choice; every result file records it. The per-case
metrics are declared once, in :data:`CASE_METRICS` (``case_metrics.py``).

Example
-------
>>> import numpy as np
>>> from tumorsyn.metrics import evaluate_case
>>> ref = np.zeros((20, 20, 20), bool); ref[5:9, 5:9, 5:9] = True
>>> result = evaluate_case(ref, ref, spacing_mm=(1.0, 1.0, 1.0))
>>> result.n_detected, result.dice
(1, 1.0)

torch is never imported here; MONAI is used only in the tests, as a cross-check.
"""
from tumorsyn.metrics.case import PROBABILITY_THRESHOLD, CaseResult, evaluate_case
from tumorsyn.metrics.case_metrics import CASE_METRICS, CaseMetric, register_case_metric, unregister_case_metric
from tumorsyn.metrics.compare import compare_reports, load_report, render_comparison, write_comparison
from tumorsyn.metrics.conventions import conventions, versions
from tumorsyn.metrics.dataset import (CasePaths, case_id_from_name, evaluate_dataset, evaluate_paths, list_cases,
                                      load_case, pair_cases, sha256_file)
from tumorsyn.metrics.froc import FP_RATE_SETS, FROC_FP_RATES, froc_curve, sensitivity_at_fp_rates
from tumorsyn.metrics.lesions import MATCH_CRITERIA, PICAI_MIN_IOU, Lesion, LesionMatch, match_lesions
from tumorsyn.metrics.picai import detection_map, picai_summary
from tumorsyn.metrics.report import build_report, lesion_rows, render_markdown, write_report
from tumorsyn.metrics.segmentation import SURFACE_TOLERANCE_MM, boundary_points_mm, dice, surface_dice
from tumorsyn.metrics.sizes import (DEFAULT_BINS_MM, EARLY_MAX_DIAMETER_MM, SIZE_CONVENTIONS, SizeConvention,
                                    component_sizes, is_early, size_bin_index, size_bin_labels, size_convention)
from tumorsyn.metrics.stats import mcnemar_test, proportion, wilson_interval
from tumorsyn.metrics.summary import VOLUME_SWEEP_MM3, summarize, volume_threshold_sweep

__all__ = [
    "CASE_METRICS", "CaseMetric", "CaseResult", "CasePaths", "Lesion", "LesionMatch",
    "DEFAULT_BINS_MM", "EARLY_MAX_DIAMETER_MM", "FROC_FP_RATES", "MATCH_CRITERIA", "PROBABILITY_THRESHOLD",
    "SURFACE_TOLERANCE_MM", "FP_RATE_SETS", "PICAI_MIN_IOU", "SIZE_CONVENTIONS", "SizeConvention", "VOLUME_SWEEP_MM3",
    "detection_map", "picai_summary", "size_convention", "volume_threshold_sweep",
    "boundary_points_mm", "build_report", "case_id_from_name", "compare_reports", "component_sizes", "conventions",
    "dice", "evaluate_case", "evaluate_dataset", "evaluate_paths", "froc_curve", "is_early", "lesion_rows",
    "list_cases", "load_case", "load_report", "match_lesions", "mcnemar_test", "pair_cases", "proportion",
    "render_comparison", "render_markdown", "sensitivity_at_fp_rates", "sha256_file", "size_bin_index",
    "register_case_metric", "size_bin_labels", "summarize", "surface_dice", "unregister_case_metric", "versions",
    "wilson_interval", "write_comparison", "write_report",
]
