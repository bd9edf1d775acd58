"""The automaton's per-voxel rules, written once and compiled for every target.

Each step is synchronous and has two passes, so no outcome depends on thread order:

1. :func:`choose_voxel` reads the state at step ``t`` around one voxel and writes only that
   voxel's decisions (which neighbour it invades, which vessel it pushes).
2. :func:`next_state` turns one voxel's own state at ``t`` and the number of decisions aimed at
   it into its state at ``t + 1``. The GPU gathers those numbers per voxel (:func:`update_voxel`);
   the CPU kernel scatters them from the deciding voxels (fewer reads); sums do not depend on order.

No atomics, no shared counters: the Numba CPU kernel, the CUDA kernel and plain Python (the
CUDA simulator) call these same functions and give bit-identical populations.

State per voxel: ``pop`` (int8) 0 = no tumour, 1..capacity = tumour cells, -1 = necrotic (dead);
``age`` (uint8) steps spent saturated; ``pressure`` (uint8) pushes a vessel has received.
"""
from __future__ import annotations

from numba.extending import register_jitable

from tumorsyn.generators.ca.hashing import (DRAW_INVADE, DRAW_NECROSIS, DRAW_PROLIFERATE, hash4, pick26,
                                            uniform01)
from tumorsyn.generators.ca.model import VESSEL

__all__ = ["choose_voxel", "next_state", "update_voxel", "voxel_key", "INVASION_TRIES"]

INVASION_TRIES = 3
_KEY_HALF = 4096  # voxel keys are unique for boxes up to 8192 voxels per axis


@register_jitable
def voxel_key(i, j, k, si, sj, sk):
    """The hash's voxel counter: the position relative to the seed voxel ``(si, sj, sk)``.

    Relative to the seed, not to the box, so the same spec grows the same tumour whatever box
    holds it (a trajectory run in a larger box matches the tumour that ``synthesize`` writes).
    """
    return ((i - si + _KEY_HALF) * (2 * _KEY_HALF) + (j - sj + _KEY_HALF)) * (2 * _KEY_HALF) + (k - sk + _KEY_HALF)


@register_jitable
def choose_voxel(i, j, k, pop, tissue, pressure, prob, offsets, seed, step, capacity, yield_pushes, si, sj, sk):
    """Decisions of voxel (i, j, k) at ``step``: ``(invade_direction, push_direction)``, -1 = none.

    Rule 2 (invasion): a cell at half capacity or more picks one of the 26 neighbours uniformly;
    a barrier deflects it to a new pick (up to ``INVASION_TRIES`` picks); on the first enterable
    neighbour it invades with the tissue- and direction-dependent probability ``prob[class, d]``.
    Rule 3 (pressure): a saturated cell whose pick is an intact vessel pushes on it.
    """
    p = int(pop[i, j, k])
    invade = -1
    push = -1
    if p < (capacity + 1) // 2:  # empty, dead (-1) or below half capacity: only proliferates
        return invade, push
    index = voxel_key(i, j, k, si, sj, sk)
    for attempt in range(INVASION_TRIES):
        d = pick26(hash4(seed, step, index, DRAW_INVADE + 2 * attempt))
        ti = i + offsets[d, 0]
        tj = j + offsets[d, 1]
        tk = k + offsets[d, 2]
        c = tissue[ti, tj, tk]
        if c == VESSEL and pressure[ti, tj, tk] < yield_pushes:
            # Rule 3: an intact vessel resists; a saturated cell pushes, the growth is deflected.
            if p >= capacity and push < 0:
                push = d
            continue
        if prob[c, d] <= 0.0:
            continue  # barrier (outside, organ surface, padding): deflected to another pick
        q = int(pop[ti, tj, tk])
        if q < 0 or q >= capacity:
            continue  # dead or saturated neighbour: no room there
        # Rule 2: one attempt on the first enterable neighbour, accepted with prob[class, d].
        if uniform01(hash4(seed, step, index, DRAW_INVADE + 2 * attempt + 1)) < prob[c, d]:
            invade = d
        break
    return invade, push


@register_jitable
def next_state(p, a, pr, arrivals, pushes, is_vessel, index, seed, step, capacity, p_proliferate, necrosis_step,
               necrosis_age, necrosis_rate):
    """State of one voxel at ``step + 1`` from its state at ``step`` and the decisions aimed at it.

    ``arrivals`` and ``pushes`` count the neighbours whose invasion / push points at this voxel;
    how they are counted (gathered by the target, or scattered by the sources) does not change the
    result. Returns ``(pop, age, pressure, active)``.
    """
    if p < 0:
        return p, a, pr, True  # necrotic cells stay dead
    new = p + arrivals  # Rule 2: every invading neighbour seeds one cell here
    # Rule 1 (proliferation): a living cell below capacity divides with probability p_proliferate.
    if 0 < p < capacity and uniform01(hash4(seed, step, index, DRAW_PROLIFERATE)) < p_proliferate:
        new += 1
    if new > capacity:
        new = capacity
    # Ageing of saturated cells: the core, saturated longest, is farthest from the growing front.
    if p >= capacity and a < 255:
        a += 1
    # Rule 4 (necrosis): once the tumour is past its necrosis size, old saturated core cells die.
    if (step >= necrosis_step and p >= capacity and a >= necrosis_age
            and uniform01(hash4(seed, step, index, DRAW_NECROSIS)) < necrosis_rate):
        new = -1
    # Rule 3 (pressure): a vessel counts the pushes it receives; past yield_pushes it gives way.
    if is_vessel:
        pr = min(255, pr + pushes)
    return new, a, pr, new != 0 or pr > 0


@register_jitable
def update_voxel(i, j, k, pop, age, pressure, tissue, invade, push, offsets, seed, step, capacity,
                 p_proliferate, necrosis_step, necrosis_age, necrosis_rate, si, sj, sk):
    """State of voxel (i, j, k) at ``step + 1``, gathering its neighbours' decisions (GPU form).

    Returns ``(pop, age, pressure, active)``; see :func:`next_state`.
    """
    # Plain ints from here on: the same arithmetic in Python (simulator) and compiled code.
    p = int(pop[i, j, k])
    a = int(age[i, j, k])
    pr = int(pressure[i, j, k])
    if p < 0:
        return p, a, pr, True
    # Gather the neighbours' decisions that point at this voxel. A saturated voxel that is not a
    # vessel needs none: arrivals cannot raise it past capacity and only vessels count pushes.
    arrivals = 0
    pushes = 0
    is_vessel = tissue[i, j, k] == VESSEL
    for d in range(26 if (p < capacity or is_vessel) else 0):
        ui = i - offsets[d, 0]
        uj = j - offsets[d, 1]
        uk = k - offsets[d, 2]
        if invade[ui, uj, uk] == d:
            arrivals += 1
        if push[ui, uj, uk] == d:
            pushes += 1
    return next_state(p, a, pr, arrivals, pushes, is_vessel, voxel_key(i, j, k, si, sj, sk), seed, step, capacity,
                      p_proliferate, necrosis_step, necrosis_age, necrosis_rate)
