"""Speed baseline: a clean-room restatement of the published SyntheticTumors liver recipe.

For benchmarking only. This module was written from a prose description of the recipe (the facts
collected in ``shared/ANCHORS.md``, section "SyntheticTumors"); no code of the SyntheticTumors or
DiffTumor repositories was read or copied (their licence, CC BY-NC-ND 4.0, forbids it). It exists
so that the benchmark can report our generator's speed as a ratio against a baseline with the same
*cost characteristics* as the published method:

* a texture bank of full-volume random fields built up front (:func:`build_texture_bank`),
  timed separately;
* per call (:func:`insert_tumor`): resampling the whole CT and liver mask to 1 mm isotropic,
  picking a location, building and elastically deforming an ellipsoid, blurring the full-volume
  tumour mask, darkening the CT with a texture from the bank, and resampling the whole result
  back to the native grid.

Recipe
------
* Location: an axial slice in the central 30-70 % of the liver's z-extent, a 2-voxel 2D erosion of
  the liver on that slice, a random pixel of the eroded slice.
* Shape: axis-aligned ellipsoid with radii 0.75-1.25 x r0 voxels at 1 mm (r0 = 4/8/16/32 for
  tiny/small/medium/large), then a random elastic deformation three times, each on a randomly
  chosen pair of axes (a smoothed 2D random displacement field, nearest-neighbour interpolation,
  hence jagged edges); cut flat by the liver mask.
* Texture: white noise blurred with sigma_a in {3..15}, thresholded as a Bernoulli field, blurred
  with sigma_b in {4, 7}, scaled to mean 0.5; one texture per call is taken from the bank.
* Intensity: ``HU - texture * blurred_mask * U(65, 145)`` (always hypodense), one draw per call.

Deviations and choices (the description does not fix these)
------------------------------------------------------------
* Write-back: the HU *change* made on the 1 mm grid is resampled to the native shape (one
  full-volume order-1 zoom, as a whole-CT write-back would cost) and added to the native CT, so
  voxels away from the tumour are returned unchanged instead of being interpolated twice. The
  tumour mask is resampled back with order 0 (a second full-volume zoom).
* Elastic deformation parameters: each displacement component is Gaussian-smoothed white noise
  (sigma 0.5 x r0 voxels, but at least 2) rescaled to a standard deviation of U(0.10, 0.25) x r0
  voxels; it is applied in a padded box around the ellipsoid, not on the whole volume.
* Blur of the tumour mask: Gaussian with sigma U(0.6, 1.2) voxels, applied to the full 1 mm
  volume.
* Bernoulli threshold: the sigma_a-blurred noise is rescaled to [0, 1] and used as the
  per-voxel probability of a binary field.
* Textures are stored as float32. A bank texture whose shape differs from the 1 mm scan is
  randomly cropped and/or wrap-padded to fit (the benchmark should build the bank with
  :func:`resampled_shape` so that no fitting is needed). float32 storage halves the memory that
  the published figure (3.2 GB for ten) implies, and SciPy's separable Gaussian filters build a
  texture of a 205 x 205 x 160 grid in about 1 s here, far below the published 8-26 s per texture;
  report the published bank cost alongside the measured one.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
from scipy import ndimage

__all__ = [
    "SIZE_CLASSES",
    "resampled_shape",
    "make_texture",
    "build_texture_bank",
    "choose_location",
    "deformed_ellipsoid",
    "insert_tumor",
    "make_phantom",
]

#: Base radius r0 (voxels at 1 mm) of each size class.
SIZE_CLASSES: dict[str, int] = {"tiny": 4, "small": 8, "medium": 16, "large": 32}

_TARGET_MM = 1.0


def resampled_shape(shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> tuple[int, int, int]:
    """Shape of a volume after resampling to 1 mm isotropic.

    Parameters
    ----------
    shape : tuple of int
        Native shape (X, Y, Z) in voxels.
    spacing_mm : tuple of float
        Native voxel spacing (X, Y, Z) in mm.

    Returns
    -------
    tuple of int
        The 1 mm shape, ``round(shape * spacing / 1 mm)`` per axis (at least 1).
    """
    x, y, z = (max(1, int(round(n * s / _TARGET_MM))) for n, s in zip(shape, spacing_mm))
    return x, y, z


def make_texture(
    shape: tuple[int, int, int],
    sigma_a: float,
    sigma_b: float,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """One full-volume texture: blurred noise -> Bernoulli field -> blurred again, mean 0.5.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (X, Y, Z) at 1 mm.
    sigma_a : float
        Gaussian sigma (voxels) of the first blur of the white noise.
    sigma_b : float
        Gaussian sigma (voxels) of the blur of the binary field.
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape`` with mean 0.5.
    """
    rng = np.random.default_rng(rng)
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = ndimage.gaussian_filter(noise, sigma_a)
    del noise
    lo, hi = float(field.min()), float(field.max())
    field -= lo
    field /= max(hi - lo, 1e-12)
    binary = (rng.random(shape, dtype=np.float32) < field).astype(np.float32)
    del field
    tex = ndimage.gaussian_filter(binary, sigma_b)
    del binary
    tex *= 0.5 / max(float(tex.mean()), 1e-12)
    return tex


def build_texture_bank(
    shape: tuple[int, int, int],
    n_textures: int,
    rng: np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """Build the texture bank up front, as the published recipe does.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (X, Y, Z) at 1 mm; use :func:`resampled_shape` of the scans to be processed.
    n_textures : int
        Number of textures.
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    list of numpy.ndarray
        ``n_textures`` float32 arrays of ``shape``, each from :func:`make_texture` with
        sigma_a drawn from {3, ..., 15} and sigma_b from {4, 7}.
    """
    rng = np.random.default_rng(rng)
    bank = []
    for _ in range(int(n_textures)):
        sigma_a = int(rng.integers(3, 16))
        sigma_b = int(rng.choice([4, 7]))
        bank.append(make_texture(tuple(shape), sigma_a, sigma_b, rng))
    return bank


def choose_location(
    liver: np.ndarray, rng: np.random.Generator | int | None = None
) -> tuple[int, int, int]:
    """Pick a tumour centre: a random pixel of an eroded axial liver slice.

    Parameters
    ----------
    liver : numpy.ndarray
        Boolean liver mask (X, Y, Z) at 1 mm.
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    tuple of int
        Centre (x, y, z) in voxels.

    Raises
    ------
    ValueError
        If the liver mask is empty.
    """
    rng = np.random.default_rng(rng)
    zs = np.flatnonzero(liver.any(axis=(0, 1)))
    if zs.size == 0:
        raise ValueError("empty liver mask")
    z0, z1 = int(zs[0]), int(zs[-1])
    lo = int(np.ceil(z0 + 0.3 * (z1 - z0)))
    hi = int(np.floor(z0 + 0.7 * (z1 - z0)))
    hi = max(hi, lo)
    for _ in range(20):
        z = int(rng.integers(lo, hi + 1))
        eroded = ndimage.binary_erosion(liver[:, :, z], iterations=2)
        xy = np.argwhere(eroded)
        if len(xy):
            x, y = xy[rng.integers(len(xy))]
            return int(x), int(y), z
    # Fallback (thin liver): any liver voxel of the central band.
    band = np.argwhere(liver[:, :, lo : hi + 1])
    if len(band) == 0:
        band = np.argwhere(liver)
        x, y, z = band[rng.integers(len(band))]
        return int(x), int(y), int(z)
    x, y, z = band[rng.integers(len(band))]
    return int(x), int(y), int(z) + lo


def _elastic_2d(
    box: np.ndarray, axes: tuple[int, int], amp: float, smooth: float, rng: np.random.Generator
) -> np.ndarray:
    """Deform a boolean box with one smoothed 2D displacement field on ``axes`` (nearest)."""
    a, b = axes
    plane = (box.shape[a], box.shape[b])
    disp = []
    for _ in range(2):
        d = ndimage.gaussian_filter(rng.standard_normal(plane), smooth)
        d *= amp / max(float(d.std()), 1e-12)
        disp.append(d)
    ia, ib = np.meshgrid(np.arange(plane[0]), np.arange(plane[1]), indexing="ij")
    src_a = ia + disp[0]
    src_b = ib + disp[1]
    c = 3 - a - b  # the remaining axis
    out = np.empty_like(box)
    for k in range(box.shape[c]):
        sl = [slice(None)] * 3
        sl[c] = k
        sl_t = tuple(sl)
        out[sl_t] = ndimage.map_coordinates(
            box[sl_t], [src_a, src_b], order=0, mode="constant", cval=0
        )
    return out


def deformed_ellipsoid(
    size_class: str, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Ellipsoid of a size class, elastically deformed three times (nearest interpolation).

    Parameters
    ----------
    size_class : {"tiny", "small", "medium", "large"}
        Size class; sets r0 = 4, 8, 16 or 32 voxels at 1 mm.
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    numpy.ndarray
        Boolean box of odd side lengths with the shape centred in it.
    """
    rng = np.random.default_rng(rng)
    r0 = SIZE_CLASSES[size_class]
    radii = r0 * rng.uniform(0.75, 1.25, size=3)
    half = np.ceil(radii * 1.5).astype(int) + 2
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    box = sum((g / r) ** 2 for g, r in zip(grids, radii)) <= 1.0
    smooth = max(2.0, 0.5 * r0)
    for _ in range(3):
        pair = [(0, 1), (0, 2), (1, 2)][int(rng.integers(3))]
        amp = float(rng.uniform(0.10, 0.25)) * r0
        box = _elastic_2d(box, pair, amp, smooth, rng)
    return box


