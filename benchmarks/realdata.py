"""The real tumours the realism benchmark compares with, and their fixed calibration/test split.

One place that knows where the real lesions are, how each is described, and which half of them a
generator may be calibrated on. ``bench_realism.py`` reports realism on the TEST half (and on all);
prior-fitting scripts must use only the CALIBRATION half, so that what is reported was not fitted.

Data root: the folder named by ``$TUMORSYN_REAL_DATA``, else ``../shared/data/real`` beside the repository
(:func:`tumorsyn.configfile.real_data_dir`, the rule configs' ``${REAL}`` follows). The data
are non-commercial (3D-IRCADb, LiTS): they are read in place, never copied into the repository.
Files are read only through :mod:`tumorsyn.io` (canonical RAS+ arrays, HU).

Sources and the split (fixed; do not change it after looking at test results)
------------------------------------------------------------------------------
``lits117`` (liver, CT)
    ``lits117/ct.nii.gz`` and ``label.nii.gz`` (0 background, 1 liver, 2 tumour), 128^3 at
    1.36 x 1.36 x 1.6 mm. Lesions are the 26-connected components of label 2 (70), each described
    on the whole CT. **Spatial split**: a lesion whose centroid index along array axis 2 is < 64 is
    CALIBRATION, otherwise TEST (two slabs of the same scan).
``ircadb1`` (liver, CT)
    3D-IRCADb patient 1: ``ct.nii.gz``, ``masks/liver.nii.gz``, ``masks/livertumor01..07.nii.gz``
    (each file one lesion), 0.57 x 0.57 x 1.6 mm; ``masks/liverkyst.nii.gz`` is a cyst, kept out of
    every shell, ring and vessel search (``exclude=``) and not described. **TEST only.**
``ircadb2-10`` (liver, masks only)
    3D-IRCADb patients 2-6 and 8-10: ``masks/liver.nii.gz`` and the tumour mask(s)
    (``livertumor.nii.gz``, or ``livertumor01..`` where that is how the patient is stored; patient 5
    has no liver-tumour mask and adds no lesion); no CT,
    so a constant CT is passed and only the size and shape descriptors are kept (every host,
    intensity and context descriptor is NaN). **CALIBRATION only.** (Patient 7 has no liver
    lesion: it is the benchmark's healthy host.)
``msd_pancreas`` (pancreas, masks only)
    ``lesion_masks/msd_pancreas/*.nii.gz`` (MSD Task07 via ULS23; float 0/1, one lesion crop per
    file, no CT, no organ mask): size and shape descriptors only. Sorted by file name, files at even
    positions (0, 2, ...) are CALIBRATION, odd positions TEST.
Kidney
    No real kidney tumour is available here: :func:`real_lesion_rows` returns ``[]`` for it.

Every row is a :func:`tumorsyn.metrics.realism.describe_case` row plus ``source``, ``split``
(``"calibration"`` or ``"test"``), ``has_ct`` (False for mask-only sources) and ``spacing_mm``.
Lesions under ``MIN_VOXELS`` voxels are left out (as ``tumorsyn realism --min-voxels 3``). Rows are
described once per process and cached.

Example
-------
>>> import realdata                                  # doctest: +SKIP
>>> rows = realdata.real_lesion_rows("liver", "test")   # doctest: +SKIP
>>> sorted({r["source"] for r in rows})              # doctest: +SKIP
['ircadb1', 'lits117']
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["MIN_VOXELS", "ORGANS", "RealDataMissing", "SHAPE_ONLY_GROUPS", "SOURCES", "SPLITS", "data_root",
           "describe_source", "lits_rows_on_grid", "lits_split", "missing_sources", "real_lesion_rows"]

MIN_VOXELS = 3
SPLITS = ("calibration", "test", "all")
# The LiTS-117 slab boundary: centroid index along array axis 2 below it -> calibration.
LITS_SPLIT_INDEX = 64
# Descriptor groups a mask-only source keeps.
SHAPE_ONLY_GROUPS = ("size", "shape")
# source -> (organ, has CT, relative path that must exist)
SOURCES: dict[str, tuple[str, bool, str]] = {
    "lits117": ("liver", True, "lits117/label.nii.gz"),
    "ircadb1": ("liver", True, "3dircadb1/3Dircadb1.1/ct.nii.gz"),
    "ircadb2-10": ("liver", False, "3dircadb1/3Dircadb1.2/masks/liver.nii.gz"),
    "msd_pancreas": ("pancreas", False, "lesion_masks/msd_pancreas/summary.json"),
}
ORGANS = ("liver", "pancreas", "kidney")
_IRCADB_SHAPE_PATIENTS = (2, 3, 4, 5, 6, 8, 9, 10)
_CACHE: dict[str, list[dict]] = {}


class RealDataMissing(FileNotFoundError):
    """A real-data file the caller asked for is not there (one line: the path, then what to do)."""


def data_root() -> Path:
    """Folder of the real data: ``$TUMORSYN_REAL_DATA``, else ``../shared/data/real`` beside the repository."""
    from tumorsyn.configfile import real_data_dir

    return real_data_dir()[0]


def _need(path: Path) -> Path:
    if not path.exists():
        raise RealDataMissing(f"{path}: real data not found; put it there (see shared/data/README.md) or set "
                              "TUMORSYN_REAL_DATA to the folder holding lits117/, 3dircadb1/ and lesion_masks/")
    return path


def missing_sources(organ: str | None = None) -> dict[str, str]:
    """Sources (of ``organ``, or all) whose data are absent, with the reason; empty when all are there."""
    out = {}
    for name, (src_organ, _, rel) in SOURCES.items():
        if organ not in (None, src_organ):
            continue
        path = data_root() / rel
        if not path.exists():
            out[name] = f"{path} not found"
    return out


def lits_split(centroid_axis2_vox: float) -> str:
    """The LiTS-117 half a lesion belongs to, from its centroid index along array axis 2."""
    return "calibration" if centroid_axis2_vox < LITS_SPLIT_INDEX else "test"


def _mask(path: Path, *, ref=None) -> np.ndarray:
    from tumorsyn.io import load_labels
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.scan import check_same_grid

    scan = load_labels(_need(path))
    if ref is not None:
        check_same_grid(ref, scan)
    return label_values(scan) != 0


def _blank_non_shape(row: dict) -> dict:
    """Keep size and shape only: a mask-only source has no HU, and its context was not measured."""
    from tumorsyn.metrics.realism import DESCRIPTORS

    for name, (group, _, _) in DESCRIPTORS.items():
        if group not in SHAPE_ONLY_GROUPS:
            row[name] = math.nan
    return row


def _tag(rows: list[dict], source: str, split: str | None, has_ct: bool, spacing) -> list[dict]:
    out = []
    for row in rows:
        if not row["described"]:
            continue  # under MIN_VOXELS
        row.update(source=source, has_ct=has_ct, spacing_mm=tuple(float(s) for s in spacing),
                   split=split if split is not None else lits_split(row["centroid_z_vox"]))
        out.append(row if has_ct else _blank_non_shape(row))
    return out


def _describe_lits() -> list[dict]:
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.scan import check_same_grid
    from tumorsyn.metrics.realism import describe_case

    root = data_root() / "lits117"
    ct = load_scan(_need(root / "ct.nii.gz"))
    labels = load_labels(_need(root / "label.nii.gz"))
    check_same_grid(ct, labels)
    values = label_values(labels)
    rows = describe_case(ct.values(), values == 2, values >= 1, ct.spacing_mm, organ="liver",
                         min_voxels=MIN_VOXELS, case_id="lits117")
    return _tag(rows, "lits117", None, True, ct.spacing_mm)


def _describe_ircadb1() -> list[dict]:
    from tumorsyn.io import load_scan
    from tumorsyn.metrics.realism import describe_case

    root = data_root() / "3dircadb1/3Dircadb1.1"
    ct = load_scan(_need(root / "ct.nii.gz"))
    liver = _mask(root / "masks/liver.nii.gz", ref=ct)
    ids = np.zeros(ct.shape, dtype=np.int32)
    for k in range(1, 8):  # each file is one annotated lesion
        ids[_mask(root / f"masks/livertumor{k:02d}.nii.gz", ref=ct)] = k
    cyst = _mask(root / "masks/liverkyst.nii.gz", ref=ct)
    rows = describe_case(ct.values(), ids, liver, ct.spacing_mm, organ="liver", labelled=True, exclude=cyst & (ids == 0),
                         min_voxels=MIN_VOXELS, case_id="ircadb1")
    return _tag(rows, "ircadb1", "test", True, ct.spacing_mm)


def _shape_rows(lesion: np.ndarray, organ: np.ndarray, spacing, organ_name: str, case_id: str) -> list[dict]:
    """Size and shape rows of a mask-only case, worked out in the lesions' bounding box (+2 voxels)."""
    from scipy import ndimage

    from tumorsyn.metrics.realism import describe_case

    found = ndimage.find_objects(lesion.astype(np.uint8))
    if not found or found[0] is None:
        return []
    # Shape descriptors see only the lesion: a small box gives the same values, much faster.
    box = tuple(slice(max(s.start - 2, 0), min(s.stop + 2, n)) for s, n in zip(found[0], lesion.shape))
    flat = np.zeros(lesion[box].shape, dtype=np.float32)  # no CT: a constant one
    return describe_case(flat, lesion[box], organ[box], spacing, organ=organ_name, min_voxels=MIN_VOXELS,
                         case_id=case_id)


