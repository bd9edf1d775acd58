"""Organ and lesion masks from label maps, by named preset or explicit label values."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from tumorsyn.errors import ConfigError, EmptyOrganError

__all__ = ["ORGANS", "LABEL_PRESETS", "label_values", "organ_label_values", "organ_mask_from_labels", "lesion_mask_from_labels"]

ORGANS = ("liver", "pancreas", "kidney")

# Label values per organ in common label conventions. "lesion" lists labels that mark existing
# tumours: synthetic tumours avoid them, and they belong to the organ for placement.
LABEL_PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    # TotalSegmentator v2 "total" task: 1 spleen, 2 right kidney, 3 left kidney, 5 liver, 7 pancreas.
    "totalsegmentator": {"liver": (5,), "pancreas": (7,), "kidney": (2, 3), "lesion": ()},
    # Medical Segmentation Decathlon (Task03 liver, Task07 pancreas): 1 organ, 2 tumour.
    "decathlon": {"liver": (1, 2), "pancreas": (1, 2), "kidney": (1, 2), "lesion": (2,)},
    # KiTS19/21/23: 1 kidney, 2 tumour, 3 cyst.
    "kits": {"kidney": (1, 2, 3), "lesion": (2, 3)},
    # A binary organ mask: every non-zero voxel is organ.
    "binary": {"liver": (), "pancreas": (), "kidney": (), "lesion": ()},
}


def label_values(labels_scan) -> np.ndarray:
    """Canonical integer label array of a label :class:`~tumorsyn.io.scan.Scan`."""
    values = labels_scan.to_canonical(labels_scan.raw)
    if labels_scan.slope != 1.0 or labels_scan.inter != 0.0:
        values = values * labels_scan.slope + labels_scan.inter
    return np.rint(values).astype(np.int32) if not np.issubdtype(values.dtype, np.integer) else values


def organ_label_values(organ: str, preset: str | None, organ_labels: Iterable[int] | None) -> tuple[int, ...] | None:
    """Label values meaning ``organ``; None means "every non-zero label"."""
    if organ not in ORGANS:
        raise ConfigError(f"unknown organ {organ!r}; choose one of {', '.join(ORGANS)}")
    if organ_labels is not None:
        values = tuple(int(v) for v in organ_labels)
        if not values:
            raise ConfigError("--organ-label needs at least one label value")
        return values
    if preset is None:
        preset = "binary"
    if preset not in LABEL_PRESETS:
        raise ConfigError(f"unknown label preset {preset!r}; choose one of {', '.join(LABEL_PRESETS)}")
    if organ not in LABEL_PRESETS[preset]:
        raise ConfigError(f"label preset {preset!r} has no {organ}; give --organ-label K")
    values = LABEL_PRESETS[preset][organ]
    return values or None


def organ_mask_from_labels(labels: np.ndarray, organ: str, *, preset: str | None = "totalsegmentator",
                           organ_labels: Iterable[int] | None = None, path=None) -> np.ndarray:
    """Boolean organ mask from a label map.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label map (or binary mask).
    organ : {'liver', 'pancreas', 'kidney'}
    preset : str, optional
        Key of :data:`LABEL_PRESETS`; ignored when ``organ_labels`` is given.
    organ_labels : iterable of int, optional
        Explicit label values of the organ.
    path : str, optional
        File name used in the error message.

    Raises
    ------
    EmptyOrganError
        When no voxel carries the organ's label values.
    """
    values = organ_label_values(organ, preset, organ_labels)
    mask = labels != 0 if values is None else np.isin(labels, values)
    if not mask.any():
        present = sorted(int(v) for v in np.unique(labels) if v != 0)[:20]
        wanted = "any non-zero label" if values is None else f"label value(s) {', '.join(map(str, values))}"
        raise EmptyOrganError(f"no {organ} voxels ({wanted}) in the label map; labels present: {present or 'none'}; "
                              f"check --label-preset or give --organ-label K", path=path)
    return mask


def lesion_mask_from_labels(labels: np.ndarray, *, preset: str | None = "totalsegmentator",
                            lesion_labels: Iterable[int] | None = None) -> np.ndarray:
    """Boolean mask of existing lesions (to avoid), from a preset or explicit label values."""
    if lesion_labels is not None:
        values = tuple(int(v) for v in lesion_labels)
    else:
        values = LABEL_PRESETS.get(preset or "binary", {}).get("lesion", ())
    if not values:
        return np.zeros(labels.shape, dtype=bool)
    return np.isin(labels, values)
