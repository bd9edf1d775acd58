"""Crop a lesion's neighbourhood at a fixed field of view and render it as 16-bit HU PNGs.

Every case is resampled onto the same grid in millimetres (``pixel_mm`` in plane, ``slice_mm``
between axial slices), whatever the scan's own spacing, so that image size, pixel size and slice
count say nothing about where a case came from. Images follow the radiological convention: axial
slices seen from the feet (patient's right on the image's left, anterior up); coronal with the head
up; sagittal with anterior on the left (:data:`ORIENTATION`).

Pixels hold Hounsfield units, not grey levels: ``value = HU + 1024`` as 16-bit greyscale, clipped to
-1024..3071 HU (a CT's own 12-bit range), so that the reader's page can set any window itself.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image

__all__ = ["RenderSettings", "crop_centre_mm", "crop_box_vox", "render_views", "lesion_marks", "encode_hu",
           "window_to_uint8", "png_bytes", "ORIENTATION", "WINDOW_PRESETS", "MARKERS", "HU_OFFSET"]

VIEWS = ("axial", "coronal", "sagittal")
AIR_HU = -1024.0  # fill outside the scan: renders black like air at W400/L40
HU_OFFSET = -1024  # HU = stored value + HU_OFFSET
_STORED_MAX = 4095  # stored values 0..4095: -1024..3071 HU
MARKERS = ("off", "box", "crosshair")
# Presets the page offers (width, level in HU); the study's own window comes first.
WINDOW_PRESETS = {"abdomen": (400.0, 40.0), "liver": (150.0, 90.0)}
# The patient direction at each image edge, from the sampling geometry of render_views in the canonical
# RAS+ frame (image columns run towards -X, rows towards -Y or -Z; the sagittal's columns towards -Y).
ORIENTATION = {
    "axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
    "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
}


@dataclass(frozen=True)
class RenderSettings:
    """How every case of a study is cropped and rendered (recorded in study.json).

    Attributes
    ----------
    fov_mm : float or None
        Side of the square in-plane field of view, in mm; None shows the whole axial slice (the build
        then sets ``field_mm``).
    depth_mm : float
        Extent of the axial stack along the patient's long axis, in mm.
    pixel_mm : float
        In-plane pixel size of every image, in mm (isotropic).
    slice_mm : float
        Distance between axial slices, in mm.
    window_hu : float
        Width in HU of the window the page opens with (400: soft-tissue window); readers may change it.
    level_hu : float
        Centre in HU of that window (40).
    views : tuple of str
        ``axial`` always; ``coronal`` and ``sagittal`` add one reformatted image through the lesion.
    jitter_fraction : float
        Largest offset of the lesion centre from the crop centre, as a fraction of the field of view
        (reduced for large lesions so that they stay inside the crop).
    margin_mm : float
        Space kept between the lesion and the crop's border, in mm.
    marker : {'box', 'crosshair', 'off'}
        Lesion marker the page draws over each view (a box around, or a crosshair pointing at, the
        lesion's centre), or none.
    field_mm : float or None
        Whole-slice studies only: the in-plane side rendered, in mm (the largest in-plane extent of the
        study's scans, so that every image has one size and pixel size); set by the build.
    """

    fov_mm: float | None = 150.0
    depth_mm: float = 64.0
    pixel_mm: float = 0.5
    slice_mm: float = 2.0
    window_hu: float = 400.0
    level_hu: float = 40.0
    views: tuple[str, ...] = ("axial",)
    jitter_fraction: float = 0.25
    margin_mm: float = 4.0
    marker: str = "box"
    field_mm: float | None = None

    def __post_init__(self) -> None:
        for name in ("fov_mm", "depth_mm", "pixel_mm", "slice_mm", "window_hu", "field_mm"):
            value = getattr(self, name)
            if value is None and name in ("fov_mm", "field_mm"):
                continue
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.fov_mm is not None and self.field_mm is not None:
            raise ValueError("field_mm applies to whole-slice studies only (fov_mm None)")
        side = self.fov_mm if self.fov_mm is not None else self.field_mm
        if (side is not None and side / self.pixel_mm > 1024) or self.depth_mm / self.slice_mm > 400:
            raise ValueError(f"fov_mm/pixel_mm and depth_mm/slice_mm give images too large ({side}/{self.pixel_mm},"
                             f" {self.depth_mm}/{self.slice_mm}); use a coarser pixel or slice size")
        if self.marker not in MARKERS:
            raise ValueError(f"marker must be one of {', '.join(MARKERS)}, got {self.marker!r}")
        if not 0 <= self.jitter_fraction < 0.5:
            raise ValueError(f"jitter_fraction must be in [0, 0.5), got {self.jitter_fraction!r}")
        if "axial" not in self.views or any(v not in VIEWS for v in self.views):
            raise ValueError(f"views must include 'axial' and be among {VIEWS}, got {self.views!r}")

    @property
    def whole_slice(self) -> bool:
        return self.fov_mm is None

    @property
    def side_mm(self) -> float:
        """In-plane side of every image, in mm (for a whole-slice study, once the build has set ``field_mm``)."""
        side = self.fov_mm if self.fov_mm is not None else self.field_mm
        if side is None:
            raise ValueError("a whole-slice study's field_mm is set by the build from its scans")
        return side

    @property
    def n_pixels(self) -> int:
        return max(8, int(round(self.side_mm / self.pixel_mm)))

    @property
    def n_slices(self) -> int:
        return max(1, int(round(self.depth_mm / self.slice_mm)) + 1)

    @property
    def n_rows_reformat(self) -> int:
        return max(2, int(round(self.depth_mm / self.pixel_mm)))

    def max_lesion_mm(self) -> float:
        """Largest lesion diameter (mm) that fits in the crop with its margin."""
        side = self.depth_mm if self.fov_mm is None else min(self.fov_mm, self.depth_mm)
        return side - 2 * self.margin_mm

    def with_field(self, extents_mm) -> "RenderSettings":
        """A whole-slice study's settings with ``field_mm`` = the largest of the scans' in-plane extents (mm).

        Parameters
        ----------
        extents_mm : iterable of float
            Each scan's in-plane extent, ``max(nx * dx, ny * dy)`` in mm.
        """
        if self.fov_mm is not None:
            return self
        # Round up to whole pixels so that one pixel size holds the largest scan.
        field = float(np.ceil(max(extents_mm) / self.pixel_mm) * self.pixel_mm)
        return replace(self, field_mm=field)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["views"] = list(self.views)
        data.update(n_pixels=self.n_pixels, n_slices=self.n_slices)
        return data

    def display(self) -> dict:
        """What the reader's page needs to show the images (study.json ``display``); nothing about any case."""
        return {
            "fov_mm": self.fov_mm, "field_mm": self.side_mm, "marker": self.marker,
            "window_presets": {name: list(wl) for name, wl in WINDOW_PRESETS.items()},
            "default_window": [self.window_hu, self.level_hu], "pixel_mm": self.pixel_mm, "slice_mm": self.slice_mm,
            "depth_mm": self.depth_mm,
            "orientation": ORIENTATION, "hu_offset": HU_OFFSET, "encoding": "png16",
        }


def crop_centre_mm(lesion_centre_mm, lesion_diameter_mm: float, extent_mm, settings: RenderSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """Centre of the crop (mm, in the scan's canonical index frame x spacing): lesion + seeded jitter.

    The jitter is uniform in a box; its half-width is ``jitter_fraction`` of the field of view, but no
    more than keeps the whole lesion (plus ``margin_mm``) inside the crop. Where the scan is larger than
    the crop, the crop is then shifted to lie inside the scan, so that air padding is not a tell. A
    whole-slice study centres every slice on the scan's own in-plane centre (jitter along Z only).

    Parameters
    ----------
    lesion_centre_mm : array of 3 float
        Lesion centre, canonical index times spacing (mm).
    lesion_diameter_mm : float
        Maximum 3D diameter.
    extent_mm : array of 3 float
        Position (mm) of the scan's last voxel centre along each axis; the first is at 0.
    """
    side = settings.side_mm
    half = np.array([side, side, settings.depth_mm]) / 2.0
    room = np.maximum(0.0, half - lesion_diameter_mm / 2.0 - settings.margin_mm)
    reach = np.minimum(np.array([side] * 2 + [settings.depth_mm]) * settings.jitter_fraction, room)
    # Always draw three numbers so that one case's draw never shifts the next case's.
    offset = rng.uniform(-1.0, 1.0, size=3) * reach
    centre = np.asarray(lesion_centre_mm, dtype=float) + offset
    extent = np.asarray(extent_mm, dtype=float)
    if settings.whole_slice:
        centre[:2] = extent[:2] / 2.0  # the whole slice, as the scan frames it
    fits = extent >= 2 * half
    centre = np.where(fits, np.clip(centre, half, np.maximum(half, extent - half)), centre)
    # The shift must not push the lesion out of view.
    lesion = np.asarray(lesion_centre_mm, dtype=float)
    limit = np.maximum(0.0, half - lesion_diameter_mm / 2.0)
    return np.clip(centre, lesion - limit, lesion + limit)


def crop_box_vox(centre_mm, spacing_mm, shape, settings: RenderSettings) -> tuple[np.ndarray, np.ndarray]:
    """Canonical voxel box ``[low, high)`` holding every voxel that rendering a crop at ``centre_mm`` reads."""
    half = np.array([settings.side_mm, settings.side_mm, settings.depth_mm]) / 2.0
    spacing = np.asarray(spacing_mm, dtype=float)
    # One pixel or slice beyond the crop, plus the interpolation neighbours that _sample_grid adds.
    reach = half + np.array([settings.pixel_mm, settings.pixel_mm, max(settings.slice_mm, settings.pixel_mm)])
    low = np.floor((np.asarray(centre_mm) - reach) / spacing).astype(int) - 2
    high = np.ceil((np.asarray(centre_mm) + reach) / spacing).astype(int) + 3
    shape = np.asarray(shape)
    return np.clip(low, 0, shape), np.clip(high, 0, shape)


def _sample_grid(hu_source, spacing_mm, xs_mm, ys_mm, zs_mm) -> np.ndarray:
    """Trilinear HU on the grid ``xs x ys x zs`` (mm), shape ``(len(xs), len(ys), len(zs))``, reading only the
    sub-box of the volume it needs; air (``AIR_HU``) where a point lies outside the scan.

    The grid's axes are the volume's, so trilinear interpolation is three 1-D linear ones, one axis after
    the other: a few passes over the crop instead of eight scattered reads per point
    (``ndimage.map_coordinates``, five times slower for a 150 mm crop), with the same values up to float
    rounding and the same edge rule as its ``constant`` mode.
    """
    index = [np.asarray(v, dtype=float) / s for v, s in zip((xs_mm, ys_mm, zs_mm), spacing_mm)]
    out_shape = tuple(len(i) for i in index)
    shape = hu_source.shape
    low = [int(np.clip(np.floor(i.min()) - 1, 0, n - 1)) for i, n in zip(index, shape)]
    high = [int(np.clip(np.ceil(i.max()) + 2, 1, n)) for i, n in zip(index, shape)]
    if any(h <= lo for lo, h in zip(low, high)):  # the crop lies wholly outside the scan
        return np.full(out_shape, AIR_HU, np.float32)
    block = np.asarray(hu_source[tuple(slice(lo, h) for lo, h in zip(low, high))], dtype=np.float32)
    outside = np.zeros(out_shape, dtype=bool)
    for axis in (2, 1, 0):  # Z first: the fewest samples
        n = block.shape[axis]
        u = index[axis] - low[axis]
        # The block holds every voxel of the scan near the grid, so leaving the block is leaving the scan.
        beyond = (u < 0) | (u > n - 1)
        u = np.clip(u, 0, n - 1)
        i0 = np.minimum(np.floor(u).astype(np.intp), max(n - 2, 0))
        i1 = np.minimum(i0 + 1, n - 1)
        shape_w = [1, 1, 1]
        shape_w[axis] = -1
        w = (u - i0).astype(np.float32).reshape(shape_w)
        first = np.take(block, i0, axis=axis)
        block = first + (np.take(block, i1, axis=axis) - first) * w
        outside |= beyond.reshape(shape_w)
    block[outside] = AIR_HU
    return block


def render_views(hu_source, spacing_mm, centre_mm, lesion_centre_mm, settings: RenderSettings) -> dict:
    """Resample the crop: ``{'axial': [slices], 'coronal': [img], 'sagittal': [img]}`` (uint16, :func:`encode_hu`).

    Parameters
    ----------
    hu_source : array-like, shape (X, Y, Z)
        Canonical HU volume, or any object that returns one for a tuple of slices (read lazily).
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    centre_mm : array of 3 float
        Crop centre from :func:`crop_centre_mm`.
    lesion_centre_mm : array of 3 float
        The reformatted views pass through the lesion (the reader would otherwise see nothing).
    settings : RenderSettings

    Returns
    -------
    dict of str to list of ndarray of uint16
        Axial slices ``(n_pixels, n_pixels)`` ordered from the feet up; reformats
        ``(n_rows_reformat, n_pixels)``. Stored values are HU + 1024.
    """
    n = settings.n_pixels
    # Image column c runs towards the patient's left (-X), row r towards posterior (-Y) / feet (-Z).
    across = ((n - 1) / 2.0 - np.arange(n)) * settings.pixel_mm
    z_steps = (np.arange(settings.n_slices) - (settings.n_slices - 1) / 2.0) * settings.slice_mm
    cx, cy, cz = (float(v) for v in centre_mm)
    # Axial image k, row r, column c samples (x = cx + across[c], y = cy + across[r], z = cz + z_steps[k]).
    grid = _sample_grid(hu_source, spacing_mm, cx + across, cy + across, cz + z_steps)
    views = {"axial": list(encode_hu(grid.transpose(2, 1, 0)))}
    if len(settings.views) > 1:
        m = settings.n_rows_reformat
        down = ((m - 1) / 2.0 - np.arange(m)) * settings.pixel_mm  # head at the top
        lx, ly, _ = (float(v) for v in lesion_centre_mm)
        if "coronal" in settings.views:  # row r, column c: (cx + across[c], ly, cz + down[r])
            grid = _sample_grid(hu_source, spacing_mm, cx + across, [ly], cz + down)
            views["coronal"] = [encode_hu(grid[:, 0, :].T)]
        if "sagittal" in settings.views:  # (lx, cy + across[c], cz + down[r]): anterior on the left
            grid = _sample_grid(hu_source, spacing_mm, [lx], cy + across, cz + down)
            views["sagittal"] = [encode_hu(grid[0].T)]
    return views


def lesion_marks(centre_mm, lesion_centre_mm, lesion_diameter_mm: float, settings: RenderSettings
                 ) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Where the lesion lies in the rendered images: the page opens there and draws its marker there.

    Parameters
    ----------
    centre_mm, lesion_centre_mm : array of 3 float
        Crop centre and lesion centre (mm, as for :func:`render_views`).
    lesion_diameter_mm : float
        Maximum 3D diameter: the marker box's side is 1.5 times it plus 4 mm (whatever the shape of the
        lesion, so that the box says nothing about how its mask was drawn).

    Returns
    -------
    lesion_slice : dict
        ``{'axial': k}``: the axial slice nearest the lesion centre; reformats (one image) get 0.
    marker : dict
        Per view ``[x0, y0, x1, y1]`` in image pixels (column, row; continuous coordinates with pixel
        centres at integers + 0.5), rounded to 0.1 pixel.
    """
    n, m = settings.n_pixels, settings.n_rows_reformat
    d = np.asarray(lesion_centre_mm, dtype=float) - np.asarray(centre_mm, dtype=float)
    k = int(np.clip(np.rint((settings.n_slices - 1) / 2.0 + d[2] / settings.slice_mm), 0, settings.n_slices - 1))
    half_px = (0.75 * lesion_diameter_mm + 2.0) / settings.pixel_mm
    # Inverse of render_views' sampling: column c holds x = cx + ((n - 1) / 2 - c) * pixel_mm, likewise rows.
    col_x = (n - 1) / 2.0 - d[0] / settings.pixel_mm + 0.5
    row_y = (n - 1) / 2.0 - d[1] / settings.pixel_mm + 0.5
    col_y = (n - 1) / 2.0 - d[1] / settings.pixel_mm + 0.5  # sagittal columns run along Y
    row_z = (m - 1) / 2.0 - d[2] / settings.pixel_mm + 0.5

    def box(x: float, y: float) -> list[float]:
        return [round(float(v), 1) for v in (x - half_px, y - half_px, x + half_px, y + half_px)]

    lesion_slice = {"axial": k}
    marker = {"axial": box(col_x, row_y)}
    if "coronal" in settings.views:
        lesion_slice["coronal"], marker["coronal"] = 0, box(col_x, row_z)
    if "sagittal" in settings.views:
        lesion_slice["sagittal"], marker["sagittal"] = 0, box(col_y, row_z)
    return lesion_slice, marker


def encode_hu(hu: np.ndarray) -> np.ndarray:
    """HU as stored in the study's PNGs: ``round(HU) + 1024`` clipped to 0..4095 (uint16)."""
    stored = np.rint(np.asarray(hu, dtype=np.float64)) - HU_OFFSET
    return np.clip(stored, 0, _STORED_MAX).astype(np.uint16)


def window_to_uint8(hu: np.ndarray, settings: RenderSettings) -> np.ndarray:
    """Map ``[level - width/2, level + width/2]`` HU linearly onto 0..255 (clipped)."""
    low = settings.level_hu - settings.window_hu / 2.0
    scaled = (np.asarray(hu, dtype=np.float64) - low) * (255.0 / settings.window_hu)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """A plain greyscale PNG (16-bit for uint16, else 8-bit): no text, time, gamma or EXIF chunks, the same
    bytes every time.

    zlib level 1: a fifth of the encoding time of level 6 for about 7 % larger files (a 300x300 slice of
    16-bit HU: about 95 kB).
    """
    buffer = io.BytesIO()
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint16:
        image = image.astype(np.uint8)
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
