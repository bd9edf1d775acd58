"""Reading and writing CT scans, label maps and dataset layouts.

Everything the rest of tumorsyn sees is canonical RAS+ (axes X, Y, Z), HU as float32 and spacing in
mm; everything written keeps the input's own orientation, dtype and header.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tumorsyn.io.cases import Case, case_ids, read_case_masks
from tumorsyn.io.labels import LABEL_PRESETS, label_values, organ_mask_from_labels, lesion_mask_from_labels
from tumorsyn.io.layouts import discover_cases, register_layout
from tumorsyn.io.scan import Scan, check_same_grid, load_labels, load_scan
from tumorsyn.io.writers import write_ct_like, write_mask_like

__all__ = [
    "Case",
    "LABEL_PRESETS",
    "Scan",
    "case_ids",
    "discover_cases",
    "load_label_map",
    "load_labels",
    "load_scan",
    "lesion_mask_from_labels",
    "organ_mask_from_labels",
    "read_case_masks",
    "register_layout",
    "write_ct_like",
    "write_mask_like",
]


def load_label_map(path: str | Path, *, like: Scan | None = None) -> np.ndarray:
    """Integer label values of a label map or binary mask, canonical RAS+ ``(X, Y, Z)``.

    The label-map twin of ``load_scan(path).values()``: a label map is not HU, so :func:`load_scan`
    refuses it. Pass the result to :func:`organ_mask_from_labels` / :func:`lesion_mask_from_labels`.

    Parameters
    ----------
    path : str or Path
        ``.nii``/``.nii.gz`` label map (whole-number values, any integer or scaled float storage).
    like : Scan, optional
        The CT the labels belong to; the labels must lie on its voxel grid (same shape and affine,
        within 0.01 mm).

    Returns
    -------
    ndarray of int, shape (X, Y, Z)

    Raises
    ------
    InputError
        Non-integer values, or an unreadable file (one line naming it).
    GridMismatchError
        With ``like``: the labels are on another grid than the CT.
    """
    labels = load_labels(path)
    if like is not None:
        check_same_grid(like, labels)
    return label_values(labels)
