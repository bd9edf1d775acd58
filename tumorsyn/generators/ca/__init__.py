"""The cellular-automaton generator (``method="ca"``).

Modules: ``model`` (tissue classes, neighbours, probabilities), ``hashing`` (counter-based
randomness), ``automaton`` (the per-voxel rules), ``cpu`` / ``cuda`` (kernels), ``grow``
(``grow_ca``, choosing the kernel), ``calibration`` (steps <-> millimetres), ``generator``
(``CAGenerator``), ``trajectory`` (``grow_trajectory``). Numba is imported only when a tumour
is grown, never by ``import tumorsyn``.
"""
from __future__ import annotations

from tumorsyn.generators.ca.generator import CAGenerator
from tumorsyn.generators.ca.trajectory import TrajectoryFrame, grow_trajectory

__all__ = ["CAGenerator", "grow_trajectory", "TrajectoryFrame"]
