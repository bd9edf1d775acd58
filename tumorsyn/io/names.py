"""The one rule for output file names: ``<case>_<role><ext>``, and its inverse.

``tumorsyn generate`` (``<case>_ct``, ``<case>_tumor``, ``<case>_label``, ``<case>_preview``),
``tumorsyn segment predict`` (``<case>_tumor``, ``<case>_organ``, ``probabilities/<case>_pred``) and
``tumorsyn evaluate`` (which reads such files back by case id) all name files here.

The case id is the one :func:`tumorsyn.io.cases.case_ids` derives (``3Dircadb1.7/ct.nii.gz`` ->
``3Dircadb1.7``). A case id that already ends in a role word is not doubled: the role word is
dropped before the role is added, so ``patient1_ct`` gives ``patient1_ct.nii.gz`` and
``patient1_tumor.nii.gz`` (not ``patient1_ct_ct.nii.gz``), a pair that reads back as case
``patient1`` everywhere (the ``<id>_ct`` + ``<id>_tumor`` pairs layout, ``tumorsyn evaluate``).
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["ROLES", "READ_SUFFIXES", "file_stem", "output_name", "case_id_of_file", "other_role"]

# Role words of the files tumorsyn writes.
ROLES = ("ct", "tumor", "label", "organ", "pred", "preview")
# Trailing words a mask file's name loses when it is read back as a case id (``tumorsyn evaluate``):
# nnU-Net's channel suffix, tumorsyn's mask roles and common mask names. Not ``ct``: a CT named
# ``p1_ct.nii.gz`` is case ``p1_ct`` (tumorsyn.io.cases), and so is its reference mask ``p1_ct.nii.gz``.
READ_SUFFIXES = ("0000", "pred", "seg", "tumor", "tumour", "label", "labels", "gt", "organ")
# Roles of files that lie beside the masks a reader wants in tumorsyn's output folders: a folder of
# ``segment predict`` holds <id>_tumor and <id>_organ. (Not ``ct``: a mask may be named like its CT.)
_NOT_READ = {"tumour": ("organ",), "organ": ("tumor", "pred")}


def file_stem(case_id: str) -> str:
    """The name part before the role: ``case_id`` without one trailing ``_<role>`` (where something remains)."""
    for role in ROLES:
        if case_id.endswith(f"_{role}") and len(case_id) > len(role) + 1:
            return case_id[: -len(role) - 1]
    return case_id


def output_name(case_id: str, role: str, ext: str = ".nii.gz") -> str:
    """The file name of one output: ``<stem>_<role><ext>`` (``ext`` empty for a folder such as a DICOM series).

    Examples
    --------
    >>> output_name("3Dircadb1.7", "ct"), output_name("patient1_ct", "ct"), output_name("patient1_ct", "tumor")
    ('3Dircadb1.7_ct.nii.gz', 'patient1_ct.nii.gz', 'patient1_tumor.nii.gz')
    """
    if role not in ROLES and not role.startswith("step"):
        raise ValueError(f"unknown output role {role!r}")
    return f"{file_stem(case_id)}_{role}{ext}"


def case_id_of_file(stem: str, suffixes: Iterable[str] | None = None) -> str:
    """The case id of a file name without extension: trailing ``_<role>`` words removed, repeatedly.

    At least one character is kept (a file called ``_seg`` keeps its name). ``suffixes`` defaults to
    :data:`READ_SUFFIXES`.

    Examples
    --------
    >>> case_id_of_file("liver_7_0000"), case_id_of_file("p1_tumor"), case_id_of_file("p1_ct_tumor")
    ('liver_7', 'p1', 'p1')
    """
    words = tuple(suffixes) if suffixes is not None else READ_SUFFIXES
    stripped = True
    while stripped:
        stripped = False
        for word in words:
            if stem.endswith(f"_{word}") and len(stem) > len(word) + 1:
                stem = stem[: -len(word) - 1]
                stripped = True
    return stem


def other_role(stem: str, wanted: str) -> bool:
    """Whether a file (name without extension) is tumorsyn's output of a role other than ``wanted`` (``tumour``
    or ``organ``): ``p1_organ`` in a folder of predicted tumours, ``p1_tumor`` among organ masks."""
    return any(stem.endswith(f"_{role}") and len(stem) > len(role) + 1 for role in _NOT_READ[wanted])
