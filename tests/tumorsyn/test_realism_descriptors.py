"""Realism descriptors with known answers: sphere, ellipsoid, contrast in noise units, depth, vessels."""
import math

import numpy as np
import pytest

from tumorsyn.metrics.realism import DESCRIPTORS, describe_case, lesion_descriptors, organ_depth_mm


def ellipsoid(shape, spacing, centre_vox, radii_mm):
    idx = np.indices(shape).astype(np.float64)
    return sum(((idx[a] - centre_vox[a]) * spacing[a] / radii_mm[a]) ** 2 for a in range(3)) <= 1.0


def noisy_scene(shape=(56, 56, 40), spacing=(1.0, 1.0, 1.0), *, organ_hu=100.0, lesion_hu=60.0, noise_hu=10.0,
                radii_mm=(6.0, 6.0, 6.0), seed=0):
    rng = np.random.default_rng(seed)
    centre = [(n - 1) / 2 for n in shape]
    lesion = ellipsoid(shape, spacing, centre, radii_mm)
    ct = np.where(lesion, lesion_hu, organ_hu) + rng.normal(0.0, noise_hu, shape)
    return ct.astype(np.float32), lesion, np.ones(shape, bool)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 1.5)])
def test_sphere_sphericity_is_that_of_a_digital_sphere(spacing):
    shape = (50, 50, 30)
    lesion = ellipsoid(shape, spacing, [24.5, 24.5, 14.5], (10.0, 10.0, 10.0))
    ct = np.full(shape, 100.0, np.float32)
    row = lesion_descriptors(ct, lesion, np.ones(shape, bool), spacing)
    # The marching-cubes staircase surface is ~9 % larger than the smooth sphere's: ~0.91, not 1.
    assert 0.87 < row["sphericity"] < 0.95
    assert row["elongation"] == pytest.approx(1.0, abs=0.03)
    assert row["flatness"] == pytest.approx(1.0, abs=0.05)
    assert row["solidity"] > 0.9  # the staircase in Z (1.5 mm) dents the mesh against its hull
    assert row["surface_irregularity"] == pytest.approx(1.0, abs=0.1)
    assert row["equivalent_diameter_mm"] == pytest.approx(20.0, rel=0.03)


def test_ellipsoid_elongation_and_flatness_are_its_axis_ratios():
    shape = (40, 34, 26)
    lesion = ellipsoid(shape, (1.0, 1.0, 1.0), [19.5, 16.5, 12.5], (15.0, 10.0, 6.0))
    row = lesion_descriptors(np.full(shape, 100.0, np.float32), lesion, np.ones(shape, bool), (1.0, 1.0, 1.0))
    assert row["elongation"] == pytest.approx(10 / 15, abs=0.02)
    assert row["flatness"] == pytest.approx(6 / 15, abs=0.02)
    assert row["sphericity"] < 0.85  # less round than a sphere


@pytest.mark.parametrize("noise_hu", [10.0, 20.0])
def test_known_contrast_in_noise_units(noise_hu):
    ct, lesion, organ = noisy_scene(noise_hu=noise_hu)
    row = lesion_descriptors(ct, lesion, organ, (1.0, 1.0, 1.0))
    assert row["shell_median_hu"] == pytest.approx(100.0, abs=1.5)
    assert row["shell_noise_hu"] == pytest.approx(noise_hu, rel=0.08)
    assert row["contrast_hu"] == pytest.approx(-40.0, abs=0.15 * noise_hu)
    # Contrast is read against the noise of a 1.5 mm cube: on 1 mm voxels that is noise x (1/3.375)^0.2.
    from tumorsyn.host import reference_noise_factor

    assert row["shell_noise_ref_hu"] == pytest.approx(row["shell_noise_hu"] * (1 / 3.375) ** 0.2, rel=1e-9)
    assert row["contrast_noise"] == pytest.approx(-40.0 / (noise_hu * reference_noise_factor((1.0, 1.0, 1.0))), rel=0.12)
    # White noise: IQR = 1.349 SD.
    assert row["internal_iqr_noise"] == pytest.approx(1.349, rel=0.15)


