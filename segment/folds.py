"""Folds of the real-vs-synthetic experiment: which real tumours train, which are tested, where each fold is scored.

Two rules, chosen by ``experiment.folds.kind`` (docs/experiment.md states the design):

``slabs``
    One scan with many tumours (LiTS-117) cut in two along an array axis with a gap of slices between
    the slabs. A tumour wholly in one slab belongs to that slab's fold; a tumour touching the gap or
    lying on both sides of it is tested by no arm. Fold ``X`` is *tested* on slab ``X`` and *trained*
    on a copy of the other slab alone (the scan cut before any cropping or patch sampling, so no
    training patch can hold a voxel of the test slab or the gap). Its evaluation mask is the organ
    inside slab ``X`` minus the untested tumours grown by ``exclude_margin_voxels`` (26-connected),
    with every voxel of fold ``X``'s own tumours kept.
``patients``
    K folds of whole scans (a user's dataset), stratified by the size bin of each scan's smallest
    tumour (maximum diameter); fold ``i`` is tested on its scans and trained on the others'.

:func:`build_folds` writes what each fold needs into ``<out>/folds/<fold>/`` (training copies,
reference and evaluation masks) and returns the :class:`Fold` records; :func:`check_design` re-reads
those files and checks the design rules (folds disjoint, no test tumour voxel in any training
region, each tested lesion tested once).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tumorsyn.errors import ConfigError
from tumorsyn.io.cases import Case

__all__ = ["FOLD_KINDS", "Fold", "TestScan", "build_folds", "load_folds", "check_design", "slab_lesion_folds"]

FOLD_KINDS = ("slabs", "patients")
_NEIGHBOURS_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass
class TestScan:
    """One scored scan of a fold: the CT, its reference tumours and evaluation mask (same grid)."""

    case_id: str
    scan_id: str            # the scan predicted (one prediction serves every fold of the scan)
    ct: str
    reference: str          # the fold's tested tumours (uint8 0/1)
    evaluation_mask: str    # where lesions and predictions are scored
    organ: str              # the organ mask given to the predictor


@dataclass
class Fold:
    """One fold: the real training cases (config entries) and the scans it is tested on."""

    name: str
    train_cases: list[dict]
    test: list[TestScan]
    tested_lesions: int
    facts: dict = field(default_factory=dict)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    return ndimage.label(mask, structure=_NEIGHBOURS_26)


def slab_lesion_folds(tumor: np.ndarray, axis: int, gap: Sequence[int]) -> tuple[np.ndarray, int, list[str]]:
    """Each 26-connected tumour's fold: ``"A"`` (before the gap), ``"B"`` (after it) or ``"untested"``.

    Parameters
    ----------
    tumor : ndarray of bool, shape (X, Y, Z)
    axis : int
        The array axis the slabs are cut along.
    gap : (int, int)
        First and last slice of the gap (inclusive).

    Returns
    -------
    components, count, folds
        The component labels (1 .. count), their number, and ``folds[i - 1]`` for component ``i``.
    """
    from scipy import ndimage

    first, last = int(gap[0]), int(gap[1])
    components, count = _components(tumor)
    folds = []
    for box in ndimage.find_objects(components):
        lo, hi = box[axis].start, box[axis].stop - 1
        folds.append("A" if hi < first else "B" if lo > last else "untested")
    return components, count, folds


def _save(path: Path, array: np.ndarray, affine: np.ndarray) -> str:
    """Write a canonical (X, Y, Z) array as NIfTI (atomically) and return its path."""
    import nibabel as nib

    from tumorsyn.io.writers import write_raw_nifti

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array, dtype=np.uint8 if array.dtype == bool else array.dtype)
    image = nib.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    write_raw_nifti(path, data, image.header)
    return str(path)


def _save_like(path: Path, scan, mask: np.ndarray) -> str:
    """Write a canonical mask on ``scan``'s own grid (where predictions of the scan are written) and return its path."""
    from tumorsyn.io.writers import write_mask_like

    path.parent.mkdir(parents=True, exist_ok=True)
    write_mask_like(path, scan, mask)
    return str(path)


def _slab(shape: Sequence[int], axis: int, start: int, stop: int) -> tuple[slice, ...]:
    return tuple(slice(start, stop) if a == axis else slice(0, n) for a, n in enumerate(shape))


