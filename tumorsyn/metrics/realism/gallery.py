"""Lesion thumbnails and the real-vs-synthetic gallery picture.

Every thumbnail is an axial slice through the lesion (the slice where it is largest), resampled to
``THUMB_PX`` x ``THUMB_PX`` pixels over a square field of view of ``max(30 mm, 2 x the lesion's
in-plane extent)`` centred on the lesion, in one fixed window (W400/L40, as in reader studies), with
the lesion outline drawn on it. Real and synthetic lesions are shown in the same way side by side.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["THUMB_PX", "WINDOW_HU", "thumbnail", "gallery_png"]

THUMB_PX = 64
# (level, width) in HU.
WINDOW_HU = (40.0, 400.0)
_MIN_FOV_MM = 30.0


def thumbnail(ct_hu: np.ndarray, lesion: np.ndarray, spacing_mm: Sequence[float]) -> dict:
    """An axial view of one lesion.

    Parameters
    ----------
    ct_hu : ndarray of float, shape (X, Y, Z)
        HU around the lesion (a crop is enough; outside it counts as air).
    lesion : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float

    Returns
    -------
    dict
        ``image`` (uint8 (THUMB_PX, THUMB_PX), window W400/L40, rows = Y from anterior at the top),
        ``mask`` (bool, same shape) and ``fov_mm`` (side of the field of view).
    """
    sp = np.asarray(spacing_mm, dtype=np.float64)
    z = int(np.argmax(lesion.sum(axis=(0, 1))))
    xy = np.argwhere(lesion[:, :, z])
    centre = xy.mean(axis=0)
    extent_mm = float(((xy.max(axis=0) - xy.min(axis=0) + 1) * sp[:2]).max())
    fov = max(_MIN_FOV_MM, 2.0 * extent_mm)
    offsets = (np.arange(THUMB_PX) + 0.5) / THUMB_PX * fov - fov / 2.0
    gx, gy = np.meshgrid(centre[0] + offsets / sp[0], centre[1] + offsets / sp[1], indexing="xy")
    # Rows run along Y (flipped so that anterior is up), columns along X: the usual axial view.
    coords = np.stack([gx, gy[::-1]])
    hu = ndimage.map_coordinates(ct_hu[:, :, z].astype(np.float32), coords, order=1, cval=-1000.0)
    mask = ndimage.map_coordinates(lesion[:, :, z].astype(np.float32), coords, order=0, cval=0.0) > 0.5
    level, width = WINDOW_HU
    image = np.clip((hu - (level - width / 2)) / width * 255.0, 0, 255).astype(np.uint8)
    return {"image": image, "mask": mask, "fov_mm": fov}


def gallery_png(real: Sequence[dict], synthetic: Sequence[dict], *, title: str = "") -> bytes:
    """PNG bytes of two rows of thumbnails: real lesions on top, synthetic below.

    Parameters
    ----------
    real, synthetic : sequence of dict
        Rows holding ``_thumbnail`` (from :func:`thumbnail`), ``organ``, ``size_class`` and
        ``equivalent_diameter_mm``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(real), len(synthetic), 1)
    fig, axes = plt.subplots(2, columns, figsize=(1.6 * columns, 3.9), squeeze=False)
    for r, (name, rows) in enumerate((("real", real), ("synthetic", synthetic))):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            row = rows[c]
            thumb = row["_thumbnail"]
            ax.imshow(thumb["image"], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.contour(thumb["mask"].astype(float), levels=[0.5], colors="yellow", linewidths=0.6)
            ax.set_title(f"{name}\n{row['organ']} {row['equivalent_diameter_mm']:.0f} mm\nFOV {thumb['fov_mm']:.0f} mm",
                         fontsize=6)
    level, width = WINDOW_HU
    fig.suptitle(f"{title} window W{width:g}/L{level:g}; outline = lesion mask", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.8, wspace=0.05, hspace=0.45)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