def _ircadb_shape_patient(patient: int) -> list[dict]:
    from tumorsyn.io import load_labels
    from tumorsyn.io.labels import label_values

    masks = data_root() / f"3dircadb1/3Dircadb1.{patient}/masks"
    liver_scan = load_labels(_need(masks / "liver.nii.gz"))
    liver = label_values(liver_scan) != 0
    files = [masks / "livertumor.nii.gz"] if (masks / "livertumor.nii.gz").exists() else \
        sorted(masks.glob("livertumor[0-9]*.nii.gz"))
    if not files:
        return []  # patient 5 is stored without any liver-tumour mask
    lesion = np.zeros(liver.shape, dtype=bool)
    for path in files:
        lesion |= _mask(path, ref=liver_scan)
    rows = _shape_rows(lesion, liver, liver_scan.spacing_mm, "liver", f"ircadb{patient}")
    return _tag(rows, "ircadb2-10", "calibration", False, liver_scan.spacing_mm)


def _load_mask_squeezed(path: Path):
    """:func:`tumorsyn.io.load_labels`, also for a mask stored as (X, Y, Z, 1).

    The MSD pancreas crops are stored 4D with one trailing volume, which ``load_labels`` refuses
    as "4D". Such a file is read through ``tumorsyn.io.scan.read_nifti_bytes`` (gzip verified)
    and its single volume wrapped in a :class:`tumorsyn.io.Scan`, so that the canonical view and
    spacing come from the same code as every other file.
    """
    import nibabel as nib

    from tumorsyn.io import Scan, load_labels
    from tumorsyn.io.scan import read_nifti_bytes

    img = nib.Nifti1Image.from_bytes(read_nifti_bytes(_need(path)))
    if len(img.shape) == 4 and img.shape[3] == 1:
        raw = np.asanyarray(img.dataobj.get_unscaled())[..., 0]
        return Scan(path=path, raw=np.asarray(raw), affine=img.affine.copy(), header=img.header,
                    slope=float(img.dataobj.slope), inter=float(img.dataobj.inter))
    return load_labels(path)


