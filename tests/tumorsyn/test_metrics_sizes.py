"""Size bins at their edges, and anisotropic spacing moving a lesion between bins."""
import numpy as np
import pytest

from tumorsyn.lesion_size import max_diameter_mm
from tumorsyn.metrics import match_lesions
from tumorsyn.metrics.sizes import check_bins_mm, component_sizes, is_early, size_bin_index, size_bin_labels


def _rod(length_vox: int, shape=(12, 12, 40)) -> np.ndarray:
    """A one-voxel-thick rod along Z: its maximum diameter is exactly length x spacing_z."""
    mask = np.zeros(shape, dtype=bool)
    mask[5, 5, 2:2 + length_vox] = True
    return mask


def test_default_labels_and_edges():
    assert size_bin_labels() == ["<10 mm", "10-20 mm", ">20 mm"]
    assert [size_bin_index(d) for d in (0.5, 9.999, 10.0, 15.0, 20.0, 20.0001, 80.0)] == [0, 0, 1, 1, 1, 2, 2]
    assert is_early(19.99) and not is_early(20.0)


def test_custom_bins():
    assert size_bin_labels((5, 10, 20)) == ["<5 mm", "5-10 mm", "10-20 mm", ">20 mm"]
    assert [size_bin_index(d, (5, 10, 20)) for d in (5.0, 10.0, 20.0, 21.0)] == [1, 2, 2, 3]
    assert size_bin_labels((20,)) == ["<20 mm", ">=20 mm"]
    assert [size_bin_index(d, (20,)) for d in (19.9, 20.0)] == [0, 1]
    for bad in ((), (20, 10), (0, 10), (10, 10)):
        with pytest.raises(ValueError):
            check_bins_mm(bad)


@pytest.mark.parametrize("length, spacing_z, expected_mm, expected_bin", [
    (10, 1.0, 10.0, "10-20 mm"),   # exactly at the lower edge of the middle bin
    (20, 1.0, 20.0, "10-20 mm"),   # exactly at the top edge: stays in 10-20
    (21, 1.0, 21.0, ">20 mm"),
    (9, 1.0, 9.0, "<10 mm"),
    (5, 2.0, 10.0, "10-20 mm"),
])
def test_lesions_exactly_at_bin_edges(length, spacing_z, expected_mm, expected_bin):
    rod = _rod(length)
    spacing = (1.0, 1.0, spacing_z)
    assert max_diameter_mm(rod, spacing) == expected_mm  # the phantom really sits on the edge
    lesion = match_lesions(rod, rod, spacing_mm=spacing).reference[0]
    assert lesion.max_diameter_mm == expected_mm
    assert lesion.size_bin == expected_bin


def test_anisotropic_spacing_changes_the_bin():
    rod = _rod(8)
    iso = match_lesions(rod, rod, spacing_mm=(1.0, 1.0, 1.0)).reference[0]
    aniso = match_lesions(rod, rod, spacing_mm=(1.0, 1.0, 1.5)).reference[0]
    thick = match_lesions(rod, rod, spacing_mm=(1.0, 1.0, 2.7)).reference[0]
    assert (iso.size_bin, iso.max_diameter_mm) == ("<10 mm", 8.0)
    assert (aniso.size_bin, aniso.max_diameter_mm) == ("10-20 mm", 12.0)
    assert thick.size_bin == ">20 mm" and thick.max_diameter_mm == pytest.approx(21.6)
    # The equivalent diameter scales with the cube root of the voxel volume.
    assert aniso.equivalent_diameter_mm == pytest.approx(iso.equivalent_diameter_mm * 1.5 ** (1 / 3))


def test_component_sizes_of_a_box():
    labels = np.zeros((10, 10, 10), dtype=np.int32)
    labels[2:5, 3:7, 1:3] = 1
    (size,) = component_sizes(labels, 1, spacing_mm=(0.5, 1.0, 2.0))
    assert size["voxels"] == 24 and size["volume_mm3"] == pytest.approx(24.0)
    assert size["centroid_vox"] == pytest.approx((3.0, 4.5, 1.5))
    assert size["equivalent_diameter_mm"] == pytest.approx(2 * (3 * 24 / (4 * np.pi)) ** (1 / 3))


def test_a_rod_on_the_top_edge_stays_below_despite_float_rounding():
    """Regression: 25 voxels x 0.8 mm measures 20.000000000000004 mm and went to '>20 mm' (lesions.csv said 20.0)."""
    rod = _rod(25)
    spacing = (0.8, 0.8, 0.8)
    assert max_diameter_mm(rod, spacing) != 20.0  # the rounding is real ...
    lesion = match_lesions(rod, rod, spacing_mm=spacing).reference[0]
    assert round(lesion.max_diameter_mm, 4) == 20.0 and lesion.size_bin == "10-20 mm"  # ... and harmless
    # The same at an inner edge and in float32 spacing; a real millimetre-scale difference still counts.
    assert size_bin_index(10.0 - 1e-9) == 1 and size_bin_index(float(np.float32(0.8)) * 25) == 1
    assert size_bin_index(20.0 + 1e-5) == 2 and size_bin_index(10.0 - 1e-5) == 0


def test_named_size_conventions():
    from tumorsyn.metrics.sizes import SIZE_CONVENTIONS, size_convention

    radius = size_convention("radius")
    assert radius.labels() == ["<5 mm", "5-10 mm", "10-15 mm", "15-20 mm", ">=20 mm"]
    # Half-open bins: an edge goes up, the top edge included ([15-20) then >= 20).
    assert [size_bin_index(r, radius.bins_mm, top_closed=True) for r in (4.99, 5.0, 14.99, 15.0, 19.99, 20.0)] == \
        [0, 1, 2, 3, 3, 4]
    # A 4x4x4 mm cube (64 mm^3): equivalent radius (3*64/(4 pi))^(1/3) = 2.4814 mm -> '<5 mm';
    # 1000 voxels of 1 mm^3: radius 6.2035 mm -> '5-10 mm', diameter 12.407 mm -> '10-20 mm'.
    cube = np.zeros((14, 14, 14), bool)
    cube[2:6, 2:6, 2:6] = True
    lesion = match_lesions(cube, cube, spacing_mm=(1, 1, 1), size_convention_name="radius").reference[0]
    assert lesion.size_bin == "<5 mm"
    big = np.zeros((14, 14, 14), bool)
    big[2:12, 2:12, 2:12] = True
    assert match_lesions(big, big, spacing_mm=(1, 1, 1), size_convention_name="radius").reference[0].size_bin == "5-10 mm"
    assert match_lesions(big, big, spacing_mm=(1, 1, 1), size_convention_name="diameter").reference[0].size_bin == "10-20 mm"
    assert SIZE_CONVENTIONS["diameter"].labels()[-1] == ">=40 mm"
    assert size_convention("max-diameter").labels() == size_bin_labels()
    with pytest.raises(ValueError, match="unknown size convention 'volume'; choose one of max-diameter, radius, diameter"):
        size_convention("volume")
