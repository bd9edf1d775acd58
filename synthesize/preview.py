"""A PNG that shows the tumour in context: before, after and outlined, in three planes.

Images follow the radiological convention (patient right on the image's left, anterior up on
axial slices) at a fixed abdominal window (W400/L40, stated on the sheet), with pixels scaled to
millimetres and a 10 mm scale bar on every zoomed view.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from tumorsyn.figures import draw_scale_bar, label_font, text_size
from tumorsyn.io.writers import atomic_path

__all__ = ["write_preview"]

_CELL_PX = 220
_RED = (230, 40, 40)
_YELLOW = (250, 210, 60)
_WINDOW = (400.0, 40.0)  # (width, level) in HU: soft-tissue abdomen
_WINDOW_TEXT = f"W{_WINDOW[0]:g}/L{_WINDOW[1]:g}"
_SCALE_BAR_MM = 10.0


def _window(hu: np.ndarray, width: float = _WINDOW[0], level: float = _WINDOW[1]) -> np.ndarray:
    low = level - width / 2.0
    return (np.clip((hu - low) / width, 0.0, 1.0) * 255.0).astype(np.uint8)


def _planes(volume: np.ndarray, center) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through ``center`` of a canonical RAS+ volume, display-oriented."""
    x, y, z = (int(round(c)) for c in center)
    x, y, z = (min(max(v, 0), n - 1) for v, n in zip((x, y, z), volume.shape))
    return [volume[::-1, ::-1, z].T,    # rows: anterior -> posterior, columns: right -> left
            volume[::-1, y, ::-1].T,    # rows: superior -> inferior
            volume[x, ::-1, ::-1].T]    # rows: superior -> inferior, columns: anterior -> posterior


_PLANE_SPACING = [(1, 0), (2, 0), (2, 1)]  # (row axis, column axis) of each plane in (X, Y, Z)