def _msd_file(args: tuple[int, str]) -> list[dict]:
    from tumorsyn.io.labels import label_values

    position, path = args
    scan = _load_mask_squeezed(Path(path))
    lesion = label_values(scan) != 0
    rows = _shape_rows(lesion, np.zeros_like(lesion), scan.spacing_mm, "pancreas", Path(path).name.split(".")[0])
    return _tag(rows, "msd_pancreas", "calibration" if position % 2 == 0 else "test", False, scan.spacing_mm)


def _workers(workers: int | None) -> int:
    return max(1, min(workers if workers is not None else (os.cpu_count() or 1), 8))


def describe_source(source: str, *, workers: int | None = None) -> list[dict]:
    """Descriptor rows of every real lesion of one source (cached in this process).

    Parameters
    ----------
    source : {'lits117', 'ircadb1', 'ircadb2-10', 'msd_pancreas'}
    workers : int, optional
        Processes for the many-file sources (default: CPU count, at most 8).

    Raises
    ------
    RealDataMissing
        A file of the source is absent.
    KeyError
        An unknown source.
    """
    if source not in SOURCES:
        raise KeyError(f"unknown real source {source!r}; choose among {', '.join(SOURCES)}")
    if source in _CACHE:
        return _CACHE[source]
    _need(data_root() / SOURCES[source][2])
    n = _workers(workers)
    if source == "lits117":
        rows = _describe_lits()
    elif source == "ircadb1":
        rows = _describe_ircadb1()
    else:
        if source == "ircadb2-10":
            func, jobs = _ircadb_shape_patient, list(_IRCADB_SHAPE_PATIENTS)
        else:
            files = sorted((data_root() / "lesion_masks/msd_pancreas").glob("*.nii.gz"), key=lambda p: p.name)
            func, jobs = _msd_file, [(i, str(p)) for i, p in enumerate(files)]
        if n > 1:
            with ProcessPoolExecutor(n) as pool:
                parts = list(pool.map(func, jobs, chunksize=max(1, len(jobs) // (4 * n))))
        else:
            parts = [func(job) for job in jobs]
        rows = [row for part in parts for row in part]
    _CACHE[source] = rows
    return rows


def lits_rows_on_grid(spacing_mm, split: str = "all") -> list[dict]:
    """LiTS-117's lesions described after the scan is averaged onto voxels of ``spacing_mm`` (mm).

    The real tumours as a coarser host's grid holds them (partial volume: each lesion and the liver are
    averaged like the HU and kept at >= 1/2, :func:`train_diffusion.data.area_resample`; axes whose voxels
    are not larger keep their own spacing), for comparing tumours written into a 3 mm scan at matched
    voxels. The split is each lesion's own, from its centroid on the native grid, as in
    :func:`real_lesion_rows`; lesions left with fewer than ``MIN_VOXELS`` voxels drop out. Cached per spacing.
    """
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.scan import check_same_grid
    from tumorsyn.lesion_size import label_lesions
    from tumorsyn.metrics.realism import describe_case
    from train_diffusion.data import area_resample

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose among {', '.join(SPLITS)}")
    key = "lits117@" + "x".join(f"{float(v):g}" for v in spacing_mm)
    if key not in _CACHE:
        root = data_root() / "lits117"
        ct = load_scan(_need(root / "ct.nii.gz"))
        labels = load_labels(_need(root / "label.nii.gz"))
        check_same_grid(ct, labels)
        values = label_values(labels)
        components, count = label_lesions(values == 2)
        centroid_z = ndimage.center_of_mass(np.ones(components.shape), components, range(1, count + 1))
        split_of = {k + 1: lits_split(c[2]) for k, c in enumerate(centroid_z)}
        hu, liver, components, spacing = area_resample(ct.values(), values >= 1, components, ct.spacing_mm,
                                                        tuple(float(v) for v in spacing_mm))
        rows = describe_case(hu, components, liver, spacing, organ="liver", labelled=True, min_voxels=MIN_VOXELS,
                             case_id=key)
        for row in rows:
            row.update(source=key, has_ct=True, spacing_mm=tuple(float(v) for v in spacing),
                       split=split_of[int(row["lesion_id"])])
        _CACHE[key] = rows
    return [dict(row) for row in _CACHE[key] if split == "all" or row["split"] == split]


def real_lesion_rows(organ: str, split: str = "all", *, sources: tuple[str, ...] | None = None,
                     workers: int | None = None) -> list[dict]:
    """Descriptor rows of the real lesions of ``organ`` in ``split``.

    Parameters
    ----------
    organ : {'liver', 'pancreas', 'kidney'}
    split : {'calibration', 'test', 'all'}
    sources : tuple of str, optional
        Only these sources (default: every source of the organ).
    workers : int, optional
        Processes for the many-file sources.

    Returns
    -------
    list of dict
        Rows (see the module docstring); ``[]`` for the kidney (no real kidney tumours here).

    Raises
    ------
    RealDataMissing
        A needed source's files are absent (:func:`missing_sources` says which beforehand).
    ValueError
        An unknown organ or split.
    """
    if organ not in ORGANS:
        raise ValueError(f"unknown organ {organ!r}; choose among {', '.join(ORGANS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose among {', '.join(SPLITS)}")
    names = [s for s, (o, _, _) in SOURCES.items() if o == organ and (sources is None or s in sources)]
    rows = [row for name in names for row in describe_source(name, workers=workers)]
    # Copies: callers relabel size classes without touching the cache.
    return [dict(row) for row in rows if split == "all" or row["split"] == split]
