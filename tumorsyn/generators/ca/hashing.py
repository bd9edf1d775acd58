"""Counter-based randomness for the automaton: a pure integer hash of (seed, step, voxel, draw).

Every random decision of the cellular automaton is a function of four integers, never of a
clock, a global generator or the order in which threads run. The CPU kernel, the CUDA kernel and
plain Python call the same functions below (``register_jitable`` compiles them for each target),
so a given spec grows the same tumour on every device.

The mixer is the splitmix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014): 64-bit multiply-xorshift rounds, integer-only and so bit-exact on any
hardware. Each input is folded in with its own odd constant and a full mixing round.
"""
from __future__ import annotations

from numba import float32, int64, uint64
from numba.extending import register_jitable

__all__ = ["mix64", "hash4", "pick26", "uniform01", "DRAW_PROLIFERATE", "DRAW_NECROSIS", "DRAW_INVADE"]

# Draw numbers: each decision of one voxel in one step has its own stream.
DRAW_INVADE = 0        # draws 0..5: (direction, acceptance) for invasion tries 0, 1, 2
DRAW_PROLIFERATE = 6
DRAW_NECROSIS = 7

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_K_STEP = 0xD6E8FEB86659FD93
_K_INDEX = 0xA0761D6478BD642F
_K_DRAW = 0xE7037ED1A0B428DB
_INV_2_24 = 5.9604644775390625e-08  # 2**-24, exact in float32


@register_jitable
def mix64(x):
    """splitmix64 finaliser of a uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> uint64(30))) * uint64(_M1)
    x = (x ^ (x >> uint64(27))) * uint64(_M2)
    return x ^ (x >> uint64(31))


@register_jitable
def hash4(seed, step, index, draw):
    """A 64-bit hash of (seed, step, voxel linear index, draw number); all inputs non-negative."""
    h = mix64(uint64(seed) + uint64(_GOLDEN))
    h = mix64(h ^ (uint64(step) * uint64(_K_STEP)))
    h = mix64(h ^ (uint64(index) * uint64(_K_INDEX)))
    return mix64(h ^ (uint64(draw) * uint64(_K_DRAW)))


@register_jitable
def pick26(h):
    """One of the 26 neighbour directions, uniformly: floor(hi32(h) * 26 / 2**32), in 0..25."""
    # Signed, so that callers mixing it with -1 ("no direction") stay in integers.
    return int64((h >> uint64(32)) * uint64(26) >> uint64(32))


@register_jitable
def uniform01(h):
    """A float32 uniform in [0, 1) from the low 24 bits of ``h`` (exact: 24-bit integer x 2**-24)."""
    return float32(h & uint64(0xFFFFFF)) * float32(_INV_2_24)
