"""``resample: shape``: the sampled crop back on the scan's grid with its border kept at the shape."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tumorsyn.generators.diffusion.resample import averaging_points, point_axes, two_sided_resample

MODEL_MM = (1.25, 1.25, 1.25)
CROP = (32, 32, 32)
PLANE_MM = 0.4  # the shape: every point with x <= 0.4 mm (from the tumour centre) is tumour


def _plane_distance(offsets_mm):
    return offsets_mm[0] - PLANE_MM


def _step_crop():
    """A model crop that is 100 HU on the tumour side of the plane and 0 beyond it, and its core."""
    x_mm = (np.arange(CROP[0]) - 0.5 * (CROP[0] - 1)) * MODEL_MM[0]
    core = np.broadcast_to((x_mm - PLANE_MM <= 0)[:, None, None], CROP).copy()
    return np.where(core, 100.0, 0.0).astype(np.float32), core


def _resample(scan_mm, box=(10, 6, 6), center=(4.7, 2.5, 2.5)):
    generated, core = _step_crop()
    points, widths = averaging_points(scan_mm, MODEL_MM)
    axes = point_axes(box, (0, 0, 0), center, points, widths)
    out = two_sided_resample(generated, core, box, axes_vox=axes, scan_spacing_mm=scan_mm, model_spacing_mm=MODEL_MM,
                             points=points, shape_distance=_plane_distance)
    x_mm = (np.arange(box[0]) - center[0]) * scan_mm[0]
    return out, x_mm, generated, axes


def test_averaging_points_add_only_the_box_a_model_voxel_has_not_averaged_over():
    points, widths = averaging_points((3.0, 3.0, 3.0), MODEL_MM)
    assert points == [3, 3, 3] and widths == pytest.approx([math.sqrt(9 - 1.5625) / 3] * 3)
    # LiTS-117's 1.36 mm voxels add a box narrower than a model voxel: one point, the voxel centre.
    points, widths = averaging_points((1.36, 1.36, 1.6), MODEL_MM)
    assert points == [1, 1, 1] and widths[0] == pytest.approx(math.sqrt(1.36 ** 2 - 1.5625) / 1.36)
    points, widths = averaging_points((0.8, 1.25, 1.25), MODEL_MM)
    assert points == [1, 1, 1] and widths == [0.0, 0.0, 0.0]


def test_point_axes_put_k_points_evenly_inside_each_voxel():
    axes = point_axes((2, 1, 1), (5, 0, 0), (5.5, 0.0, 0.0), [3, 1, 1], [0.9, 0.0, 0.0])
    np.testing.assert_allclose(axes[0], [-0.8, -0.5, -0.2, 0.2, 0.5, 0.8])
    np.testing.assert_allclose(axes[1], [0.0])


def test_a_fine_grid_reads_each_side_of_the_border_whole():
    """Scan voxels that do not line up with the model's: plain interpolation mixes the sides, this does not."""
    out, x_mm, generated, axes = _resample((0.8, 0.8, 0.8))
    tumour = x_mm <= PLANE_MM
    np.testing.assert_allclose(out[tumour], 100.0, atol=1e-4)
    np.testing.assert_allclose(out[~tumour], 0.0, atol=1e-4)
    coords = np.stack(np.meshgrid(*[a * 0.8 / 1.25 + 0.5 * (n - 1) for a, n in zip(axes, CROP)], indexing="ij"))
    plain = ndimage.map_coordinates(generated, coords, order=1, mode="nearest")
    assert np.count_nonzero((plain > 1.0) & (plain < 99.0)) > 0  # the double blur this mode removes


def test_a_coarse_voxel_on_the_border_holds_both_sides_in_proportion():
    out, x_mm, _, _ = _resample((3.0, 3.0, 3.0), box=(6, 3, 3), center=(2.0, 1.0, 1.0))
    profile = out[:, 1, 1]
    assert np.all(np.diff(profile) <= 1e-4)  # from tumour to host, never back
    # Voxels whose averaging box lies wholly on one side read that side; the one across the plane a mix.
    width = math.sqrt(9 - 1.5625)
    whole = np.abs(x_mm - PLANE_MM) > width / 2 + 1e-6
    np.testing.assert_allclose(profile[whole & (x_mm < PLANE_MM)], 100.0, atol=1e-4)
    np.testing.assert_allclose(profile[whole & (x_mm > PLANE_MM)], 0.0, atol=1e-4)
    across = int(np.argmin(np.abs(x_mm - PLANE_MM)))
    assert 1.0 < profile[across] < 99.0
    # The mix follows where the plane cuts the box (3 points: 2 of them on the tumour side here).
    below = np.count_nonzero(x_mm[across] + np.array([-1, 0, 1]) * width / 3 <= PLANE_MM)
    assert profile[across] == pytest.approx(100.0 * below / 3, abs=1e-3)
