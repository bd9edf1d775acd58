"""3D-IRCADb patient 1: seven manual liver tumours as the reference (files read in place, never copied)."""
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tumorsyn.io.scan import load_labels
from tumorsyn.lesion_size import CONNECTIVITY_26, max_diameter_mm
from tumorsyn.metrics import evaluate_case, size_bin_index, size_bin_labels, summarize

from tests.conftest import REAL  # one rule for where the real scans are

IRCAD = REAL / "3dircadb1"
PATIENT = IRCAD / "3Dircadb1.1" / "masks"
MARGIN = 8  # voxels around the tumours' box: room for dilation and shifts without touching the crop edge

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not (PATIENT / "livertumor07.nii.gz").is_file(),
                       reason="3D-IRCADb not in ../shared/data/real/3dircadb1; see ../shared/data/README.md"),
]


@pytest.fixture(scope="module")
def patient1():
    """Per-tumour masks cropped to the union's box + margin, canonical (X, Y, Z), and the spacing."""
    files = [PATIENT / f"livertumor0{i}.nii.gz" for i in range(1, 8)]
    scan = load_labels(files[0])  # geometry (and its own check that the file is a 3D label map)
    raw = [scan.raw != 0] + [np.asarray(nib.load(str(f)).dataobj) != 0 for f in files[1:]]
    # Box of all tumours from per-axis projections: no full-size union (and no C/Fortran-order copies).
    lo, hi = np.full(3, 10 ** 6), np.zeros(3, dtype=int)
    for mask in raw:
        for axis in range(3):
            hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            lo[axis], hi[axis] = min(lo[axis], hit[0]), max(hi[axis], hit[-1])
    # Crop in file order (cheap), then reorient the crop: flips and transposes do not depend on the shape.
    box = tuple(slice(max(0, int(a) - MARGIN), int(b) + 1 + MARGIN) for a, b in zip(lo, hi))
    masks = [np.ascontiguousarray(scan.to_canonical(m[box])) for m in raw]
    summary = next(p for p in json.loads((IRCAD / "summary.json").read_text()) if p["patient"] == "3Dircadb1.1")
    return {"masks": masks, "union": np.any(np.stack(masks), axis=0), "spacing": scan.spacing_mm,
            "canonical_affine": scan.canonical_affine, "summary": summary}


def _expected_detection(masks, pred, spacing):
    """Independent answer: each tumour FILE is one lesion; detected if any predicted voxel overlaps it."""
    labels = size_bin_labels()
    per_bin = {label: [0, 0] for label in labels}
    for mask in masks:
        label = labels[size_bin_index(max_diameter_mm(mask, spacing))]
        per_bin[label][1] += 1
        per_bin[label][0] += bool((mask & pred).any())
    return per_bin


def _bins(summary):
    return {row["bin"]: [row["k"], row["n"]] for row in summary["lesion_sensitivity"]["by_size"]}


def test_lesions_are_the_seven_tumours_with_their_published_sizes(patient1):
    result = evaluate_case(patient1["union"], patient1["union"], spacing_mm=patient1["spacing"])
    assert len(result.reference) == 7
    published = sorted(t[0]["eq_diam_mm"] for t in patient1["summary"]["tumor_masks"].values())
    ours = sorted(les.equivalent_diameter_mm for les in result.reference)
    assert np.allclose(ours, published, atol=0.2)
    voxels = sorted(t[0]["voxels"] for t in patient1["summary"]["tumor_masks"].values())
    assert sorted(les.voxels for les in result.reference) == voxels


def test_identity_prediction(patient1):
    union, sp = patient1["union"], patient1["spacing"]
    result = evaluate_case(union, union, spacing_mm=sp)
    s = summarize([result])
    for row in s["lesion_sensitivity"]["by_size"]:
        assert row["n"] == 0 or row["value"] == 1.0
    assert sum(row["n"] for row in s["lesion_sensitivity"]["by_size"]) == 7
    assert result.dice == 1.0 and result.surface_dice == 1.0 and result.n_false_positives == 0
    assert _bins(s) == _expected_detection(patient1["masks"], union, sp)


