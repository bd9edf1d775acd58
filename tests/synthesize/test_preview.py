"""The generate --preview sheet (issue #19): legible labels, the window stated, a 10 mm bar on every crop."""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from synthesize.preview import write_preview
from tumorsyn.figures import SCALE_BAR_RGB, label_font, text_size

CELL_PX = 220  # one zoomed view


def _bars(png) -> list[tuple[int, int]]:
    """(width, height) in px of each scale bar (connected run of the bar colour)."""
    with Image.open(png) as image:
        bar = np.all(np.asarray(image.convert("RGB")) == SCALE_BAR_RGB, axis=-1)
    labels, _ = ndimage.label(bar)
    return sorted((s[1].stop - s[1].start, s[0].stop - s[0].start) for s in ndimage.find_objects(labels))


def test_scale_bar_is_10_mm_on_every_crop_and_window_is_stated(tmp_path, drawn_text):
    hu = np.random.default_rng(0).normal(40, 10, (100, 100, 40)).astype(np.float32)
    tumor = np.zeros(hu.shape, bool)
    tumor[46:54, 46:54, 18:22] = True
    write_preview(tmp_path / "p.png", hu, hu - 30 * tumor, tumor, (0.8, 0.8, 2.0), (50, 50, 20),
                  title="t", fov_mm=60.0)
    # The crop is 2 * ceil(30 / spacing) + 1 voxels: 77 x 0.8 = 61.6 mm in x and y, 31 x 2.0 = 62 mm in z.
    # A cell fits the larger side into 220 px, so 10 mm is 220 / 61.6 * 10 = 35.7 px (axial) or 35.5 px.
    axial, other = round(10 * CELL_PX / 61.6), round(10 * CELL_PX / 62.0)
    assert _bars(tmp_path / "p.png") == sorted([(axial, 4)] * 3 + [(other, 4)] * 6)
    # The window is stated for the zoomed crops as well as for the full slice.
    assert [t for t in drawn_text if "W400/L40" in t and "zoomed views" in t]
    assert [t for t in drawn_text if "W400/L40" in t and "full axial slice" in t]
    assert {"axial", "coronal", "sagittal", "before", "after", "outlined", "10 mm"} <= set(drawn_text)


def test_example_preview_header_fits_legible_text(cli, tmp_path):
    out = tmp_path / "demo"
    code, _, err = cli("generate", "--example", "--organ", "liver", "--out", out, "--preview", "--quiet")
    assert code == 0, err
    with Image.open(out / "example_preview.png") as png:
        width, height = png.size
    # Old sheet: a 34 px header above 3 x 220 px rows. Now a title, a window note and the column labels,
    # each one line of the label font, sit above the rows.
    line = text_size(label_font(), "Ag")[1]
    assert height - 3 * CELL_PX >= 3 * line > 34
    bars = _bars(out / "example_preview.png")
    assert len(bars) == 9 and all(h == 4 and 10 <= w <= 40 for w, h in bars)
