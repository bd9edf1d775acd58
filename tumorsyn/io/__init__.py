"""Reading and writing CT scans, label maps and dataset layouts.

Everything the rest of tumorsyn sees is canonical RAS+ (axes X, Y, Z), HU as float32 and spacing in
mm; everything written keeps the input's own orientation, dtype and header.
"""
from tumorsyn.io.cases import Case, case_ids, read_case_masks
from tumorsyn.io.labels import LABEL_PRESETS, organ_mask_from_labels, lesion_mask_from_labels
from tumorsyn.io.layouts import discover_cases, register_layout
from tumorsyn.io.scan import Scan, load_labels, load_scan
from tumorsyn.io.writers import write_ct_like, write_mask_like

__all__ = [
    "Case",
    "LABEL_PRESETS",
    "Scan",
    "case_ids",
    "discover_cases",
    "load_labels",
    "load_scan",
    "lesion_mask_from_labels",
    "organ_mask_from_labels",
    "read_case_masks",
    "register_layout",
    "write_ct_like",
    "write_mask_like",
]