def test_empty_prediction(patient1):
    union, sp = patient1["union"], patient1["spacing"]
    result = evaluate_case(union, np.zeros_like(union), spacing_mm=sp)
    s = summarize([result])
    assert s["lesion_sensitivity"]["overall"]["value"] == 0.0 and s["patient"]["sensitivity"]["value"] == 0.0
    assert result.dice == 0.0 and result.surface_dice == 0.0


def _independent_dice(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return 2.0 * float((a * b).sum()) / float(a.sum() + b.sum())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation inside its own code
@pytest.mark.parametrize("change", ["erode2", "dilate2", "shift_x4", "shift_z2"])
def test_altered_predictions_match_an_independent_computation(patient1, change):
    union, sp, masks = patient1["union"], patient1["spacing"], patient1["masks"]
    if change == "erode2":
        pred = ndimage.binary_erosion(union, iterations=2)
    elif change == "dilate2":
        pred = ndimage.binary_dilation(union, iterations=2)
    elif change == "shift_x4":
        pred = np.roll(union, 4, axis=0)  # the margin keeps the roll from wrapping tumour voxels
    else:
        pred = np.roll(union, 2, axis=2)
    result = evaluate_case(union, pred, spacing_mm=sp)
    s = summarize([result])
    assert _bins(s) == _expected_detection(masks, pred, sp)
    assert result.dice == pytest.approx(_independent_dice(union, pred), abs=1e-12)
    # False positives, independently: predicted 26-components touching no tumour file.
    comps, n = ndimage.label(pred, structure=CONNECTIVITY_26)
    touching = {int(v) for m in masks for v in np.unique(comps[m]) if v}
    assert result.n_false_positives == n - len(touching)
    # Strict criterion, independently: IoU of each tumour with its best component (bincount areas).
    strict = evaluate_case(union, pred, spacing_mm=sp, match="iou0.5")
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    expected_strict = 0
    for mask in masks:
        inter = np.bincount(comps[mask], minlength=n + 1)[1:]
        iou = inter / (sizes[1:] + mask.sum() - inter) if n else np.zeros(0)
        expected_strict += bool(n) and iou.max() > 0.5
    assert strict.n_detected == expected_strict
    # Surface Dice against MONAI on the same crop and spacing.
    torch = pytest.importorskip("torch", reason="MONAI cross-check needs torch")
    metrics = pytest.importorskip("monai.metrics", reason="MONAI cross-check needs monai")

    def onehot(mask):
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    monai_nsd = float(metrics.compute_surface_dice(onehot(pred), onehot(union), [2.0], spacing=list(sp))[0, 0])
    assert result.surface_dice == pytest.approx(monai_nsd, abs=1e-6)
    if change == "erode2":
        assert 0 < result.dice < 1 and result.surface_dice < 1


def test_cli_on_the_real_tumours(patient1, tmp_path):
    """End to end through NIfTI files stored like the originals (X and Y axes flipped): temporary files only."""
    from tumorsyn.cli.main import main

    union = patient1["union"]
    nx, ny, _ = union.shape
    # Store the crop in LPS-like order, as 3D-IRCADb does: index j along X means canonical nx-1-j.
    flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    affine = patient1["canonical_affine"] @ flip
    assert affine[0, 0] < 0 and affine[1, 1] < 0
    for folder, data in (("ref", union), ("pred", ndimage.binary_erosion(union, iterations=1))):
        (tmp_path / folder).mkdir()
        stored = np.ascontiguousarray(data[::-1, ::-1, :]).astype(np.uint8)
        nib.save(nib.Nifti1Image(stored, affine), str(tmp_path / folder / "patient1.nii.gz"))
    out = tmp_path / "report"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out", str(out),
                 "--quiet", "--workers", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["n_lesions"] == 7
    assert report["cases"][0]["spacing_mm"] == pytest.approx([0.57, 0.57, 1.6], abs=1e-5)
    expected = _independent_dice(union, ndimage.binary_erosion(union, iterations=1))
    assert report["cases"][0]["dice"] == pytest.approx(expected, abs=1e-12)
    published = sorted(t[0]["eq_diam_mm"] for t in patient1["summary"]["tumor_masks"].values())
    ours = sorted(row["equivalent_diameter_mm"] for row in report["lesions"] if row["kind"] == "reference")
    assert np.allclose(ours, published, atol=0.2)
    assert (out / "sensitivity_by_size.png").stat().st_size > 0
