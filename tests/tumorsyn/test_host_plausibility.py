"""The host organ's HU must be that organ's in a CT in HU; the scan's edge is organ surface; advice that helps."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import tumorsyn
from tumorsyn.errors import NotHUError, OrganTooSmallError
from tumorsyn.placement import PlacementContext, check_placement
from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, make_phantom, real_path


def _load(path):
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def example():
    return _load(EXAMPLE_CT).astype(np.float32), _load(EXAMPLE_LABELS)


@pytest.mark.parametrize("organ, values", [("liver", (5,)), ("pancreas", (7,)), ("kidney", (2, 3))])
def test_the_bundled_example_is_a_plausible_host(example, organ, values):
    # Its pancreas label is largely fat (mean about -7 HU): it must still pass.
    ct, labels = example
    PlacementContext(np.isin(labels, values), (3.0, 3.0, 3.0), organ, ct_hu=ct)


@pytest.mark.parametrize("case, mask", [("3dircadb1/3Dircadb1.1", "masks/liver.nii.gz"),
                                        ("3dircadb1/3Dircadb1.7", "masks/liver.nii.gz"),
                                        ("lits117", "liver.nii.gz")])
def test_real_livers_are_plausible_hosts(case, mask):
    folder = real_path(case)
    image = nib.load(str(folder / "ct.nii.gz"))
    ct = np.asarray(image.dataobj, dtype=np.float32)
    PlacementContext(_load(folder / mask) > 0, image.header.get_zooms()[:3], "liver", ct_hu=ct)


def test_a_liver_label_on_fat_is_refused_with_the_figures():
    ct, organ, spacing = make_phantom(organ_hu=-113.0)  # the label lies on fat
    with pytest.raises(NotHUError, match=r"liver median -11\d is not a plausible HU value for the liver "
                                         r"\(expected -50\.\.250 HU"):
        PlacementContext(organ, spacing, "liver", ct_hu=ct)
    with pytest.raises(NotHUError, match="not a plausible HU value for the kidney"):
        PlacementContext(organ, spacing, "kidney", organ_stats=(-113.0, 15.0))


def test_a_scaled_z_score_is_not_taken_for_hu(example):
    ct, labels = example
    scaled = (ct - ct.mean()) / ct.std() * 100.0  # the liver lands near 88 "HU": plausible on its own
    with pytest.raises(NotHUError, match=r"look scaled, not Hounsfield units: the scan holds no air \(darkest value -16\d"):
        PlacementContext(labels == 5, (3.0, 3.0, 3.0), "liver", ct_hu=scaled)


def test_a_smooth_organ_in_a_scan_with_air_is_fine():
    ct, organ, spacing = make_phantom(organ_hu=60.0, noise_hu=1.0)  # denoised, but the air is there
    PlacementContext(organ, spacing, "liver", ct_hu=ct)


# --- the scan's edge is organ surface -------------------------------------------------------------
def _cut_organ():
    """A liver running out through the scan's z = 0 face (1 mm voxels, 3 mm margin)."""
    ct, organ, spacing = make_phantom(shape=(40, 40, 30), spacing=(1.0, 1.0, 1.0), organ_hu=60.0)
    organ[:] = False
    organ[5:35, 5:35, 0:25] = True
    return PlacementContext(organ, spacing, "liver", ct_hu=ct), spacing


@pytest.mark.parametrize("z0, reason", [(1, "closer to the organ surface than the margin"),
                                        (0, "reaches the edge of the scan")])
def test_the_scan_edge_counts_as_surface(z0, reason):
    ctx, _ = _cut_organ()
    slices = (slice(10, 30), slice(10, 30), slice(0, 12))  # the box starts at the scan's edge
    label = np.zeros((20, 20, 12), bool)
    label[6:14, 6:14, z0:z0 + 8] = True  # 8 mm across, deep in the organ sideways
    size = tumorsyn.lesion_size.equivalent_diameter_mm(label, (1.0, 1.0, 1.0))
    assert check_placement(label, label, slices, ctx, size_range_mm=(size - 1, size + 1), exophytic=False,
                           margin_mm=3.0) == reason
    label = np.zeros((20, 20, 12), bool)
    label[6:14, 6:14, 4:12] = True  # 4 mm from the edge: clear of the 3 mm margin
    assert check_placement(label, label, slices, ctx, size_range_mm=(size - 1, size + 1), exophytic=False,
                           margin_mm=3.0) is None


# --- advice that helps ----------------------------------------------------------------------------
def test_a_thin_organ_is_not_told_to_ask_for_a_smaller_size():
    ct, organ, spacing = make_phantom(organ_hu=30.0)
    organ[:] = False
    organ[10:50, 10:50, 19:21] = True  # a sheet two voxels (3 mm) thick: no room for the 3 mm margin
    with pytest.raises(OrganTooSmallError) as info:
        tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(5, 10), ct_hu=ct, rng=0)
    text = str(info.value)
    assert "a smaller --size-mm cannot help" in text and "up to about" not in text


def test_a_placement_blocked_by_lesions_suggests_fewer_tumours():
    ct, organ, spacing = make_phantom(organ_hu=60.0)
    with pytest.raises(OrganTooSmallError, match=r"overlaps or touches an existing lesion \(5x\); try fewer tumours") as info:
        tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(8, 10), ct_hu=ct, rng=0, avoid=organ.copy(),
                             max_tries=5)
    assert "smaller --size-mm" not in str(info.value)