def _to_image(gray: np.ndarray, mask: np.ndarray | None, row_mm: float, col_mm: float,
              size: int) -> tuple[Image.Image, float]:
    """``gray`` scaled to fit a ``size`` px square at equal mm per pixel in both directions; also px per mm."""
    height_mm, width_mm = gray.shape[0] * row_mm, gray.shape[1] * col_mm
    scale = size / max(height_mm, width_mm)
    out_size = (max(int(round(width_mm * scale)), 1), max(int(round(height_mm * scale)), 1))
    image = Image.fromarray(gray).resize(out_size, Image.BILINEAR).convert("RGB")
    if mask is not None and mask.any():
        big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(out_size, Image.NEAREST)) > 0
        edge = big & ~ndimage.binary_erosion(big, iterations=2)
        pixels = np.asarray(image).copy()
        pixels[edge] = _RED
        image = Image.fromarray(pixels)
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(image, ((size - out_size[0]) // 2, (size - out_size[1]) // 2))
    return canvas, scale


def write_preview(path: str | Path, before_hu: np.ndarray, after_hu: np.ndarray, tumor: np.ndarray,
                  spacing_mm, center_vox, *, title: str = "", fov_mm: float | None = None) -> None:
    """Write a PNG preview: zoomed before / after / outlined views plus the full axial slice.

    Parameters
    ----------
    path : str or Path
        Output PNG (written atomically).
    before_hu, after_hu : ndarray, shape (X, Y, Z)
        Canonical RAS+ volumes in HU.
    tumor : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
    center_vox : sequence of 3 float
        Slice positions (canonical voxel index), usually the tumour centre.
    title : str
        Caption written above the images.
    fov_mm : float, optional
        Side of the zoomed field of view in mm (default: 4x the tumour's extent, at least 60 mm).
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    if fov_mm is None:
        extent = 0.0
        boxes = ndimage.find_objects(tumor.astype(np.uint8))
        if boxes and boxes[0] is not None:
            extent = max((b.stop - b.start) * s for b, s in zip(boxes[0], spacing))
        fov_mm = max(60.0, 4.0 * extent)
    half = np.ceil(0.5 * fov_mm / spacing).astype(int)
    c = np.round(center_vox).astype(int)
    zoom = tuple(slice(max(ci - h, 0), ci + h + 1) for ci, h in zip(c, half))
    local_center = c - np.array([s.start for s in zoom])

    rows = []
    for name, volume, outline in (("before", before_hu, False), ("after", after_hu, False), ("outlined", after_hu, True)):
        cells = []
        slices = _planes(_window(volume[zoom]), local_center)
        masks = _planes(tumor[zoom], local_center) if outline else [None] * 3
        for plane, mask, (r_ax, c_ax) in zip(slices, masks, _PLANE_SPACING):
            cell, px_per_mm = _to_image(plane, mask, spacing[r_ax], spacing[c_ax], _CELL_PX)
            draw_scale_bar(cell, px_per_mm, _SCALE_BAR_MM)
            cells.append(cell)
        rows.append((name, cells))

    full = _planes(_window(after_hu), c)[0]
    context, scale = _to_image(full, None, spacing[1], spacing[0], 3 * _CELL_PX)
    # Mark the zoomed field of view on the full axial slice (display flips X and Y).
    off_x = (3 * _CELL_PX - full.shape[1] * spacing[0] * scale) / 2
    off_y = (3 * _CELL_PX - full.shape[0] * spacing[1] * scale) / 2
    nx, ny = after_hu.shape[0], after_hu.shape[1]
    x0 = off_x + (nx - zoom[0].stop) * spacing[0] * scale
    x1 = off_x + (nx - zoom[0].start) * spacing[0] * scale
    y0 = off_y + (ny - zoom[1].stop) * spacing[1] * scale
    y1 = off_y + (ny - zoom[1].start) * spacing[1] * scale
    ImageDraw.Draw(context).rectangle([x0, y0, x1, y1], outline=_YELLOW, width=2)

    sheet = _layout(title, rows, context)
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def _layout(title: str, rows: list[tuple[str, list[Image.Image]]], context: Image.Image) -> Image.Image:
    """The sheet: title, window note, column labels, labelled rows of zoomed cells, then the full slice on the right."""
    font = label_font()
    line = text_size(font, "Ag")[1] + 6
    pad = 10
    label_w = 2 * pad + max(text_size(font, name)[0] for name, _ in rows)
    crops_w = len(rows[0][1]) * _CELL_PX
    context_label = f"full axial slice ({_WINDOW_TEXT}, patient right on the left; yellow: zoomed field)"
    notes = [title, f"zoomed views: {_WINDOW_TEXT}, equal mm per pixel, bar = {_SCALE_BAR_MM:g} mm; "
                    "red: tumour outline"]
    header = pad + line * (len(notes) + 1)
    width = max(label_w + crops_w + pad + context.width,
                max(text_size(font, t)[0] for t in notes) + 2 * pad,
                label_w + crops_w + pad + text_size(font, context_label)[0] + pad)
    sheet = Image.new("RGB", (width, header + max(len(rows) * _CELL_PX, context.height)), (20, 20, 20))
    draw = ImageDraw.Draw(sheet)
    for k, text in enumerate(notes):
        draw.text((pad, pad + k * line), text, fill=(255, 255, 255) if k == 0 else (200, 200, 200), font=font)
    for j, name in enumerate(("axial", "coronal", "sagittal")):
        draw.text((label_w + j * _CELL_PX + 4, header - line), name, fill=(200, 200, 200), font=font)
    draw.text((label_w + crops_w + pad, header - line), context_label, fill=(200, 200, 200), font=font)
    for i, (name, cells) in enumerate(rows):
        draw.text((pad, header + i * _CELL_PX + (_CELL_PX - line) // 2), name, fill=(255, 255, 255), font=font)
        for j, cell in enumerate(cells):
            sheet.paste(cell, (label_w + j * _CELL_PX, header + i * _CELL_PX))
    sheet.paste(context, (label_w + crops_w + pad, header))
    return sheet