def test_noise_is_scanner_noise_not_anatomy():
    # A smooth gradient across the organ (anatomy) must not count as noise.
    ct, lesion, organ = noisy_scene(noise_hu=10.0)
    ramp = np.linspace(-60.0, 60.0, ct.shape[0], dtype=np.float32)[:, None, None]
    row = lesion_descriptors(ct + ramp, lesion, organ, (1.0, 1.0, 1.0))
    assert row["shell_noise_hu"] == pytest.approx(10.0, rel=0.08)


def test_step_edge_is_sharper_than_blurred_edge():
    from scipy import ndimage

    ct, lesion, organ = noisy_scene(noise_hu=2.0)
    sharp = lesion_descriptors(ct, lesion, organ, (1.0, 1.0, 1.0))
    blurred_ct = ndimage.gaussian_filter(np.where(lesion, 60.0, 100.0), 2.0).astype(np.float32) + (ct - np.where(lesion, 60.0, 100.0))
    blurred = lesion_descriptors(blurred_ct, lesion, organ, (1.0, 1.0, 1.0))
    assert sharp["edge_sharpness"] == pytest.approx(1.0, abs=0.1)
    assert blurred["edge_sharpness"] < 0.6
    assert sharp["edge_gradient_hu_per_mm"] == pytest.approx(-40.0, rel=0.15)  # 40 HU across one 1 mm voxel step
    assert abs(blurred["edge_gradient_hu_per_mm"]) < abs(sharp["edge_gradient_hu_per_mm"])


def test_depth_counts_organ_surface_not_scan_edge():
    shape = (60, 40, 30)
    organ = np.zeros(shape, bool)
    organ[:, 5:35, 5:25] = True  # touches the scan edge along X on both ends
    depth = organ_depth_mm(organ, (1.0, 2.0, 1.0))
    # A voxel at the scan's X edge is deep inside: only Y and Z faces are surface.
    assert depth[0, 20, 15] == pytest.approx(10.0)  # z: 15 -> first outside voxel z=25 is 10 voxels of 1 mm away
    lesion = ellipsoid(shape, (1.0, 2.0, 1.0), [30, 20, 15], (3.0, 3.0, 3.0))
    row = lesion_descriptors(np.full(shape, 100.0, np.float32), lesion, organ, (1.0, 2.0, 1.0))
    assert row["depth_mm"] == pytest.approx(10.0)
    assert row["surface_distance_mm"] == pytest.approx(7.0, abs=1.01)


def test_vessel_distance():
    ct, lesion, organ = noisy_scene(noise_hu=5.0)
    ct[:, 28 + 12, 18:22] = 250.0  # a bright tube along X, 12 voxels from the centre in Y
    row = lesion_descriptors(ct, lesion, organ, (1.0, 1.0, 1.0))
    # Lesion radius 6 mm: the tube's nearest edge is about 12 - 6 = 6 mm from the lesion (smoothing widens it by ~1).
    assert 4.0 <= row["vessel_distance_mm"] <= 7.0
    assert lesion_descriptors(*noisy_scene(noise_hu=5.0), (1.0, 1.0, 1.0))["vessel_distance_mm"] == 20.0


def test_describe_case_rows_min_voxels_and_classes():
    shape = (80, 60, 40)
    ct, _, organ = noisy_scene(shape=shape)
    big = ellipsoid(shape, (1.0, 1.0, 1.0), [25, 30, 20], (12.0, 12.0, 12.0))
    small = ellipsoid(shape, (1.0, 1.0, 1.0), [62, 30, 20], (3.0, 3.0, 3.0))
    speck = np.zeros(shape, bool)
    speck[75, 5, 5] = True
    rows = describe_case(ct, big | small | speck, organ, (1.0, 1.0, 1.0), organ="liver", case_id="c1", min_voxels=3)
    assert len(rows) == 3
    by_size = sorted(rows, key=lambda r: r["voxels"])
    assert [r["described"] for r in by_size] == [False, True, True]
    assert [r["size_class"] for r in by_size] == ["<20 mm", "<20 mm", ">=20 mm"]
    assert math.isnan(by_size[0]["sphericity"]) and by_size[0]["voxels"] == 1
    assert all(r["organ"] == "liver" and r["case_id"] == "c1" for r in rows)
    assert set(DESCRIPTORS) <= set(rows[0])
    # Labelled input: each id is one lesion, even when two touch.
    ids = np.zeros(shape, np.int32)
    ids[big] = 1
    ids[small] = 2
    assert len(describe_case(ct, ids, organ, (1.0, 1.0, 1.0), labelled=True)) == 2


