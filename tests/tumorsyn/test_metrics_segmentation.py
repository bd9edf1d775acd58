"""Dice and normalised surface Dice: known values, then a cross-check against MONAI."""
import math

import numpy as np
import pytest
from scipy import ndimage

from tumorsyn.metrics import dice, surface_dice
from tumorsyn.metrics.segmentation import boundary_points_mm


def _cube(shape, lo, hi):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return mask


def test_dice_known_values():
    a = _cube((10, 10, 10), (0, 0, 0), (4, 4, 4))
    b = _cube((10, 10, 10), (2, 0, 0), (6, 4, 4))
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))


def test_surface_dice_known_values():
    ref = _cube((20, 20, 20), (5, 5, 5), (10, 10, 10))
    assert surface_dice(ref, ref, spacing_mm=(1, 1, 1)) == 1.0
    # A shift of 2 voxels at 1 mm lies exactly on the 2 mm tolerance: every boundary voxel counts.
    shifted = np.roll(ref, 2, axis=0)
    assert surface_dice(ref, shifted, spacing_mm=(1, 1, 1), tolerance_mm=2.0) == 1.0
    # The same shift at 1.5 mm spacing is 3 mm, beyond 2 mm: only boundary voxels with a close
    # partner count. Count them directly.
    pts_r = boundary_points_mm(ref, spacing_mm=(1.5, 1, 1))
    pts_s = boundary_points_mm(shifted, spacing_mm=(1.5, 1, 1))
    dist = np.sqrt(((pts_r[:, None] - pts_s[None]) ** 2).sum(-1))
    expected = ((dist.min(1) <= 2).sum() + (dist.min(0) <= 2).sum()) / (len(pts_r) + len(pts_s))
    assert surface_dice(ref, shifted, spacing_mm=(1.5, 1, 1)) == pytest.approx(expected)
    assert 0 < expected < 1
    assert surface_dice(ref, np.zeros_like(ref), spacing_mm=(1, 1, 1)) == 0.0
    assert math.isnan(surface_dice(np.zeros_like(ref), np.zeros_like(ref), spacing_mm=(1, 1, 1)))


def test_boundary_of_a_cube_and_of_an_edge_touching_mask():
    cube = _cube((8, 8, 8), (2, 2, 2), (5, 5, 5))
    assert len(boundary_points_mm(cube, spacing_mm=(1, 1, 1))) == 27 - 1  # all but the centre voxel
    full = np.ones((4, 4, 4), dtype=bool)
    assert len(boundary_points_mm(full, spacing_mm=(1, 1, 1))) == 64 - 8  # the array edge is a boundary


def test_bad_arguments_raise():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError):
        dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError):
        surface_dice(a, a, spacing_mm=(1, 1))
    with pytest.raises(ValueError):
        surface_dice(a, a, spacing_mm=(1, 1, 1), tolerance_mm=-1)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecation inside its own code
@pytest.mark.parametrize("seed, spacing", [(0, (1.0, 1.0, 1.0)), (1, (0.7, 0.9, 2.5)), (2, (0.57, 0.57, 1.6))])
def test_matches_monai(seed, spacing):
    torch = pytest.importorskip("torch", reason="MONAI cross-check needs torch")
    metrics = pytest.importorskip("monai.metrics", reason="MONAI cross-check needs monai")
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_dilation(rng.random((32, 36, 24)) > 0.996, iterations=3)
    pred = ndimage.binary_dilation(rng.random((32, 36, 24)) > 0.996, iterations=2) | ndimage.binary_erosion(ref)
    ref[0:3, 10:14, 5:9] = True  # a lesion touching the array edge

    def onehot(mask):
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    monai_dice = float(metrics.compute_dice(onehot(pred), onehot(ref), include_background=False)[0, 0])
    metric = metrics.DiceMetric(include_background=False)
    metric(onehot(pred), onehot(ref))
    assert dice(ref, pred) == pytest.approx(monai_dice, abs=1e-6)
    assert dice(ref, pred) == pytest.approx(float(metric.aggregate()), abs=1e-6)
    for tol in (1.0, 2.0, 3.5):
        monai_nsd = float(metrics.compute_surface_dice(onehot(pred), onehot(ref), [tol], spacing=spacing)[0, 0])
        assert surface_dice(ref, pred, spacing_mm=spacing, tolerance_mm=tol) == pytest.approx(monai_nsd, abs=1e-6)
