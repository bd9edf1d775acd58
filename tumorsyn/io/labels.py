"""Organ and lesion masks from label maps, by named preset or explicit label values."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from tumorsyn.errors import ConfigError, EmptyOrganError
from tumorsyn.organs import LABEL_CONVENTIONS, LABEL_PRESETS, ORGANS, PRESET_VALUES

__all__ = ["ORGANS", "LABEL_PRESETS", "PRESET_VALUES", "AUTO_PRESETS", "EXPLICIT_LABELS", "label_values",
           "present_label_values", "organ_label_values", "organ_mask_from_labels", "lesion_mask_from_labels",
           "forbidden_mask_from_labels", "label_roles", "fitting_presets", "choose_label_preset", "format_values",
           "tumor_label_value"]

# Organs and label conventions come from the organ registry (:mod:`tumorsyn.organs`); they are
# re-exported here, where label maps are read.

# Order in which ``auto`` reports presets; where several fit with the same meaning, the first is recorded.
AUTO_PRESETS = ("binary", "decathlon", "kits", "totalsegmentator")
# What ``auto`` resolves to when --organ-label and --lesion-label both are given: no preset is used.
EXPLICIT_LABELS = "explicit"


def label_values(labels_scan) -> np.ndarray:
    """Canonical integer label array of a label :class:`~tumorsyn.io.scan.Scan`."""
    values = labels_scan.to_canonical(labels_scan.raw)
    if labels_scan.slope != 1.0 or labels_scan.inter != 0.0:
        values = values * labels_scan.slope + labels_scan.inter
    return np.rint(values).astype(np.int32) if not np.issubdtype(values.dtype, np.integer) else values


def present_label_values(labels_scan) -> frozenset[int]:
    """The non-zero label values of a label :class:`~tumorsyn.io.scan.Scan` (file order; no canonical copy)."""
    raw = labels_scan.raw
    # Label maps are mostly background: unique of the non-zero voxels is far faster than of all.
    values = raw[raw != 0] if labels_scan.inter == 0.0 else raw.ravel()
    if labels_scan.slope != 1.0 or labels_scan.inter != 0.0:
        values = values * labels_scan.slope + labels_scan.inter
    values = np.unique(values)
    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values)
    return frozenset(int(v) for v in values if v != 0)


def format_values(values: Iterable[int]) -> str:
    """``1, 2, 5-9`` for a set of label values; ``none`` for an empty one.

    Examples
    --------
    >>> format_values([3, 1, 2, 7, 8, 10])
    '1-3, 7, 8, 10'
    """
    runs: list[list[int]] = []
    for v in sorted(set(int(v) for v in values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}" for a, b in runs) or "none"


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
    if preset == EXPLICIT_LABELS:
        raise ConfigError(f"no label preset was chosen; give --organ-label K for the {organ}")
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
    organ : str
        A key of :data:`tumorsyn.organs.ORGAN_PRESETS`.
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


def forbidden_mask_from_labels(labels: np.ndarray, organ: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """Voxels a synthetic tumour must never cover: existing lesions, and every labelled voxel of another structure.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
    organ : ndarray of bool, shape (X, Y, Z)
        The host organ (from :func:`organ_mask_from_labels`); lesions inside it are in ``lesions``.
    lesions : ndarray of bool, shape (X, Y, Z)
        Existing lesions and cysts (from :func:`lesion_mask_from_labels`).
    """
    # Background (0) is allowed: an exophytic kidney tumour bulges into unlabelled fat.
    return lesions | ((labels != 0) & ~organ)


def label_roles(values: Iterable[int], organ: str, preset: str, *, organ_labels: Iterable[int] | None = None,
                lesion_labels: Iterable[int] | None = None) -> dict[int, str]:
    """What each label value means for a run on ``organ``: ``organ``, ``lesion`` or ``other`` (another structure)."""
    organ_values = organ_label_values(organ, preset, organ_labels) if organ_labels is not None or \
        organ in LABEL_PRESETS.get(preset, {}) else ()
    lesion_values = set(int(v) for v in (lesion_labels if lesion_labels is not None
                                         else LABEL_PRESETS.get(preset, {}).get("lesion", ())))
    roles = {}
    for v in sorted(set(int(v) for v in values)):
        if v in lesion_values:
            roles[v] = "lesion"
        elif organ_values is None or v in organ_values:
            roles[v] = "organ"
        else:
            roles[v] = "other"
    return roles


def fitting_presets(values: Iterable[int], organ: str, *, organ_labels: Iterable[int] | None = None,
                    lesion_labels: Iterable[int] | None = None) -> list[str]:
    """Presets whose convention can have written label maps holding ``values`` (non-zero) for ``organ``.

    A preset fits when (1) every value is one it defines (``binary``: exactly one non-zero value;
    ``decathlon``: 1, 2; ``kits``: 1, 2, 3; ``totalsegmentator``: 1-117; see
    :data:`tumorsyn.organs.LABEL_CONVENTIONS`) and, unless ``organ_labels``
    is given, (2) it knows ``organ`` and (3) at least one value means the organ itself (not a lesion),
    so that a tumour has a host.
    """
    values = frozenset(int(v) for v in values if v != 0)
    fits = []
    for preset in AUTO_PRESETS:
        allowed = PRESET_VALUES[preset]
        if not (len(values) == 1 if allowed is None else values and values <= allowed):
            continue
        if organ_labels is None:
            if organ not in LABEL_PRESETS[preset]:
                continue
            roles = label_roles(values, organ, preset, lesion_labels=lesion_labels)
            if "organ" not in roles.values():
                continue
        fits.append(preset)
    return fits


def _meanings(organ: str) -> str:
    """``binary: one non-zero value; decathlon: 1 organ, 2 tumour; ...`` in :data:`AUTO_PRESETS` order."""
    return "; ".join(f"{p}: {LABEL_CONVENTIONS[p].meaning.format(organ=organ)}" for p in AUTO_PRESETS)


def _describe(roles: dict[int, str], organ: str) -> str:
    names = {"organ": organ, "lesion": "lesion", "other": "another structure"}
    parts = [f"{names[role]} = {format_values(v for v, r in roles.items() if r == role)}"
             for role in ("organ", "lesion", "other") if role in roles.values()]
    return "; ".join(parts)


def choose_label_preset(values: Iterable[int], organ: str, *, organ_labels: Iterable[int] | None = None,
                        lesion_labels: Iterable[int] | None = None, where: str = "the label maps",
                        path=None) -> str:
    """The preset ``auto`` stands for, decided from every non-zero label value of a dataset.

    Presets that fit (see :func:`fitting_presets`) and give every present value the same meaning
    (organ, lesion or another structure) are one answer, reported as the first of
    :data:`AUTO_PRESETS`; presets that fit with different meanings are never chosen between.

    Parameters
    ----------
    values : iterable of int
        Union of the label values found in all label maps of the dataset.
    organ : str
    organ_labels, lesion_labels : iterable of int, optional
        Explicit values (``--organ-label``, ``--lesion-label``); with both, no preset is needed and
        :data:`EXPLICIT_LABELS` is returned.
    where : str
        Words for the label maps in messages (e.g. ``"12 label maps"``).
    path : str or Path, optional
        File (or folder) the error names.

    Raises
    ------
    ConfigError
        When no preset fits, or presets with different meanings fit.
    """
    values = frozenset(int(v) for v in values if v != 0)
    if organ_labels is not None and lesion_labels is not None:
        return EXPLICIT_LABELS
    if not values:
        # Nothing is labelled, so no meanings conflict; each case then fails with its empty-organ error.
        return "binary"
    fits = fitting_presets(values, organ, organ_labels=organ_labels, lesion_labels=lesion_labels)
    if not fits:
        raise ConfigError(
            f"label values {format_values(values)} in {where} fit no label preset for the {organ} "
            f"({_meanings(organ)}); give --label-preset or --organ-label K", path=path)
    meanings = {p: label_roles(values, organ, p, organ_labels=organ_labels, lesion_labels=lesion_labels) for p in fits}
    if len({tuple(sorted(m.items())) for m in meanings.values()}) > 1:
        listed = " vs ".join(f"{p} ({_describe(m, organ)})" for p, m in meanings.items())
        raise ConfigError(
            f"label values {format_values(values)} in {where} fit label presets that mean different things: "
            f"{listed}; auto does not guess: give --label-preset {' or --label-preset '.join(fits)}", path=path)
    return fits[0]


def tumor_label_value(labels: np.ndarray, *, label_preset: str | None, organ_labels: Iterable[int] | None,
                      tumor_label: int | None) -> int:
    """The label value written where a tumour is visible.

    ``tumor_label`` when given; else the preset's first lesion label (decathlon and KiTS: 2) unless
    explicit ``organ_labels`` replace the preset; else the label map's largest value + 1 (2 for a
    binary organ mask; 118 for the bundled TotalSegmentator example). One rule for the MONAI and the
    TorchIO transforms.
    """
    if tumor_label is not None:
        return int(tumor_label)
    lesion = () if organ_labels is not None else LABEL_PRESETS.get(label_preset or "binary", {}).get("lesion", ())
    if lesion:
        return int(lesion[0])
    return max(int(labels.max()), 1) + 1
