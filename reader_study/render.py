"""Crop a lesion's neighbourhood at a fixed field of view and render it as windowed 8-bit PNGs.

Every case is resampled onto the same grid in millimetres (``pixel_mm`` in plane, ``slice_mm``
between axial slices), whatever the scan's own spacing, so that image size, pixel size and slice
count say nothing about where a case came from. Images follow the radiological convention: axial
slices seen from the feet (patient's right on the image's left, anterior up); coronal with the head
up; sagittal with anterior on the left.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["RenderSettings", "crop_centre_mm", "crop_box_vox", "render_views", "window_to_uint8", "png_bytes"]

VIEWS = ("axial", "coronal", "sagittal")
AIR_HU = -1024.0  # fill outside the scan: renders black like air at W400/L40


@dataclass(frozen=True)
class RenderSettings:
    """How every case of a study is cropped and rendered (recorded in study.json).

    Attributes
    ----------
    fov_mm : float
        Side of the square in-plane field of view, in mm.
    depth_mm : float
        Extent of the axial stack along the patient's long axis, in mm.
    pixel_mm : float
        In-plane pixel size of every image, in mm (isotropic).
    slice_mm : float
        Distance between axial slices, in mm.
    window_hu : float
        Window width in HU (400: soft-tissue window).
    level_hu : float
        Window centre in HU (40).
    views : tuple of str
        ``axial`` always; ``coronal`` and ``sagittal`` add one reformatted image through the lesion.
    jitter_fraction : float
        Largest offset of the lesion centre from the crop centre, as a fraction of the field of view
        (reduced for large lesions so that they stay inside the crop).
    margin_mm : float
        Space kept between the lesion and the crop's border, in mm.
    """

    fov_mm: float = 64.0
    depth_mm: float = 64.0
    pixel_mm: float = 0.5
    slice_mm: float = 2.0
    window_hu: float = 400.0
    level_hu: float = 40.0
    views: tuple[str, ...] = ("axial",)
    jitter_fraction: float = 0.25
    margin_mm: float = 4.0

    def __post_init__(self) -> None:
        for name in ("fov_mm", "depth_mm", "pixel_mm", "slice_mm", "window_hu"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.fov_mm / self.pixel_mm > 1024 or self.depth_mm / self.slice_mm > 400:
            raise ValueError(f"fov_mm/pixel_mm and depth_mm/slice_mm give images too large ({self.fov_mm}/{self.pixel_mm},"
                             f" {self.depth_mm}/{self.slice_mm}); use a coarser pixel or slice size")
        if not 0 <= self.jitter_fraction < 0.5:
            raise ValueError(f"jitter_fraction must be in [0, 0.5), got {self.jitter_fraction!r}")
        if "axial" not in self.views or any(v not in VIEWS for v in self.views):
            raise ValueError(f"views must include 'axial' and be among {VIEWS}, got {self.views!r}")

    @property
    def n_pixels(self) -> int:
        return max(8, int(round(self.fov_mm / self.pixel_mm)))

    @property
    def n_slices(self) -> int:
        return max(1, int(round(self.depth_mm / self.slice_mm)) + 1)

    @property
    def n_rows_reformat(self) -> int:
        return max(2, int(round(self.depth_mm / self.pixel_mm)))

    def max_lesion_mm(self) -> float:
        """Largest lesion diameter (mm) that fits in the crop with its margin."""
        return min(self.fov_mm, self.depth_mm) - 2 * self.margin_mm

    def to_dict(self) -> dict:
        data = asdict(self)
        data["views"] = list(self.views)
        data.update(n_pixels=self.n_pixels, n_slices=self.n_slices)
        return data


def crop_centre_mm(lesion_centre_mm, lesion_diameter_mm: float, extent_mm, settings: RenderSettings,
                   rng: np.random.Generator) -> np.ndarray:
    """Centre of the crop (mm, in the scan's canonical index frame x spacing): lesion + seeded jitter.

    The jitter is uniform in a box; its half-width is ``jitter_fraction`` of the field of view, but no
    more than keeps the whole lesion (plus ``margin_mm``) inside the crop. Where the scan is larger than
    the crop, the crop is then shifted to lie inside the scan, so that air padding is not a tell.

    Parameters
    ----------
    lesion_centre_mm : array of 3 float
        Lesion centre, canonical index times spacing (mm).
    lesion_diameter_mm : float
        Maximum 3D diameter.
    extent_mm : array of 3 float
        Position (mm) of the scan's last voxel centre along each axis; the first is at 0.
    """
    half = np.array([settings.fov_mm, settings.fov_mm, settings.depth_mm]) / 2.0
    room = np.maximum(0.0, half - lesion_diameter_mm / 2.0 - settings.margin_mm)
    reach = np.minimum(np.array([settings.fov_mm] * 2 + [settings.depth_mm]) * settings.jitter_fraction, room)
    # Always draw three numbers so that one case's draw never shifts the next case's.
    offset = rng.uniform(-1.0, 1.0, size=3) * reach
    centre = np.asarray(lesion_centre_mm, dtype=float) + offset
    extent = np.asarray(extent_mm, dtype=float)
    fits = extent >= 2 * half
    centre = np.where(fits, np.clip(centre, half, np.maximum(half, extent - half)), centre)
    # The shift must not push the lesion out of view.
    lesion = np.asarray(lesion_centre_mm, dtype=float)
    limit = np.maximum(0.0, half - lesion_diameter_mm / 2.0)
    return np.clip(centre, lesion - limit, lesion + limit)


def crop_box_vox(centre_mm, spacing_mm, shape, settings: RenderSettings) -> tuple[np.ndarray, np.ndarray]:
    """Canonical voxel box ``[low, high)`` holding every voxel that rendering a crop at ``centre_mm`` reads."""
    half = np.array([settings.fov_mm, settings.fov_mm, settings.depth_mm]) / 2.0
    spacing = np.asarray(spacing_mm, dtype=float)
    # One pixel or slice beyond the crop, plus the interpolation neighbours that _sample adds.
    reach = half + np.array([settings.pixel_mm, settings.pixel_mm, max(settings.slice_mm, settings.pixel_mm)])
    low = np.floor((np.asarray(centre_mm) - reach) / spacing).astype(int) - 2
    high = np.ceil((np.asarray(centre_mm) + reach) / spacing).astype(int) + 3
    shape = np.asarray(shape)
    return np.clip(low, 0, shape), np.clip(high, 0, shape)


def _sample(hu_source, spacing_mm, points_mm: np.ndarray) -> np.ndarray:
    """Trilinear HU at ``points_mm`` (..., 3), reading only the sub-box of the volume they need."""
    shape = np.array(hu_source.shape)
    index = points_mm / np.asarray(spacing_mm, dtype=float)
    low = np.clip(np.floor(index.reshape(-1, 3).min(axis=0)).astype(int) - 1, 0, shape - 1)
    high = np.clip(np.ceil(index.reshape(-1, 3).max(axis=0)).astype(int) + 2, 1, shape)
    if np.any(high <= low):  # the crop lies wholly outside the scan
        return np.full(points_mm.shape[:-1], AIR_HU, np.float32)
    block = np.asarray(hu_source[tuple(slice(a, b) for a, b in zip(low, high))], dtype=np.float32)
    coords = np.moveaxis(index - low, -1, 0)
    return ndimage.map_coordinates(block, coords, order=1, mode="constant", cval=AIR_HU, prefilter=False)


def render_views(hu_source, spacing_mm, centre_mm, lesion_centre_mm, settings: RenderSettings) -> dict:
    """Resample and window the crop: ``{'axial': [slices], 'coronal': [img], 'sagittal': [img]}`` (uint8).

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
    dict of str to list of ndarray of uint8
        Axial slices ``(n_pixels, n_pixels)`` ordered from the feet up; reformats
        ``(n_rows_reformat, n_pixels)``.
    """
    n = settings.n_pixels
    # Image column c runs towards the patient's left (-X), row r towards posterior (-Y) / feet (-Z).
    across = ((n - 1) / 2.0 - np.arange(n)) * settings.pixel_mm
    z_steps = (np.arange(settings.n_slices) - (settings.n_slices - 1) / 2.0) * settings.slice_mm
    cx, cy, cz = (float(v) for v in centre_mm)
    rows, cols = np.meshgrid(across, across, indexing="ij")
    points = np.stack(np.broadcast_arrays(cx + cols[None], cy + rows[None], cz + z_steps[:, None, None]), axis=-1)
    axial = window_to_uint8(_sample(hu_source, spacing_mm, points), settings)
    views = {"axial": list(axial)}
    if len(settings.views) > 1:
        m = settings.n_rows_reformat
        down = ((m - 1) / 2.0 - np.arange(m)) * settings.pixel_mm  # head at the top
        z_rows, x_cols = np.meshgrid(cz + down, cx + across, indexing="ij")
        lx, ly, _ = (float(v) for v in lesion_centre_mm)
        if "coronal" in settings.views:
            pts = np.stack(np.broadcast_arrays(x_cols, np.full_like(x_cols, ly), z_rows), axis=-1)
            views["coronal"] = [window_to_uint8(_sample(hu_source, spacing_mm, pts), settings)]
        if "sagittal" in settings.views:
            z_rows, y_cols = np.meshgrid(cz + down, cy + across, indexing="ij")  # anterior on the left
            pts = np.stack(np.broadcast_arrays(np.full_like(y_cols, lx), y_cols, z_rows), axis=-1)
            views["sagittal"] = [window_to_uint8(_sample(hu_source, spacing_mm, pts), settings)]
    return views


def window_to_uint8(hu: np.ndarray, settings: RenderSettings) -> np.ndarray:
    """Map ``[level - width/2, level + width/2]`` HU linearly onto 0..255 (clipped)."""
    low = settings.level_hu - settings.window_hu / 2.0
    scaled = (np.asarray(hu, dtype=np.float64) - low) * (255.0 / settings.window_hu)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """A plain 8-bit greyscale PNG: no text, time, gamma or EXIF chunks, the same bytes every time.

    zlib level 1: half the encoding time of level 6 for about 10 % larger files (9 kB a slice).
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
