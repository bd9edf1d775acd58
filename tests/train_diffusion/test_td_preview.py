"""Labelled diffusion previews (issue #19): every column and held-out row carries its label."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import train_diffusion.evaluate as evaluate
from train_diffusion.runlog import save_preview


def _crops(n, shape=(16, 16, 8)):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
    masks = np.zeros((n, *shape), np.float32)
    masks[:, 6:10, 6:10, 3:5] = 1
    return images, masks


def test_save_preview_labels_each_panel(tmp_path, drawn_text):
    images, masks = _crops(2)
    path = save_preview(tmp_path / "previews" / "ldm.png", [images[0], images[1]], ["real", "sample (seed 0)"],
                        mask=masks[0] > 0)
    assert drawn_text == ["real", "sample (seed 0)"]
    with Image.open(path) as png:
        assert png.width >= 2 * 16 * 4 and png.height > 16 * 4 + 14
    with pytest.raises(ValueError, match="2 panels but 1 labels"):
        save_preview(tmp_path / "x.png", [images[0], images[1]], ["real"])


def test_heldout_sheet_has_column_and_row_labels(tmp_path, drawn_text):
    images, masks = _crops(3)
    generated = np.stack([images, images], axis=1)  # 2 samples per crop
    evaluate._preview(tmp_path / "heldout.png", images, masks, images, generated, 0.0)
    assert drawn_text == ["real", "blanked", "reconstruction", "sample 1", "sample 2", "crop 1", "crop 2", "crop 3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heldout.png"]  # no row files left behind
    with Image.open(tmp_path / "heldout.png") as png:
        assert png.width >= 5 * 16 * 3 and png.height >= 3 * 16 * 3
