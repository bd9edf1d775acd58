"""tumorsyn.io.dicom_out: derived UIDs, the series' own value range, whole-or-nothing series folders."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.synthesize.generate_helpers import write_dicom_phantom
from tumorsyn.io.writers import TMP_PREFIX, atomic_folder, remove_stale_temp_files

pydicom = pytest.importorskip("pydicom")


def _derivation(key="k"):
    from tumorsyn.io.dicom_out import Derivation

    return Derivation(output_id="o", organ="liver", method="rules", seed_text="tumour spec seed 1", input_key="in",
                      uid_key=key, version="test")


def test_derived_uids_are_functions_of_their_parts():
    from pydicom.uid import UID

    from tumorsyn.io.dicom_out import derived_uid

    assert derived_uid("a", 1) == derived_uid("a", 1) != derived_uid("a", 2)
    assert UID(derived_uid("a", 1)).is_valid


@pytest.mark.parametrize("signed", [False, True])
def test_values_beyond_bits_stored_are_clipped_with_a_warning(tmp_path, signed):
    """12 stored bits with intercept -1024 hold -1024..3071 HU (unsigned) or -3072..1023 HU (signed)."""
    from tumorsyn.io import load_scan
    from tumorsyn.io.dicom_out import write_series_like

    series, _ = write_dicom_phantom(tmp_path / "in", signed=signed)
    scan = load_scan(series)
    values = scan.values()
    changed = np.zeros(values.shape, bool)
    changed[20:22, 20:22, 10] = True
    values[changed] = 5000.0  # beyond either range
    values[20, 21, 11], changed[20, 21, 11] = 100.0, True  # representable: written as is
    with pytest.warns(UserWarning, match=r"4 changed voxel\(s\) lie outside the range .* clipped"):
        written = write_series_like(tmp_path / "out", scan, values, changed, _derivation())
    top = 1023 if signed else 3071
    out = load_scan(tmp_path / "out")
    assert out.values()[changed].max() == top and out.values()[20, 21, 11] == 100.0
    assert np.array_equal(out.values()[~changed], scan.values()[~changed])
    assert written[0].BitsStored == 12 and written[0].PixelRepresentation == int(signed)


def test_no_warning_when_every_value_fits(tmp_path, recwarn):
    from tumorsyn.io import load_scan
    from tumorsyn.io.dicom_out import write_series_like

    series, _ = write_dicom_phantom(tmp_path / "in")
    scan = load_scan(series)
    changed = np.zeros(scan.shape, bool)
    changed[10, 10, 10] = True
    write_series_like(tmp_path / "out", scan, scan.values() - 30, changed, _derivation())
    assert not [w for w in recwarn if "outside the range" in str(w.message)]


def test_a_failing_series_leaves_no_folder_and_an_old_one_is_replaced_whole(tmp_path):
    final = tmp_path / "x_ct"
    with pytest.raises(RuntimeError):
        with atomic_folder(final) as tmp:
            (tmp / "slice_0001.dcm").write_bytes(b"half")
            raise RuntimeError("killed")
    assert not final.exists() and not list(tmp_path.glob(f"{TMP_PREFIX}*"))
    final.mkdir()
    (final / "stale.dcm").write_bytes(b"old")
    with atomic_folder(final) as tmp:
        (tmp / "slice_0001.dcm").write_bytes(b"new")
    assert sorted(p.name for p in final.iterdir()) == ["slice_0001.dcm"]
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_a_killed_runs_temporary_series_folder_is_removed(tmp_path):
    left = tmp_path / f"{TMP_PREFIX}999999999-abc.part"  # no such process
    left.mkdir()
    (left / "slice_0001.dcm").write_bytes(b"x")
    mine = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def.part"
    mine.mkdir()
    assert remove_stale_temp_files(tmp_path) == 2
    assert not left.exists() and not mine.exists()
