"""Rendering for the reader page: HU in 16-bit PNGs, orientation from the scan's affine, where the lesion is
(opening slice, marker box), whole-slice fields of view, and the display options of `reader-study build`."""
from __future__ import annotations

import io
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from reader_study.build import build_study
from reader_study.render import (ORIENTATION, RenderSettings, crop_centre_mm, encode_hu, lesion_marks, png_bytes,
                                 render_views)
from reader_study.volume import CTVolume
from tumorsyn.cli.main import main

SHAPE, SPACING = (40, 44, 24), (1.0, 1.0, 2.0)


def _volume(tmp_path, name, data, affine) -> CTVolume:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), path)
    volume = CTVolume(path)
    volume.load(np.zeros(3, int), np.array(volume.shape))
    return volume


def _ras_phantom() -> np.ndarray:
    """Soft tissue (40 HU), a bright block at the patient's right-anterior (mid height), another at the
    left-anterior top."""
    data = np.full(SHAPE, 40, np.int16)
    data[:, :, :2] = -1000  # some air, as a CT has
    data[28:36, 30:38, 10:14] = 1000  # +X = right, +Y = anterior in RAS
    data[6:14, 30:38, 20:23] = 600  # +Z = superior
    return data


def test_hu_round_trip_through_16_bit_png():
    hu = np.array([[-3000.0, -1024.0, -0.6, 0.4], [39.5, 40.5, 3071.0, 5000.0]])
    stored = encode_hu(hu)
    assert stored.dtype == np.uint16
    back = np.asarray(Image.open(io.BytesIO(png_bytes(stored)))).astype(int) - 1024
    assert back.tolist() == [[-1024, -1024, -1, 0], [40, 40, 3071, 3071]]


