"""The Numba CPU kernel: the automaton's two synchronous passes over the active bounding box.

Work per step is confined to the bounding box of the active voxels (tumour cells, dead cells and
pushed vessels) plus one voxel, tracked exactly after every step: the cost grows with the tumour,
not with the organ box (the ancestor scanned the whole box every step).

Unlike the GPU kernel, which gathers the 26 neighbours' decisions for every voxel, the CPU kernel
scatters them: each deciding voxel adds one to its target's count. Most voxels of the box decide
nothing, so this reads far less memory; counts are sums, so the result is the same bit for bit.
"""
from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

from tumorsyn.generators.ca.automaton import choose_voxel, next_state, voxel_key
from tumorsyn.generators.ca.model import VESSEL

__all__ = ["_grow_numba", "_grow_numba_serial"]


def _grow_impl(pop, age, pressure, arrive, pushed, tissue, prob, offsets, seed, first_step, last_step, capacity,
               yield_pushes, p_proliferate, necrosis_step, necrosis_age, necrosis_rate, bbox, si, sj, sk):
    """Advance the automaton from ``first_step`` to ``last_step`` in place.

    Parameters
    ----------
    pop : ndarray of int8, shape (X, Y, Z)
        Population (-1 dead, 0 empty, 1..capacity), padded box; updated in place.
    age, pressure : ndarray of uint8, shape (X, Y, Z)
        Steps saturated; pushes received by vessels. Updated in place.
    arrive, pushed : ndarray of uint8, shape (X, Y, Z)
        Scratch: invasions and pushes aimed at each voxel in this step (all zero between steps).
    tissue : ndarray of int8, shape (X, Y, Z)
        Tissue classes (see :mod:`tumorsyn.generators.ca.model`); the border is ``BARRIER``.
    prob : ndarray of float32, shape (classes, 26)
    offsets : ndarray of int64, shape (26, 3)
    seed, first_step, last_step, capacity, yield_pushes, necrosis_step, necrosis_age : int
    p_proliferate, necrosis_rate : float32
    bbox : ndarray of int64, shape (6,)
        Active box ``x0, x1, y0, y1, z0, z1`` (half-open, voxels); updated in place.
    si, sj, sk : int
        The seed voxel (the origin of the hash's voxel counter).

    Returns
    -------
    int
        Voxel updates performed (work done, for benchmarks).
    """
    nx, ny, nz = pop.shape
    work = 0
    for step in range(first_step, last_step):
        x0, x1, y0, y1, z0, z1 = bbox[0], bbox[1], bbox[2], bbox[3], bbox[4], bbox[5]
        # Pass 1 (rules 2 and 3: decisions, scattered as counts onto their targets). A voxel writes
        # only into its own slab and the two beside it, so slabs three apart never collide: each of
        # the three phases runs its slabs in parallel without races or atomics.
        for phase in range(3):
            for s in prange(max(0, (x1 - x0 - phase + 2) // 3)):
                i = x0 + phase + 3 * s
                for j in range(y0, y1):
                    for k in range(z0, z1):
                        d_inv, d_push = choose_voxel(i, j, k, pop, tissue, pressure, prob, offsets, seed, step,
                                                     capacity, yield_pushes, si, sj, sk)
                        if d_inv >= 0:
                            arrive[i + offsets[d_inv, 0], j + offsets[d_inv, 1], k + offsets[d_inv, 2]] += 1
                        if d_push >= 0:
                            pushed[i + offsets[d_push, 0], j + offsets[d_push, 1], k + offsets[d_push, 2]] += 1
        # Pass 2 (rules 1-4: next state). Decisions reach one voxel beyond the active box.
        ux0, ux1 = max(x0 - 1, 1), min(x1 + 1, nx - 1)
        uy0, uy1 = max(y0 - 1, 1), min(y1 + 1, ny - 1)
        uz0, uz1 = max(z0 - 1, 1), min(z1 + 1, nz - 1)
        n = ux1 - ux0
        lo_y = np.full(n, ny, np.int64)
        hi_y = np.full(n, -1, np.int64)
        lo_z = np.full(n, nz, np.int64)
        hi_z = np.full(n, -1, np.int64)
        for ii in prange(n):
            i = ux0 + ii
            for j in range(uy0, uy1):
                for k in range(uz0, uz1):
                    p = int(pop[i, j, k])
                    arrivals = int(arrive[i, j, k])
                    pushes = int(pushed[i, j, k])
                    if p == 0 and arrivals == 0 and pushes == 0:
                        active = pressure[i, j, k] > 0  # nothing happens to an empty voxel left alone
                    else:
                        new, a, pr, active = next_state(p, int(age[i, j, k]), int(pressure[i, j, k]), arrivals,
                                                        pushes, tissue[i, j, k] == VESSEL,
                                                        voxel_key(i, j, k, si, sj, sk), seed, step, capacity,
                                                        p_proliferate, necrosis_step, necrosis_age, necrosis_rate)
                        pop[i, j, k] = new
                        age[i, j, k] = a
                        pressure[i, j, k] = pr
                        arrive[i, j, k] = 0
                        pushed[i, j, k] = 0
                    if active:
                        lo_y[ii] = min(lo_y[ii], j)
                        hi_y[ii] = max(hi_y[ii], j)
                        lo_z[ii] = min(lo_z[ii], k)
                        hi_z[ii] = max(hi_z[ii], k)
        work += n * (uy1 - uy0) * (uz1 - uz0)
        # The new active box (exact, so that a slow tumour is not charged for a growing margin).
        for ii in range(n):
            if hi_y[ii] >= 0:
                bbox[0] = min(bbox[0], ux0 + ii)
                bbox[1] = max(bbox[1], ux0 + ii + 1)
                bbox[2] = min(bbox[2], lo_y[ii])
                bbox[3] = max(bbox[3], hi_y[ii] + 1)
                bbox[4] = min(bbox[4], lo_z[ii])
                bbox[5] = max(bbox[5], hi_z[ii] + 1)
    return work


def _renamed(fn, name: str):
    """A copy of ``fn`` under another name: Numba's on-disk cache keys a kernel by the function's
    qualified name and line, not by its compile flags, so the serial and the parallel build of one
    function would share (and overwrite) one cache entry."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    return copy


# The parallel kernel for large boxes, and the same code compiled serially (prange runs as range):
# on small tumours the per-step cost of waking threads exceeds the work. Both give identical
# results (each pass is synchronous, so the order of voxels within a pass does not matter).
_grow_numba = njit(parallel=True, cache=True)(_renamed(_grow_impl, "_grow_impl_parallel"))
_grow_numba_serial = njit(cache=True)(_renamed(_grow_impl, "_grow_impl_serial"))
