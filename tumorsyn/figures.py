"""Readable labels on the PNG figures the pipelines write (previews, held-out sheets).

Pillow's built-in bitmap font is about 9 px high, too small to read on a modern screen; every
figure takes its font here so that all of them use the same legible size.
"""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["LABEL_PX", "label_font", "text_size", "labelled_grid", "draw_scale_bar", "SCALE_BAR_RGB"]

LABEL_PX = 18            # font size in px; glyphs from cap top to descender are ~16 px
SCALE_BAR_RGB = (0, 255, 255)  # cyan: never produced by the grey images, the red outline or the yellow box


def label_font(size: int = LABEL_PX) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A scalable font of ``size`` px: Pillow's own (>= 10.1), else DejaVu Sans, else Pillow's bitmap font.

    Parameters
    ----------
    size : int
        Font size in pixels.
    """
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 ships a scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        pass
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)  # Pillow searches the system font folders
    except OSError:
        return ImageFont.load_default()  # last resort: small but still a label


def text_size(font, text: str) -> tuple[int, int]:
    """(width, height) in px that ``text`` takes when drawn with ``font`` at the origin."""
    left, top, right, bottom = font.getbbox(text) if text else (0, 0, 0, 0)
    return int(right), int(bottom)


def labelled_grid(rows: Sequence[Sequence[Image.Image]], column_labels: Sequence[str],
                  row_labels: Sequence[str] | None = None, *, title: str = "", gap: int = 6,
                  background=(20, 20, 20), ink=(235, 235, 235)) -> Image.Image:
    """Paste ``rows`` of tiles into one RGB sheet with a label above each column and left of each row.

    Parameters
    ----------
    rows : sequence of sequences of PIL images
        Tiles, row by row; rows may have different numbers of tiles (missing cells stay empty).
    column_labels : sequence of str
        One label per column (at least as many as the longest row).
    row_labels : sequence of str, optional
        One label per row; None leaves no row-label margin.
    title : str
        A caption above the column labels.
    gap : int
        Pixels between tiles.

    Returns
    -------
    PIL.Image.Image
        The sheet (RGB).
    """
    font = label_font()
    n_cols = max((len(r) for r in rows), default=0)
    if len(column_labels) < n_cols:
        raise ValueError(f"{n_cols} columns but {len(column_labels)} column labels")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} row labels")
    # A column is as wide as its widest tile or its label (plus a gap), whichever is wider.
    widths = [max([text_size(font, column_labels[j])[0] + gap] + [r[j].width for r in rows if len(r) > j])
              for j in range(n_cols)]
    heights = [max((t.height for t in r), default=0) for r in rows]
    line = text_size(font, "Ag")[1] + 4
    margin = gap + (max(text_size(font, s)[0] for s in row_labels) + gap if row_labels else 0)
    top = gap + (line if title else 0) + line
    sheet = Image.new("RGB", (margin + sum(widths) + gap * n_cols, top + sum(heights) + gap * len(rows)), background)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, gap), title, fill=ink, font=font)
    x = margin
    for j, w in enumerate(widths):
        draw.text((x, top - line), column_labels[j], fill=ink, font=font)
        y = top
        for r, h in zip(rows, heights):
            if len(r) > j:
                sheet.paste(r[j].convert("RGB"), (x, y))
            y += h + gap
        x += w + gap
    if row_labels:
        y = top
        for label, h in zip(row_labels, heights):
            draw.text((gap, y + max(h - line, 0) // 2), label, fill=ink, font=font)
            y += h + gap
    return sheet


def draw_scale_bar(image: Image.Image, px_per_mm: float, length_mm: float = 10.0, *, margin: int = 8) -> int:
    """Draw a ``length_mm`` bar (in :data:`SCALE_BAR_RGB`) with its length written above, bottom left.

    Parameters
    ----------
    image : PIL.Image.Image
        RGB image, drawn on in place.
    px_per_mm : float
        Image pixels per millimetre.
    length_mm : float
        Bar length in mm.

    Returns
    -------
    int
        The bar's length in pixels (``round(length_mm * px_per_mm)``).
    """
    font = label_font()
    length = int(round(length_mm * px_per_mm))
    x0, y1 = margin, image.height - margin
    draw = ImageDraw.Draw(image)
    draw.rectangle([x0, y1 - 3, x0 + length - 1, y1], fill=SCALE_BAR_RGB)
    label = f"{length_mm:g} mm"
    draw.text((x0, y1 - 6 - text_size(font, label)[1]), label, fill=(255, 255, 255), font=font)
    return length
