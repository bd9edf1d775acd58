"""Insertion into real scans: the bundled TotalSegmentator example and a healthy 3D-IRCADb liver."""
import numpy as np
import pytest

import tumorsyn
from tumorsyn.io import load_labels, load_scan
from tumorsyn.io.labels import label_values, organ_mask_from_labels
from tumorsyn.lesion_size import equivalent_diameter_mm
from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, real_path


@pytest.fixture(scope="module")
def example():
    scan = load_scan(EXAMPLE_CT)
    return scan.values(), label_values(load_labels(EXAMPLE_LABELS)), scan.spacing_mm


@pytest.mark.parametrize("organ, size", [("liver", (8, 20)), ("pancreas", (5, 12)), ("kidney", (8, 16))])
def test_example_organs(example, organ, size):
    ct, labels, spacing = example
    mask = organ_mask_from_labels(labels, organ, preset="totalsegmentator")
    rng = np.random.default_rng(21)
    for _ in range(3):
        spec = tumorsyn.sample_spec(mask, spacing, organ=organ, size_mm=size, ct_hu=ct, rng=rng)
        out, tumor = tumorsyn.synthesize(ct, mask, spacing, spec)
        inside = tumor.astype(bool)
        assert size[0] <= equivalent_diameter_mm(inside, spacing) <= size[1]
        if not spec.exophytic:
            assert not (inside & ~mask).any()
        assert out[inside].mean() < spec.organ_mean_hu  # darker than the organ's typical parenchyma


@pytest.mark.real
def test_ircad_patient7_healthy_liver():
    ct_path = real_path("3dircadb1", "3Dircadb1.7", "ct.nii.gz")
    scan = load_scan(ct_path)
    liver_full = label_values(load_labels(real_path("3dircadb1", "3Dircadb1.7", "masks", "liver.nii.gz"))) > 0
    # Crop around the liver at load time (the file itself never leaves ../shared).
    box = tuple(slice(max(int(i.min()) - 4, 0), int(i.max()) + 5) for i in np.nonzero(liver_full))
    ct, liver = scan.values()[box], liver_full[box]
    spacing = scan.spacing_mm
    rng = np.random.default_rng(7)
    context = tumorsyn.PlacementContext(liver, spacing, "liver", ct_hu=ct)
    assert 100 < context.organ_stats[0] < 140  # venous-phase liver, 121 +/- 15 HU in summary.json
    for size in ((8, 12), (15, 20)):
        spec = tumorsyn.sample_spec(liver, spacing, organ="liver", size_mm=size, ct_hu=ct, rng=rng, context=context)
        out, tumor = tumorsyn.synthesize(ct, liver, spacing, spec)
        inside = tumor.astype(bool)
        assert size[0] <= equivalent_diameter_mm(inside, spacing) <= size[1]
        assert not (inside & ~liver).any()
        assert out[inside].mean() < spec.organ_mean_hu - 10