def _slab_folds(case: Case, organ: str, folds_cfg: dict, out: Path) -> list[Fold]:
    from scipy import ndimage

    from tumorsyn.lesion_size import equivalent_diameter_mm, max_diameter_mm

    from segment.data import read_case_masks

    scan, organ_mask, tumor = read_case_masks(case, organ)
    axis, gap = int(folds_cfg["axis"]), [int(g) for g in folds_cfg["gap"]]
    n = scan.shape[axis]
    if not 0 < gap[0] <= gap[1] < n - 1:
        raise ConfigError(f"experiment.folds.gap {gap} must lie inside the scan's {n} slices along axis {axis}, "
                          "with slices on both sides")
    components, count, lesion_fold = slab_lesion_folds(tumor, axis, gap)
    affine = scan.canonical_affine
    hu = scan.values()
    liver = organ_mask | tumor
    untested = np.isin(components, [i + 1 for i, f in enumerate(lesion_fold) if f == "untested"])
    untested_grown = ndimage.binary_dilation(untested, structure=_NEIGHBOURS_26,
                                             iterations=int(folds_cfg["exclude_margin_voxels"])) \
        if untested.any() and folds_cfg["exclude_margin_voxels"] > 0 else untested
    slabs = {"A": (0, gap[0]), "B": (gap[1] + 1, n)}
    folder = out / "folds"
    organ_path = _save_like(folder / f"{case.case_id}_organ.nii.gz", scan, liver)
    lesions = []
    for i, f in enumerate(lesion_fold):
        comp = components == i + 1
        lesions.append({"lesion": i + 1, "fold": f, "voxels": int(comp.sum()),
                        "max_diameter_mm": round(max_diameter_mm(comp, scan.spacing_mm), 3),
                        "equivalent_diameter_mm": round(equivalent_diameter_mm(comp, scan.spacing_mm), 3)})
    result = []
    for test_name, train_name in (("A", "B"), ("B", "A")):
        fold_dir = folder / test_name
        # Training copy: the other slab alone, cut before anything else reads the scan.
        lo, hi = slabs[train_name]
        box = _slab(scan.shape, axis, lo, hi)
        shift = np.eye(4)
        shift[axis, 3] = lo
        train_affine = affine @ shift
        labels = np.zeros(scan.shape, dtype=np.uint8)
        labels[organ_mask] = 1
        labels[tumor] = 2
        train_id = f"{case.case_id}_slab{train_name}"
        train_case = {"id": train_id, "ct": _save(fold_dir / "train" / f"{train_id}_ct.nii.gz",
                                                  hu[box].astype(np.float32), train_affine),
                      "labels": _save(fold_dir / "train" / f"{train_id}_labels.nii.gz", labels[box], train_affine),
                      "label_preset": "decathlon"}
        # Scoring: the fold's own tumours; the organ inside the test slab minus the grown untested tumours.
        in_fold = np.isin(components, [i + 1 for i, f in enumerate(lesion_fold) if f == test_name])
        region = np.zeros(scan.shape, dtype=bool)
        region[_slab(scan.shape, axis, *slabs[test_name])] = True
        evaluation = (liver & region & ~untested_grown) | in_fold
        test = TestScan(case_id=f"{case.case_id}_{test_name}", scan_id=case.case_id, ct=str(case.ct),
                        reference=_save_like(fold_dir / "test" / "reference.nii.gz", scan, in_fold),
                        evaluation_mask=_save_like(fold_dir / "test" / "evaluation_mask.nii.gz", scan, evaluation),
                        organ=organ_path)
        result.append(Fold(name=test_name, train_cases=[train_case], test=[test],
                           tested_lesions=sum(f == test_name for f in lesion_fold),
                           facts={"kind": "slabs", "scan": case.case_id, "axis": axis, "gap": gap,
                                  "test_slices": list(slabs[test_name]), "train_slices": [lo, hi],
                                  "lesions": [les for les in lesions if les["fold"] == test_name]}))
    (folder / "lesions.json").write_text(json.dumps({"scan": case.case_id, "axis": axis, "gap": gap,
                                                     "lesions": lesions}, indent=1))
    return result


def _case_entry(case: Case) -> dict:
    """A config entry that reads ``case`` again (``data.real.cases``)."""
    entry: dict = {"id": case.case_id, "ct": str(case.ct)}
    if case.labels is not None:
        entry.update(labels=str(case.labels), label_preset=case.label_preset)
    if case.organ_mask is not None:
        entry["organ"] = str(case.organ_mask)
    if case.tumor_masks:
        entry["tumor"] = [str(t) for t in case.tumor_masks]
    for key in ("organ_labels", "tumor_labels"):
        if getattr(case, key):
            entry[key] = list(getattr(case, key))
    return entry


