"""Mass effect of a growing tumour: the tissue around it is pushed outward before the tumour is drawn.

The field fades to zero at the organ surface and at the box border, so nothing outside the box and
no organ boundary moves; vessels near the tumour bow away from it.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mass_effect_field", "displace"]

_MIN_SHIFT_VOX = 0.01    # displacements below this (voxels) leave a voxel untouched (byte-identical)


def _ramp(n: int, width: int) -> np.ndarray:
    """1 in the middle of an axis of ``n`` voxels, falling smoothly to 0 over ``width`` voxels at each end."""
    t = np.ones(n, np.float32)
    if width > 0:
        r = np.sin(0.5 * np.pi * np.clip(np.arange(n, dtype=np.float32) / width, 0.0, 1.0)) ** 2
        t = np.minimum(r, r[::-1])
    return t


def mass_effect_field(presence: np.ndarray, organ_box: np.ndarray, spacing_mm, push: float) -> np.ndarray:
    """Outward displacement (voxels) that a tumour's mass imposes on the tissue around it.

    Parameters
    ----------
    presence : ndarray of float, shape (X, Y, Z)
        Tumour presence in [0, 1] (population / capacity) in the box.
    organ_box : ndarray of bool, shape (X, Y, Z)
        The organ in the box: the field fades to zero at its surface (the organ outline stays put).
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    push : float
        Largest shift as a fraction of the tumour's equivalent radius (e.g. 0.15).

    Returns
    -------
    ndarray of float32, shape (3, X, Y, Z)
        Per-axis displacement in voxels: the tissue found at ``x`` after the push came from
        ``x - u(x)``. Zero at the box border.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    body = presence >= 0.5
    volume_mm3 = float(np.count_nonzero(body)) * float(np.prod(spacing))
    radius_mm = (0.75 * volume_mm3 / np.pi) ** (1.0 / 3.0)
    u = np.zeros((3,) + presence.shape, np.float32)
    if radius_mm <= 0.0 or push <= 0.0:
        return u
    # The gradient of the blurred presence points into the tumour; its negative pushes outward,
    # strongest just outside the edge and fading over about one radius.
    blurred = ndimage.gaussian_filter(presence.astype(np.float32), sigma=0.5 * radius_mm / spacing, mode="constant",
                                      truncate=2.5)
    grad = np.gradient(blurred, *spacing)
    magnitude = np.sqrt(sum(g * g for g in grad))
    peak = float(magnitude.max())
    if peak <= 0.0:
        return u
    scale = float(push) * radius_mm / peak  # mm of shift per unit gradient
    # Fade to zero at the organ surface (smooth inside, zero outside) and over the outer fifth of the box.
    inside = ndimage.gaussian_filter(organ_box.astype(np.float32), sigma=1.5 / spacing, mode="nearest", truncate=2.0)
    fade = np.clip(2.0 * inside - 1.0, 0.0, 1.0)
    ramps = [_ramp(n, max(n // 5, 1)) for n in presence.shape]
    fade *= ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    for axis in range(3):
        u[axis] = -grad[axis] * scale * fade / spacing[axis]
    return u


def displace(ct_box: np.ndarray, smooth: np.ndarray, u: np.ndarray):
    """``(ct_out, smooth_out, moved)``: the box resampled at ``x - u(x)`` where the shift is noticeable.

    The tissue (``smooth``, the CT blurred a little) moves with linear interpolation; the scan's
    noise grain (the rest) moves with nearest-neighbour sampling, so the displaced region keeps the
    noise level of the scan (interpolating the noise would smooth it: a tell).
    """
    ct = ct_box.astype(np.float32)
    out, smooth_out = ct.copy(), smooth.astype(np.float32, copy=True)
    moved = np.sqrt((u * u).sum(axis=0)) > _MIN_SHIFT_VOX
    if moved.any():
        where = np.nonzero(moved)
        coords = np.stack([w - u[a][where] for a, w in enumerate(where)])
        tissue = ndimage.map_coordinates(smooth_out, coords, order=1, mode="nearest")
        grain = ndimage.map_coordinates(ct - smooth_out, coords, order=0, mode="nearest")
        smooth_out[where] = tissue
        out[where] = tissue + grain
    return out, smooth_out, moved
