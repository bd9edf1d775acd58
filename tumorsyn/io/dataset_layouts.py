"""Dataset layouts to write: an nnU-Net v2 raw dataset or a Medical Segmentation Decathlon task folder.

``tumorsyn generate --out-layout nnunet|decathlon`` writes an enriched dataset that a segmentation
framework trains on as it is. This module knows only the layouts: folder and file names, the label
map written into ``labelsTr/`` and the ``dataset.json`` of each; the run (what to write, when a
dataset is complete) lives in ``synthesize``.

nnU-Net v2 (``Dataset<ID>_<NAME>/``)::

    imagesTr/<case>_0000.nii.gz   the CT (channel 0, "CT": nnU-Net's CT normalisation)
    labelsTr/<case>.nii.gz        0 background, 1 organ, 2 tumour (see ``DATASET_LABELS``)
    dataset.json                  channel_names, labels, numTraining, file_ending + "tumorsyn" provenance

Decathlon (``Task<ID>_<NAME>/``)::

    imagesTr/<case>.nii.gz, labelsTr/<case>.nii.gz, imagesTs/ (empty)
    dataset.json                  name, modality, labels, numTraining, training list + provenance

Both also hold ``tumorsTr/<case>.nii.gz`` (the synthetic tumour alone, uint8: the label map merges
it with the scan's own lesions) and, with ``--preview``, ``previews/``; neither framework reads them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from tumorsyn.errors import ConfigError
from tumorsyn.io.writers import atomic_path

__all__ = ["OUT_LAYOUTS", "DATASET_LABELS", "ORIGINAL_SUFFIX", "DatasetLayout", "original_id", "write_dataset_json"]

# What --out-layout accepts; "flat" is the <id>_ct / <id>_tumor folder, written without this module.
OUT_LAYOUTS = ("flat", "nnunet", "decathlon")
# What --dataset-labels accepts: the classes of labelsTr/.
#   organ-tumor: 0 background, 1 organ (without lesions), 2 tumour (synthetic and the scan's own lesions)
#   tumor:       0 background (organ included), 1 tumour
DATASET_LABELS = ("organ-tumor", "tumor")
# Case id of an unmodified input copied beside its synthetic outputs (--include-originals).
ORIGINAL_SUFFIX = "_orig"
TUMOR_CLASS = "tumor"
# nnU-Net names datasets Dataset%03d_<name> (ids 1-999); the MSD converter splits Task<ID>_<name> at
# the one '_', so a decathlon name holds none.
_NAME = {"nnunet": re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$"), "decathlon": re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")}
_NAME_RULE = {"nnunet": "letters, digits, '-' and '_'", "decathlon": "letters, digits and '-' (no '_': nnU-Net's "
              "MSD converter splits Task<ID>_<NAME> at its one '_')"}


def original_id(case_id: str) -> str:
    """Case id of the unmodified copy of input case ``case_id``: ``<case>_orig``."""
    return f"{case_id}{ORIGINAL_SUFFIX}"


@dataclass(frozen=True)
class DatasetLayout:
    """An enriched dataset's layout: kind, id and name, label classes, and whether originals are copied.

    Parameters
    ----------
    kind : {'nnunet', 'decathlon'}
    dataset_id : int
        1-999: ``Dataset501_<name>`` (nnU-Net) or ``Task501_<name>`` (decathlon).
    name : str
        The dataset's name (see ``_NAME`` for the characters allowed).
    labels : {'organ-tumor', 'tumor'}
        Classes of ``labelsTr/`` (:data:`DATASET_LABELS`).
    include_originals : bool
        Also write every input case unmodified, as ``<case>_orig``.

    Raises
    ------
    ConfigError
        A kind, id, name or label choice out of range, naming the option.
    """

    kind: str
    dataset_id: int
    name: str
    labels: str = "organ-tumor"
    include_originals: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OUT_LAYOUTS[1:]:
            raise ConfigError(f"--out-layout {self.kind!r}: choose one of {', '.join(OUT_LAYOUTS)}")
        if isinstance(self.dataset_id, bool) or not isinstance(self.dataset_id, int) or not 1 <= self.dataset_id <= 999:
            raise ConfigError(f"--dataset-id {self.dataset_id!r}: give a whole number from 1 to 999 (nnU-Net names "
                              f"datasets Dataset001 ... Dataset999)")
        if not isinstance(self.name, str) or not _NAME[self.kind].match(self.name):
            raise ConfigError(f"--dataset-name {self.name!r}: with --out-layout {self.kind} a name holds "
                              f"{_NAME_RULE[self.kind]}, and starts with a letter or digit")
        if self.labels not in DATASET_LABELS:
            raise ConfigError(f"--dataset-labels {self.labels!r}: choose one of {', '.join(DATASET_LABELS)}")

    # ------------------------------------------------------------ names

    @property
    def folder_name(self) -> str:
        """``Dataset501_LiverTumorSyn`` (nnU-Net) or ``Task501_LiverTumorSyn`` (decathlon)."""
        prefix = "Dataset" if self.kind == "nnunet" else "Task"
        return f"{prefix}{self.dataset_id:03d}_{self.name}"

    @property
    def subfolders(self) -> tuple[str, ...]:
        """Folders of the dataset that outputs go into (``imagesTs`` only because MSD tools require it)."""
        extra = ("imagesTs",) if self.kind == "decathlon" else ()
        return ("imagesTr", "labelsTr", "tumorsTr", "previews", *extra)

    def file_names(self, case_id: str, *, original: bool = False, preview: bool = False) -> dict[str, str]:
        """Role -> path (relative to the dataset folder) of one output's files.

        Roles as in the flat layout's manifest records: ``ct`` (the image), ``label`` (the label
        map), ``tumor`` (the synthetic tumour alone; not for originals) and ``preview``.
        """
        channel = "_0000" if self.kind == "nnunet" else ""  # nnU-Net v2: one file per channel
        names = {"ct": f"imagesTr/{case_id}{channel}.nii.gz", "label": f"labelsTr/{case_id}.nii.gz"}
        if not original:
            names["tumor"] = f"tumorsTr/{case_id}.nii.gz"
            if preview:
                names["preview"] = f"previews/{case_id}_preview.png"
        return names

    # ------------------------------------------------------------ labels

    def label_map(self, organ: str) -> dict[str, int]:
        """Class name -> value of ``labelsTr/`` (nnU-Net v2's ``labels``), e.g. background 0, liver 1, tumor 2."""
        if self.labels == "tumor":
            return {"background": 0, TUMOR_CLASS: 1}
        return {"background": 0, organ: 1, TUMOR_CLASS: 2}

    def label_array(self, organ: np.ndarray, lesions: np.ndarray, tumor: np.ndarray) -> np.ndarray:
        """The ``labelsTr/`` map (uint8) of one output.

        Parameters
        ----------
        organ : ndarray of bool, shape (X, Y, Z)
            The host organ as the label preset reads it (lesion values inside it included).
        lesions : ndarray of bool, shape (X, Y, Z)
            The scan's own lesions (the preset's or --lesion-label's values): they stay tumour,
            never organ.
        tumor : ndarray, shape (X, Y, Z)
            The synthetic tumours (non-zero), exophytic parts outside the organ included.
        """
        tumour = lesions | (np.asarray(tumor) > 0)
        if self.labels == "tumor":
            return tumour.astype(np.uint8)
        out = organ.astype(np.uint8)
        out[tumour] = 2
        return out

    # ------------------------------------------------------------ dataset.json

    def dataset_json(self, case_ids: list[str], organ: str, provenance: dict) -> dict:
        """The ``dataset.json`` of a complete dataset holding ``case_ids`` (sorted), with ``provenance``."""
        labels = self.label_map(organ)
        description = (f"{organ} CT with synthetic tumours written by tumorsyn {provenance.get('version', '')}".strip()
                       + "; every tumour's spec is in the manifest")
        if self.kind == "nnunet":
            return {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(case_ids),
                    "file_ending": ".nii.gz", "name": self.name, "description": description, "tumorsyn": provenance}
        return {"name": self.name, "description": description, "tensorImageSize": "3D",
                "modality": {"0": "CT"}, "labels": {str(v): k for k, v in labels.items()},
                "numTraining": len(case_ids), "numTest": 0,
                "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids],
                "test": [], "tumorsyn": provenance}


def write_dataset_json(path, data: dict) -> None:
    """Write ``dataset.json`` atomically: it appears whole or not at all (it marks a dataset complete)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