def _patient_folds(cases: Sequence[Case], organ: str, folds_cfg: dict, seed: int, out: Path) -> list[Fold]:
    from tumorsyn.lesion_size import max_diameter_mm
    from tumorsyn.metrics.sizes import size_bin_index

    from segment.data import read_case_masks

    k = int(folds_cfg["k"])
    if len(cases) < k:
        raise ConfigError(f"experiment.folds.k = {k} but data.real holds {len(cases)} case(s); "
                          "give at least k scans with real tumours")
    strata: dict[int, list] = {}
    written = {}
    for case in cases:
        scan, organ_mask, tumor = read_case_masks(case, organ)
        components, count = _components(tumor)
        sizes = [max_diameter_mm(components == i, scan.spacing_mm) for i in range(1, count + 1)]
        stratum = size_bin_index(min(sizes), folds_cfg["stratify_bins_mm"]) if sizes else -1
        strata.setdefault(stratum, []).append(case)
        folder = out / "folds" / "scans"
        written[case.case_id] = (
            _save_like(folder / f"{case.case_id}_reference.nii.gz", scan, tumor),
            _save_like(folder / f"{case.case_id}_organ.nii.gz", scan, organ_mask | tumor), count)
    # Deal each stratum's scans (in a seeded order) round robin over the folds.
    rng = np.random.default_rng([int(seed), 17])
    members: list[list[Case]] = [[] for _ in range(k)]
    turn = 0
    for stratum in sorted(strata):
        group = sorted(strata[stratum], key=lambda c: c.case_id)
        for j in rng.permutation(len(group)):
            members[turn % k].append(group[j])
            turn += 1
    folds = []
    for i, test_cases in enumerate(members):
        test_ids = {c.case_id for c in test_cases}
        folds.append(Fold(
            name=f"fold{i}", train_cases=[_case_entry(c) for c in cases if c.case_id not in test_ids],
            test=[TestScan(case_id=c.case_id, scan_id=c.case_id, ct=str(c.ct), reference=written[c.case_id][0],
                           evaluation_mask=written[c.case_id][1], organ=written[c.case_id][1]) for c in test_cases],
            tested_lesions=sum(written[c.case_id][2] for c in test_cases),
            facts={"kind": "patients", "test_cases": sorted(test_ids)}))
    return folds


def build_folds(config: dict, out: Path) -> list[Fold]:
    """The folds of ``experiment.folds``, their files written under ``out/folds``; ``folds.json`` records them."""
    from segment.data import source_cases

    folds_cfg = config["experiment"]["folds"]
    if folds_cfg["kind"] == "slabs":
        cases = source_cases({"cases": [folds_cfg["scan"]], "label_preset": folds_cfg["label_preset"]},
                             "experiment.folds.scan")
        folds = _slab_folds(cases[0], config["organ"], folds_cfg, out)
    else:
        folds = _patient_folds(source_cases(config["data"]["real"], "data.real"), config["organ"], folds_cfg,
                               config["seed"], out)
    (out / "folds" / "folds.json").write_text(json.dumps([asdict(f) for f in folds], indent=1, default=str))
    return folds


def load_folds(out: Path) -> list[Fold]:
    """The folds :func:`build_folds` recorded in ``out/folds/folds.json``."""
    records = json.loads((Path(out) / "folds" / "folds.json").read_text())
    return [Fold(name=r["name"], train_cases=r["train_cases"], test=[TestScan(**t) for t in r["test"]],
                 tested_lesions=r["tested_lesions"], facts=r["facts"]) for r in records]


def _load_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    from tumorsyn.io import load_labels
    from tumorsyn.io.labels import label_values

    scan = load_labels(path)
    return label_values(scan) != 0, scan.canonical_affine


def check_design(folds: Sequence[Fold]) -> dict:
    """Re-read the fold files and check the design rules; return ``{rule: true/false, ...}`` with the counts.

    Rules: the test scans' evaluation regions of different folds over one scan are disjoint; no
    voxel of a test tumour lies in any training copy of its scan (matched by world position); each
    tested lesion is scored by exactly one fold; every tested tumour voxel is inside its
    evaluation mask.
    """
    import nibabel as nib

    by_scan: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    tumour_inside = True
    for fold in folds:
        for test in fold.test:
            reference, affine = _load_mask(test.reference)
            evaluation, _ = _load_mask(test.evaluation_mask)
            tumour_inside &= bool(evaluation[reference].all())
            by_scan.setdefault(test.ct, []).append((fold.name, reference, evaluation, affine))
    disjoint = all(not (a[2] & b[2]).any() for scans in by_scan.values()
                   for i, a in enumerate(scans) for b in scans[i + 1:])
    lesion_counts: dict[str, int] = {}
    once = True
    for scans in by_scan.values():
        coverage = sum(s[1].astype(np.int32) for s in scans)
        once &= bool(coverage.max() <= 1)
        lesion_counts.update({s[0]: int(_components(s[1])[1]) for s in scans})

    # Test tumours inside training copies: each reference voxel's world position on every training grid.
    leaks = 0
    for fold in folds:
        for entry in fold.train_cases:
            train_img = nib.load(str(entry["ct"]))
            to_train = np.linalg.inv(train_img.affine)
            for test in fold.test:
                reference, affine = _load_mask(test.reference)
                if entry["id"] == test.case_id or str(entry["ct"]) == test.ct:
                    leaks += 1
                    continue
                if fold.facts.get("kind") != "slabs":
                    continue  # another patient's scan: no voxel of this test scan in it
                points = np.c_[np.argwhere(reference), np.ones(int(reference.sum()))] @ (to_train @ affine).T
                vox = np.rint(points[:, :3]).astype(int)
                inside = ((vox >= 0) & (vox < np.array(train_img.shape[:3]))).all(axis=1)
                leaks += int(inside.any())
    return {"folds_disjoint": disjoint, "no_test_tumour_in_training": leaks == 0, "each_lesion_tested_once": once,
            "tested_tumours_inside_evaluation_mask": tumour_inside, "tested_lesions_per_fold": lesion_counts,
            "training_copies_holding_a_test_tumour": leaks}
