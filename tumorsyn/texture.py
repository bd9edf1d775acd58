"""Smooth random fields for tumour texture and shape noise, made inside the tumour's box only.

No texture bank: each field is drawn from the spec's seed when it is needed, at a cost that grows
with the tumour's box, not with the scan.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["seeded_streams", "smooth_noise", "lattice_noise", "sample_lattice"]


def seeded_streams(seed: int, count: int) -> list[np.random.Generator]:
    """``count`` independent generators derived from one seed (NumPy SeedSequence spawning).

    Each random field of a tumour has its own stream, so adding a field in a later version does
    not change the others.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(count)]


def smooth_noise(shape, *, sigma_mm: float, spacing_mm, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation.

    Parameters
    ----------
    shape : tuple of int
        Box shape (X, Y, Z) in voxels.
    sigma_mm : float
        Correlation length: standard deviation of the Gaussian kernel, in millimetres.
    spacing_mm : sequence of 3 float
        Voxel size in mm; the kernel width per axis is ``sigma_mm / spacing_mm`` voxels.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    noise = rng.standard_normal(size=tuple(shape), dtype=np.float32)
    sigma_vox = [sigma_mm / float(s) for s in spacing_mm]
    field = ndimage.gaussian_filter(noise, sigma=sigma_vox, mode="reflect", truncate=3.0)
    std = float(field.std())
    return (field - float(field.mean())) / (std if std > 0 else 1.0)


def lattice_noise(rng: np.random.Generator, *, nodes: int, sigma_nodes: float = 1.0) -> np.ndarray:
    """A small cubic lattice of smooth noise (zero mean, unit std), to be sampled by coordinates.

    Fields defined on a lattice in the tumour's own normalised frame do not change when the
    tumour is scaled or the voxel grid changes: the same spec gives the same shape on any spacing.
    """
    noise = rng.standard_normal(size=(nodes, nodes, nodes))
    field = ndimage.gaussian_filter(noise, sigma=sigma_nodes, mode="wrap")
    return ((field - field.mean()) / field.std()).astype(np.float64)


def sample_lattice(lattice: np.ndarray, coords: np.ndarray, *, extent: float, order: int = 3) -> np.ndarray:
    """Sample ``lattice`` (covering ``[-extent, extent]^3``) at ``coords`` (3, ...), spline order ``order``."""
    nodes = lattice.shape[0]
    index = (coords + extent) * ((nodes - 1) / (2.0 * extent))
    flat = index.reshape(3, -1)
    values = ndimage.map_coordinates(lattice, flat, order=order, mode="nearest", prefilter=order > 1)
    return values.reshape(coords.shape[1:]).astype(np.float32)
