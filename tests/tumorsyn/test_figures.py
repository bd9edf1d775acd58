"""Figure labels (issue #19): a legible font, labelled grids and a measurable scale bar."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, features

from tumorsyn.figures import SCALE_BAR_RGB, draw_scale_bar, label_font, labelled_grid, text_size


@pytest.mark.skipif(not features.check("freetype2"), reason="Pillow built without FreeType: only the bitmap font")
def test_label_font_is_at_least_14_px_high():
    # Pillow's bitmap default draws "Ag" about 11 px high (caps ~9 px), the complaint of issue #19.
    width, height = text_size(label_font(), "Ag")
    top = label_font().getbbox("Ag")[1]
    assert height - top >= 14


def test_labelled_grid_draws_every_label_and_widens_columns_for_long_labels(drawn_text):
    tiles = [[Image.new("L", (30, 20), 128) for _ in range(3)] for _ in range(2)]
    labels = ["real", "blanked", "a long reconstruction label"]
    sheet = labelled_grid(tiles, labels, ["crop 1", "crop 2"], title="held-out")
    assert drawn_text == ["held-out", *labels, "crop 1", "crop 2"]
    font = label_font()
    assert sheet.width > text_size(font, labels[2])[0] + text_size(font, "crop 1")[0] + 2 * 30
    assert sheet.height > 2 * 20 + 2 * text_size(font, "Ag")[1]


def test_labelled_grid_refuses_missing_labels():
    tiles = [[Image.new("L", (8, 8)) for _ in range(2)]]
    with pytest.raises(ValueError, match="2 columns but 1 column labels"):
        labelled_grid(tiles, ["real"])
    with pytest.raises(ValueError, match="1 rows but 2 row labels"):
        labelled_grid(tiles, ["a", "b"], ["r1", "r2"])


@pytest.mark.parametrize("px_per_mm", [1.0, 3.57, 5.2])
def test_scale_bar_is_length_mm_times_px_per_mm_long(px_per_mm):
    image = Image.new("RGB", (200, 120))
    length = draw_scale_bar(image, px_per_mm, 10.0)
    bar = np.all(np.asarray(image) == SCALE_BAR_RGB, axis=-1)
    assert length == round(10 * px_per_mm) == bar.any(axis=0).sum()
    assert bar.any(axis=1).sum() == 4