def test_other_lesions_stay_out_of_the_shell():
    shape = (56, 56, 40)
    ct, lesion, organ = noisy_scene(shape=shape, noise_hu=5.0)
    other = ellipsoid(shape, (1.0, 1.0, 1.0), [27.5, 27.5 + 10, 19.5], (3.0, 3.0, 3.0)) & ~lesion
    ct[other] = 20.0  # a dark neighbour lesion inside the shell
    with_other = lesion_descriptors(ct, lesion, organ, (1.0, 1.0, 1.0), other_lesions=other)
    assert with_other["shell_median_hu"] == pytest.approx(100.0, abs=1.0)


def test_bad_arrays_refused():
    ct, lesion, organ = noisy_scene()
    with pytest.raises(ValueError, match="shape"):
        lesion_descriptors(ct, lesion[:-1], organ, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        lesion_descriptors(ct, np.zeros_like(lesion), organ, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        lesion_descriptors(ct, lesion, organ, (1.0, 0.0, 1.0))


def test_noise_unit_texture_ignores_the_scanner_but_hu_texture_does_not():
    # The same lesion on a 10 HU and a 20 HU scanner (contrast scaled with the noise, as contrast_noise
    # is the same): the noise-unit descriptors agree, the HU-unit ("scanner") ones do not.
    quiet = lesion_descriptors(*noisy_scene(noise_hu=10.0, lesion_hu=70.0), (1.0, 1.0, 1.0))
    loud = lesion_descriptors(*noisy_scene(noise_hu=20.0, lesion_hu=40.0), (1.0, 1.0, 1.0))
    for name in ("glcm_homogeneity_noise", "glcm_contrast_noise", "edge_gradient_noise_per_mm"):
        assert loud[name] == pytest.approx(quiet[name], rel=0.15), name
    assert loud["glcm_contrast"] > 2.5 * quiet["glcm_contrast"]
    assert loud["edge_gradient_hu_per_mm"] == pytest.approx(2 * quiet["edge_gradient_hu_per_mm"], rel=0.15)
    # White noise of 1 SD in bins of 1 SD: neighbours differ by sqrt(2) SD, so contrast ~ 2 bins^2.
    assert 1.5 < quiet["glcm_contrast_noise"] < 2.8
    assert {DESCRIPTORS[n][0] for n in ("contrast_hu", "internal_iqr_hu", "glcm_contrast")} == {"scanner"}


def test_shell_noise_alone_equals_the_descriptor_and_ignores_the_lesion_voxels():
    from tumorsyn.metrics.realism import descriptors

    ct, lesion, organ = noisy_scene(spacing=(0.8, 0.8, 1.5), noise_hu=12.0)
    other = ellipsoid(ct.shape, (0.8, 0.8, 1.5), (10, 10, 20), (3.0, 3.0, 3.0))
    row = lesion_descriptors(ct, lesion, organ, (0.8, 0.8, 1.5), other_lesions=other)
    alone = descriptors.shell_noise_ref_hu(ct, lesion, organ, (0.8, 0.8, 1.5), other_lesions=other)
    assert alone == pytest.approx(row["shell_noise_ref_hu"], rel=1e-9)
    # A tumour about to be written: the host without it reads the same unit.
    healthy = np.where(lesion, 100.0, ct).astype(np.float32)
    assert descriptors.shell_noise_ref_hu(healthy, lesion, organ, (0.8, 0.8, 1.5), other_lesions=other) == alone
    with pytest.raises(ValueError, match="lesion_mask is empty"):
        descriptors.shell_noise_ref_hu(ct, np.zeros_like(lesion), organ, (0.8, 0.8, 1.5))
