"""The one apply path (tumorsyn.apply): per-tumour results, paste-back in the input's dtype, written voxels."""
import numpy as np
import pytest

import tumorsyn
from tumorsyn.apply import TumorResult, apply_batch, apply_specs, paste, paste_labels
from tumorsyn.errors import ConfigError, OrganTooSmallError
from tumorsyn.sampling import iter_specs, parse_size_bins
from tests.conftest import make_phantom


def _two_specs():
    ct, organ, spacing = make_phantom(shape=(120, 64, 40), radii_mm=(55.0, 22.0, 18.0))
    specs = tumorsyn.sample_specs(organ, spacing, count=2, organ="liver", size_mm=(8, 12), ct_hu=ct, rng=1)
    return ct, organ, spacing, specs


def test_results_are_what_synthesize_writes():
    ct, organ, spacing, specs = _two_specs()
    applied = apply_specs(ct, organ, spacing, specs)
    out, tumor = tumorsyn.synthesize(ct, organ, spacing, specs)
    assert [one.spec for one in applied.tumors] == specs
    assert np.array_equal(applied.ct, out) and np.array_equal(applied.tumor_mask(), tumor)
    # Each tumour's label and changed voxels lie in its own box, and its box holds its HU.
    for one in applied.tumors:
        assert one.label_box.dtype == bool and one.label_box.any()
        assert np.array_equal(out[one.slices][one.changed_box], one.ct_box[one.changed_box])
    # Voxels whose HU changed are exactly the written mask (what `tumorsyn generate` re-encodes).
    assert np.array_equal(applied.written_mask(), out != ct)


def test_only_the_boxes_are_computed_until_the_scan_is_asked_for():
    ct, organ, spacing, specs = _two_specs()
    applied = apply_specs(ct, organ, spacing, specs[:1])
    assert applied.source is ct                  # a float32 scan is read, not copied
    assert np.array_equal(ct, make_phantom(shape=(120, 64, 40), radii_mm=(55.0, 22.0, 18.0))[0])


def test_batch_of_scans_equals_scan_by_scan():
    ct, organ, spacing, specs = _two_specs()
    both = apply_batch([(ct, organ, spacing, specs), (ct, organ, spacing, specs[1:]), (ct, organ, spacing, [])])
    assert np.array_equal(both[0].ct, apply_specs(ct, organ, spacing, specs).ct)
    assert np.array_equal(both[1].ct, apply_specs(ct, organ, spacing, specs[1:]).ct)
    assert both[2].tumors == [] and np.array_equal(both[2].ct, ct)


def test_paste_keeps_the_input_dtype_rounding_and_clipping_integers():
    slices = (slice(1, 3), slice(0, 2), slice(0, 1))
    box = np.array([[[10.6], [-40000.0]], [[70000.0], [5.0]]], np.float32)
    changed = np.array([[[True], [True]], [[True], [False]]])
    one = TumorResult(spec=None, slices=slices, ct_box=box, label_box=changed, changed_box=changed)
    image = np.full((4, 2, 1), 7, np.int16)
    out = paste(image, [one])
    assert out is image and out.dtype == np.int16
    assert out[1:3, :, 0].tolist() == [[11, -32768], [32767, 7]]   # rounded, clipped, untouched
    assert out[0].tolist() == [[7], [7]] and out[3].tolist() == [[7], [7]]
    labels = paste_labels(np.zeros((4, 2, 1), np.uint8), [one], 2)
    assert labels[1:3, :, 0].tolist() == [[2, 2], [2, 0]]


def test_size_bins_parse_ranges_and_weighted_bins():
    assert parse_size_bins((5, 20)) == (((5.0, 20.0),), (1.0,))
    assert parse_size_bins([[[5, 10], 3], [[10, 20], 1]]) == (((5.0, 10.0), (10.0, 20.0)), (0.75, 0.25))
    for bad in ([[5, 10, 3]], [((5, 10), -1)], [((5, 10), 0)], "big"):
        with pytest.raises(ConfigError, match="size_mm"):
            parse_size_bins(bad)


def test_iter_specs_keeps_the_tumours_drawn_before_the_organ_is_full():
    ct, organ, spacing = make_phantom(radii_mm=(14.0, 14.0, 12.0))
    drawn = []
    with pytest.raises(OrganTooSmallError):
        for spec in iter_specs(organ, spacing, count=30, organ="liver", size_mm=(8, 9), ct_hu=ct, rng=0,
                               max_tries=20):
            drawn.append(spec)
    assert drawn  # what fitted is kept: a training pipeline writes those and records why no more