def _fit_texture(tex: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Crop (random offset) and/or wrap-pad a bank texture to ``shape``."""
    if tex.shape == tuple(shape):
        return tex
    pad = [(0, max(0, s - t)) for s, t in zip(shape, tex.shape)]
    if any(p[1] for p in pad):
        tex = np.pad(tex, pad, mode="wrap")
    start = [int(rng.integers(t - s + 1)) for s, t in zip(shape, tex.shape)]
    return tex[tuple(slice(o, o + s) for o, s in zip(start, shape))]


def insert_tumor(
    ct_hu: np.ndarray,
    liver_mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    size_class: str,
    texture_bank: list[np.ndarray],
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Insert one hypodense liver tumour, the SyntheticTumors way (whole-scan 1 mm resampling).

    Parameters
    ----------
    ct_hu : numpy.ndarray
        CT in HU, float32, axes (X, Y, Z), native grid.
    liver_mask : numpy.ndarray
        Boolean liver mask, same shape.
    spacing_mm : tuple of float
        Native voxel spacing (X, Y, Z) in mm.
    size_class : {"tiny", "small", "medium", "large"}
        Tumour size class.
    texture_bank : list of numpy.ndarray
        Textures from :func:`build_texture_bank` (ideally of the 1 mm shape).
    rng : numpy.random.Generator or int or None
        Random source or seed.

    Returns
    -------
    ct_out : numpy.ndarray
        float32 CT with the tumour, native grid.
    tumor_mask : numpy.ndarray
        Boolean tumour mask, native grid.
    """
    if size_class not in SIZE_CLASSES:
        raise ValueError(f"size_class must be one of {sorted(SIZE_CLASSES)}, got {size_class!r}")
    if not texture_bank:
        raise ValueError("empty texture bank")
    rng = np.random.default_rng(rng)
    ct_hu = np.asarray(ct_hu, dtype=np.float32)
    native = ct_hu.shape
    iso = resampled_shape(native, spacing_mm)

    # 1. Whole-scan resampling to 1 mm isotropic.
    fwd = [i / n for i, n in zip(iso, native)]
    ct = ndimage.zoom(ct_hu, fwd, order=1)
    liver = ndimage.zoom(np.asarray(liver_mask, dtype=np.uint8), fwd, order=0).astype(bool)

    # 2. Location and shape, cut flat by the liver.
    cx, cy, cz = choose_location(liver, rng)
    box = deformed_ellipsoid(size_class, rng)
    geo = np.zeros(iso, dtype=bool)
    dst, src = [], []
    for c, n, b in zip((cx, cy, cz), iso, box.shape):
        lo = c - b // 2
        d0, d1 = max(lo, 0), min(lo + b, n)
        dst.append(slice(d0, d1))
        src.append(slice(d0 - lo, d1 - lo))
    geo[tuple(dst)] = box[tuple(src)]
    geo &= liver

    # 3. Texture x blurred mask x one intensity draw; always darker.
    tex = _fit_texture(texture_bank[int(rng.integers(len(texture_bank)))], iso, rng)
    blurred = ndimage.gaussian_filter(geo.astype(np.float32), float(rng.uniform(0.6, 1.2)))
    delta = tex * blurred
    delta *= -float(rng.uniform(65.0, 145.0))
    del blurred, ct

    # 4. Whole-volume resampling back to the native grid.
    back = [n / i for n, i in zip(native, iso)]
    ct_out = ct_hu + ndimage.zoom(delta, back, order=1).astype(np.float32)
    tumor = ndimage.zoom(geo.astype(np.uint8), back, order=0).astype(bool)
    return ct_out, tumor


def make_phantom(
    shape: tuple[int, int, int] = (256, 256, 100),
    spacing_mm: tuple[float, float, float] = (0.8, 0.8, 1.6),
    rng: np.random.Generator | int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic abdomen: an ellipsoidal liver of about 1.5 l inside a soft-tissue body.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (X, Y, Z).
    spacing_mm : tuple of float
        Voxel spacing (X, Y, Z) in mm.
    rng : numpy.random.Generator or int or None
        Random source or seed for the image noise.

    Returns
    -------
    ct_hu : numpy.ndarray
        float32 CT in HU (air -1000, body 40, liver 60, plus noise of 10 HU).
    liver : numpy.ndarray
        Boolean liver mask.
    """
    rng = np.random.default_rng(rng)
    coords = [
        (np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing_mm)
    ]
    x, y, z = np.meshgrid(*coords, indexing="ij", sparse=True)
    body = (x / 95.0) ** 2 + (y / 95.0) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)
    # Semi-axes 90 x 70 x 57 mm: 4/3 pi abc ~ 1.50 l.
    liver = (x / 90.0) ** 2 + (y / 70.0) ** 2 + (z / 57.0) ** 2 <= 1.0
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    ct[liver] = 60.0
    ct += rng.normal(0.0, 10.0, size=shape).astype(np.float32)
    return ct, liver


def _main() -> None:
    spacing = (0.8, 0.8, 1.6)
    ct, liver = make_phantom((256, 256, 100), spacing, rng=0)
    vox_ml = float(np.prod(spacing)) / 1000.0
    iso = resampled_shape(ct.shape, spacing)
    print(
        f"phantom {ct.shape} at {spacing} mm, liver {liver.sum() * vox_ml:.0f} ml, "
        f"1 mm grid {iso}"
    )

    n_textures = 2  # the published bank is larger; kept small to run quickly here
    t0 = time.perf_counter()
    bank = build_texture_bank(iso, n_textures, rng=1)
    t_bank = time.perf_counter() - t0
    print(
        f"texture bank: {n_textures} textures in {t_bank:.2f} s "
        f"({t_bank / n_textures:.2f} s/texture, {sum(t.nbytes for t in bank) / 2**20:.0f} MiB)"
    )

    rng = np.random.default_rng(2)
    reps = 3
    all_times: list[float] = []
    for size_class in SIZE_CLASSES:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out, mask = insert_tumor(ct, liver, spacing, size_class, bank, rng)
            times.append(time.perf_counter() - t0)
        all_times += times
        inside = out[mask]
        drop = float(ct[mask].mean() - inside.mean()) if inside.size else float("nan")
        print(
            f"{size_class:>6}: median {statistics.median(times):.3f} s/call "
            f"(last: {mask.sum() * vox_ml:.2f} ml, mean drop {drop:.0f} HU)"
        )
    print(f"all: median {statistics.median(all_times):.3f} s/call over {len(all_times)} calls")


if __name__ == "__main__":
    _main()