def test_orientation_follows_the_affine_not_the_storage_order(tmp_path):
    ras = _ras_phantom()
    nx, ny, _ = SHAPE
    a = _volume(tmp_path, "ras.nii.gz", ras, np.diag([*SPACING, 1.0]))
    # The same patient stored LPS-first (DICOM's habit): rows and columns reversed, the affine says so.
    lps_affine = np.array([[-1.0, 0, 0, nx - 1], [0, -1.0, 0, ny - 1], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    b = _volume(tmp_path, "lps.nii.gz", ras[::-1, ::-1, :], lps_affine)
    settings = RenderSettings(fov_mm=40.0, depth_mm=40.0, pixel_mm=1.0, slice_mm=2.0,
                              views=("axial", "coronal", "sagittal"))
    centre = (np.array(SHAPE) - 1) * np.array(SPACING) / 2
    lesion = np.array([31.5, 33.5, 24.0])  # inside the right-anterior block
    views_a = render_views(a, SPACING, centre, lesion, settings)
    views_b = render_views(b, SPACING, centre, lesion, settings)
    for view in views_a:
        assert all(np.array_equal(x, y) for x, y in zip(views_a[view], views_b[view]))
    bright = encode_hu(np.array(900.0))
    axial = views_a["axial"][settings.n_slices // 2 + 1]  # z = 24 mm: through the block
    rows, cols = np.nonzero(axial > bright)
    n = settings.n_pixels
    # Right on the image's left, anterior at the top: the letters the page draws.
    assert ORIENTATION["axial"]["left"] == "R" and cols.max() < n / 2
    assert ORIENTATION["axial"]["top"] == "A" and rows.max() < n / 2
    coronal = views_a["coronal"][0]
    rows, cols = np.nonzero(coronal > bright)
    assert ORIENTATION["coronal"]["left"] == "R" and cols.max() < n / 2
    superior = np.nonzero(coronal == encode_hu(np.array(600.0)))[0]
    assert ORIENTATION["coronal"]["top"] == "S" and superior.size and superior.max() < coronal.shape[0] / 2
    rows, cols = np.nonzero(views_a["sagittal"][0] > bright)
    assert ORIENTATION["sagittal"]["left"] == "A" and cols.max() < n / 2


def test_lesion_slice_and_marker_box_point_at_the_lesion(tmp_path):
    data = np.full(SHAPE, 40, np.int16)
    data[:, :, 0] = -1000
    centre_vox = np.array([12, 30, 15])
    data[tuple(slice(c - 1, c + 2) for c in centre_vox)] = 1500
    volume = _volume(tmp_path, "dot.nii.gz", data, np.diag([*SPACING, 1.0]))
    settings = RenderSettings(fov_mm=36.0, depth_mm=30.0, pixel_mm=0.5, slice_mm=1.0,
                              views=("axial", "coronal", "sagittal"))
    lesion_mm = centre_vox * np.array(SPACING)
    crop = lesion_mm + np.array([5.3, -7.1, 4.2])  # the lesion off the crop centre, as jitter puts it
    views = render_views(volume, SPACING, crop, lesion_mm, settings)
    lesion_slice, marker = lesion_marks(crop, lesion_mm, 3.0, settings)
    peaks = np.array([image.max() for image in views["axial"]])
    through = np.nonzero(peaks == peaks.max())[0]  # the slices through the bright block
    assert abs(lesion_slice["axial"] - through.mean()) <= 0.5
    assert lesion_slice["coronal"] == lesion_slice["sagittal"] == 0
    brightest = lesion_slice["axial"]
    for view, image in (("axial", views["axial"][brightest]), ("coronal", views["coronal"][0]),
                        ("sagittal", views["sagittal"][0])):
        rows, cols = np.nonzero(image == image.max())  # the block's plateau; its middle is the lesion centre
        x0, y0, x1, y1 = marker[view]
        # Box centre on the plateau's centre (+0.5: pixel k spans k..k+1); side 0.75 * 3 * 2 + 4 = 8.5 mm.
        assert abs((x0 + x1) / 2 - (cols.mean() + 0.5)) <= 0.6, view
        assert abs((y0 + y1) / 2 - (rows.mean() + 0.5)) <= 0.6, view
        assert x1 - x0 == pytest.approx(8.5 / settings.pixel_mm, abs=0.2)


def test_whole_slice_settings_centre_the_scan():
    settings = RenderSettings(fov_mm=None, pixel_mm=0.8)
    with pytest.raises(ValueError, match="set by the build"):
        settings.n_pixels
    assert settings.max_lesion_mm() == settings.depth_mm - 2 * settings.margin_mm
    field = settings.with_field([300.0, 401.1])
    assert field.field_mm == pytest.approx(401.6) and field.n_pixels == 502
    assert field.display()["fov_mm"] is None and field.display()["field_mm"] == pytest.approx(401.6)
    centre = crop_centre_mm([100.0, 50.0, 80.0], 10.0, [299.0, 249.0, 200.0], field, np.random.default_rng(0))
    assert centre[:2].tolist() == [149.5, 124.5]
    with pytest.raises(ValueError, match="too large"):
        RenderSettings(fov_mm=None, pixel_mm=0.1).with_field([500.0])
    with pytest.raises(ValueError, match="marker must be one of off, box, crosshair"):
        RenderSettings(marker="arrow")


def test_cli_display_options(sources, tmp_path, capsys):
    real, synthetic = sources
    out = tmp_path / "whole"
    assert main(["reader-study", "build", "--real", str(real), "--synthetic", str(synthetic), "--out", str(out),
                 "--fov-mm", "whole", "--depth-mm", "24", "--marker", "crosshair", "--window", "W150/L90",
                 "--quiet"]) == 0
    study = json.loads((out / "study.json").read_text())
    display = study["display"]
    # The phantoms are 64 mm across; 0.8 mm pixels by default for a whole slice.
    assert display["fov_mm"] is None and display["field_mm"] == pytest.approx(64.0) and display["pixel_mm"] == 0.8
    assert display["marker"] == "crosshair" and display["default_window"] == [150.0, 90.0]
    assert display["orientation"] == ORIENTATION and display["encoding"] == "png16"
    sizes = {Image.open(p).size for p in (out / "items").rglob("*.png")}
    assert sizes == {(80, 80)}
    assert all("marker" in item and "axial" in item["lesion_slice"]["a"] for item in study["items"])
    # Too fine a pixel for the whole slice: one line, exit 1, nothing written.
    assert main(["reader-study", "build", "--real", str(real), "--synthetic", str(synthetic), "--out",
                 str(tmp_path / "fine"), "--fov-mm", "whole", "--pixel-mm", "0.05", "--quiet"]) == 1
    assert "--fov-mm whole: fov_mm/pixel_mm and depth_mm/slice_mm give images too large" in capsys.readouterr().err
    assert not (tmp_path / "fine").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["reader-study", "build", "--real", str(real), "--synthetic", str(synthetic), "--out",
              str(tmp_path / "bad"), "--marker", "arrow"])
    assert exit_info.value.code == 2


def test_separable_sampling_equals_trilinear_interpolation():
    """The axis-by-axis interpolation gives map_coordinates' trilinear values, air outside the scan."""
    from scipy import ndimage

    from reader_study.render import AIR_HU, _sample_grid

    rng = np.random.default_rng(5)
    volume = rng.normal(0, 300, size=(17, 13, 9)).astype(np.float32)
    spacing = (0.7, 0.9, 2.5)
    xs = np.linspace(-3.0, 16 * 0.7 + 2.0, 31)  # beyond both ends of the scan
    ys = np.array([0.0, 4.05, 12 * 0.9])  # first and last voxel centres included
    zs = np.linspace(1.0, 8 * 2.5 + 1.0, 7)
    grid = _sample_grid(volume, spacing, xs, ys, zs)
    points = np.stack(np.meshgrid(xs / spacing[0], ys / spacing[1], zs / spacing[2], indexing="ij"))
    expected = ndimage.map_coordinates(volume, points, order=1, mode="constant", cval=AIR_HU, prefilter=False)
    assert grid.shape == (31, 3, 7)
    assert np.allclose(grid, expected, atol=1e-3)
    assert (grid == AIR_HU).any() and (grid != AIR_HU).any()
