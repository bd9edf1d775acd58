"""Reading and writing CT scans, label maps and dataset layouts.

Everything the rest of tumorsyn sees is canonical RAS+ (axes X, Y, Z), HU as float32 and spacing in
mm; everything written keeps the input's own orientation, dtype and header.
"""
from tumorsyn.io.labels import LABEL_PRESETS, organ_mask_from_labels, lesion_mask_from_labels
from tumorsyn.io.scan import Scan, load_labels, load_scan
from tumorsyn.io.writers import write_ct_like, write_mask_like

__all__ = [
    "LABEL_PRESETS",
    "Scan",
    "load_labels",
    "load_scan",
    "lesion_mask_from_labels",
    "organ_mask_from_labels",
    "write_ct_like",
    "write_mask_like",
]
