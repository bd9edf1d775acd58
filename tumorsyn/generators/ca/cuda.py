"""The CUDA kernel (numba-cuda): the same two synchronous passes, one thread per voxel.

Imported only when ``device="cuda"`` (or ``"auto"`` finds a GPU). The per-voxel rules are the
very functions the CPU kernel compiles (:mod:`tumorsyn.generators.ca.automaton`), and all
randomness is the integer hash of (seed, step, voxel, draw): the populations are bit-identical
to the CPU's. Each step launches over the box the tumour can at most have reached (the seed box
grown by one voxel per step), so the host never waits for the device between steps.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from tumorsyn.generators.ca.automaton import choose_voxel, update_voxel

__all__ = ["_grow_cuda"]

_BLOCK = (8, 8, 4)


@cuda.jit
def _choose_kernel(pop, tissue, pressure, prob, offsets, seed, step, capacity, yield_pushes, invade, push,
                   x0, y0, z0, x1, y1, z1, si, sj, sk):
    # Pass 1 (rules 2 and 3: decisions of each voxel from the state at `step`).
    gi, gj, gk = cuda.grid(3)
    i = x0 + gi
    j = y0 + gj
    k = z0 + gk
    if i < x1 and j < y1 and k < z1:
        d_inv, d_push = choose_voxel(i, j, k, pop, tissue, pressure, prob, offsets, seed, step, capacity,
                                     yield_pushes, si, sj, sk)
        invade[i, j, k] = d_inv
        push[i, j, k] = d_push


@cuda.jit
def _update_kernel(pop, age, pressure, tissue, invade, push, offsets, seed, step, capacity, p_proliferate,
                   necrosis_step, necrosis_age, necrosis_rate, x0, y0, z0, x1, y1, z1, si, sj, sk):
    # Pass 2 (rules 1-4: each voxel's state at `step + 1` from its own state and the decisions).
    gi, gj, gk = cuda.grid(3)
    i = x0 + gi
    j = y0 + gj
    k = z0 + gk
    if i < x1 and j < y1 and k < z1:
        new, a, pr, active = update_voxel(i, j, k, pop, age, pressure, tissue, invade, push, offsets, seed, step,
                                          capacity, p_proliferate, necrosis_step, necrosis_age, necrosis_rate,
                                          si, sj, sk)
        pop[i, j, k] = new
        age[i, j, k] = a
        pressure[i, j, k] = pr


def _grid(extent) -> tuple:
    return tuple(max(1, (int(n) + b - 1) // b) for n, b in zip(extent, _BLOCK))


class CudaState:
    """The automaton's arrays on the GPU, kept there across calls of :func:`_grow_cuda`."""

    def __init__(self, pop, age, pressure, tissue, prob, offsets):
        self.pop = cuda.to_device(pop)
        self.age = cuda.to_device(age)
        self.pressure = cuda.to_device(pressure)
        self.tissue = cuda.to_device(tissue)
        self.prob = cuda.to_device(prob)
        self.offsets = cuda.to_device(offsets)
        self.invade = cuda.to_device(np.full(pop.shape, -1, np.int8))
        self.push = cuda.to_device(np.full(pop.shape, -1, np.int8))

    def copy_to_host(self):
        return self.pop.copy_to_host(), self.age.copy_to_host(), self.pressure.copy_to_host()


def _grow_cuda(state: CudaState, *, seed: int, first_step: int, last_step: int, capacity: int, yield_pushes: int,
               p_proliferate: float, necrosis_step: int, necrosis_age: int, necrosis_rate: float,
               start_box, base_step: int, seed_voxel) -> int:
    """Advance ``state`` from ``first_step`` to ``last_step`` on the GPU; returns voxel updates launched.

    ``start_box`` is the active box ``(x0, x1, y0, y1, z0, z1)`` at ``base_step``; at step ``s`` the
    tumour lies within it grown by ``s - base_step`` voxels (invasion moves one voxel per step).
    """
    shape = state.pop.shape
    seed_voxel = tuple(int(v) for v in seed_voxel)
    p_prol = np.float32(p_proliferate)
    nec_rate = np.float32(necrosis_rate)
    work = 0
    for step in range(first_step, last_step):
        grow = step - base_step
        lo = [max(int(start_box[2 * a]) - grow, 1) for a in range(3)]
        hi = [min(int(start_box[2 * a + 1]) + grow, shape[a] - 1) for a in range(3)]
        extent = [h - l for h, l in zip(hi, lo)]
        _choose_kernel[_grid(extent), _BLOCK](state.pop, state.tissue, state.pressure, state.prob, state.offsets,
                                              seed, step, capacity, yield_pushes, state.invade, state.push,
                                              lo[0], lo[1], lo[2], hi[0], hi[1], hi[2], *seed_voxel)
        ulo = [max(v - 1, 1) for v in lo]
        uhi = [min(v + 1, shape[a] - 1) for a, v in enumerate(hi)]
        uext = [h - l for h, l in zip(uhi, ulo)]
        _update_kernel[_grid(uext), _BLOCK](state.pop, state.age, state.pressure, state.tissue, state.invade,
                                            state.push, state.offsets, seed, step, capacity, p_prol, necrosis_step,
                                            necrosis_age, nec_rate, ulo[0], ulo[1], ulo[2], uhi[0], uhi[1], uhi[2],
                                            *seed_voxel)
        work += int(np.prod(uext))
    cuda.synchronize()
    return work
