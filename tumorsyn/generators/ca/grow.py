"""``grow_ca``: the public entry to the automaton, choosing the CPU or the CUDA kernel.

This thin pure-Python layer checks its inputs, sets up the state, and hands the work to
``_grow_numba`` (CPU) or ``_grow_cuda`` (GPU); both give bit-identical populations.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from tumorsyn.device import Device, parse_device
from tumorsyn.device import resolve_device as _resolve
from tumorsyn.errors import ConfigError
from tumorsyn.generators.ca.model import N_CLASSES, OFFSETS

__all__ = ["CAResult", "grow_ca", "resolve_device", "NO_NECROSIS"]

NO_NECROSIS = 2**31 - 1  # a necrosis step that is never reached
PARALLEL_MIN_VOXELS = 2**18


@dataclass
class CAResult:
    """The automaton's state after growth, in the padded box.

    Attributes
    ----------
    pop : ndarray of int8, shape (X, Y, Z)
        -1 necrotic, 0 no tumour, 1..capacity tumour cells.
    pressure : ndarray of uint8, shape (X, Y, Z)
        Pushes received by each vessel voxel.
    snapshots : dict of int to ndarray of int8
        ``pop`` after each requested number of steps.
    work : int
        Voxel updates performed (the cost measure of the kernel).
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    pop: np.ndarray
    pressure: np.ndarray
    snapshots: dict = field(default_factory=dict)
    work: int = 0
    device: str = "cpu"


def resolve_device(device) -> Device:
    """The device the automaton runs on for a request (see :func:`tumorsyn.device.resolve_device`).

    ``auto`` takes a GPU when numba-cuda can use one, else the CPU; ``cuda:N`` is GPU number N.
    """
    text = parse_device(device)
    try:
        import numba  # noqa: F401
    except ImportError:
        raise ConfigError("the ca generator needs numba; install it with: pip install 'tumorsyn[ca]'") from None
    return _resolve(text, backend="numba")


def _on_gpu(index: int | None):
    """Make GPU ``index`` numba's current device for the block (plain ``cuda``: the current one)."""
    if index is None:
        return contextlib.nullcontext()
    from numba import cuda

    return cuda.gpus[index]


def grow_ca(tissue: np.ndarray, prob: np.ndarray, *, seed: int, seed_voxel, steps: int, capacity: int = 10,
            yield_pushes: int = 8, p_proliferate: float = 0.8, necrosis_step: int = NO_NECROSIS,
            necrosis_age: int = 255, necrosis_rate: float = 0.0, save_steps=(), device: str = "auto",
            parallel: bool | None = None) -> CAResult:
    """Grow a tumour from one seed voxel through a tissue map.

    Parameters
    ----------
    tissue : ndarray of int8, shape (X, Y, Z)
        Tissue classes (:func:`~tumorsyn.generators.ca.model.tissue_classes`), with a border of
        ``BARRIER`` at least one voxel thick.
    prob : ndarray of float32, shape (N_CLASSES, 26)
        Invasion acceptance per tissue class and direction
        (:func:`~tumorsyn.generators.ca.model.probability_table`).
    seed : int
        Seed of the counter-based hash, ``0 <= seed < 2**63``.
    seed_voxel : sequence of 3 int
        Where the first cells sit (index into ``tissue``, off the border).
    steps : int
        Number of synchronous steps.
    capacity : int
        Cells a voxel holds (2..100); invasion starts at half capacity.
    yield_pushes : int
        Pushes after which a vessel voxel gives way (0..255).
    p_proliferate : float
        Probability per step that a non-saturated cell voxel gains a cell.
    necrosis_step, necrosis_age : int
        From step ``necrosis_step`` on, voxels saturated for ``necrosis_age`` steps may die.
    necrosis_rate : float
        Probability per step of that death.
    save_steps : sequence of int
        Also return the population after these many steps (may exceed ``steps``).
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where the kernel runs (``cuda:N``: GPU number N); every device gives the same tumour.
    parallel : bool, optional
        CPU only: use the multi-threaded kernel. Default: when more than one thread is available
        and the box holds at least ``PARALLEL_MIN_VOXELS`` voxels (below that, waking threads
        every step costs more than it saves). Results are identical either way.

    Returns
    -------
    CAResult
    """
    tissue = np.ascontiguousarray(tissue, dtype=np.int8)
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if tissue.ndim != 3 or min(tissue.shape) < 3:
        raise ConfigError(f"tissue map must be 3D with a barrier border, got shape {tissue.shape}")
    if prob.shape != (N_CLASSES, 26):
        raise ConfigError(f"prob must have shape ({N_CLASSES}, 26), got {prob.shape}")
    if not 2 <= int(capacity) <= 100:
        raise ConfigError(f"capacity must be 2..100 cells, got {capacity}")
    if not 0 <= int(seed) < 2**63:
        raise ConfigError(f"seed must be in [0, 2**63), got {seed}")
    if int(steps) < 0 or any(int(s) < 0 for s in save_steps):
        raise ConfigError(f"steps must be non-negative, got {steps} and save_steps {tuple(save_steps)}")
    sv = tuple(int(v) for v in seed_voxel)
    if not all(1 <= v < n - 1 for v, n in zip(sv, tissue.shape)):
        raise ConfigError(f"seed voxel {sv} lies on or outside the border of a box of shape {tissue.shape}")
    where = resolve_device(device)
    kind = where.kind

    pop = np.zeros(tissue.shape, np.int8)
    pop[sv] = (int(capacity) + 1) // 2  # the seed: a clone at half capacity, ready to invade
    age = np.zeros(tissue.shape, np.uint8)
    pressure = np.zeros(tissue.shape, np.uint8)
    marks = sorted({int(s) for s in save_steps} | {int(steps)})
    snapshots: dict[int, np.ndarray] = {}
    common = dict(capacity=int(capacity), yield_pushes=int(yield_pushes), necrosis_step=int(necrosis_step),
                  necrosis_age=int(necrosis_age))
    work = 0
    final = None
    if kind == "cpu":
        import numba

        from tumorsyn.generators.ca import cpu

        if parallel is None:
            parallel = numba.get_num_threads() > 1 and tissue.size >= PARALLEL_MIN_VOXELS
        kernel = cpu._grow_numba if parallel else cpu._grow_numba_serial
        arrive = np.zeros(tissue.shape, np.uint8)
        pushed = np.zeros(tissue.shape, np.uint8)
        bbox = np.array([sv[0], sv[0] + 1, sv[1], sv[1] + 1, sv[2], sv[2] + 1], np.int64)
        done = 0
        for mark in marks:
            work += kernel(pop, age, pressure, arrive, pushed, tissue, prob, OFFSETS, int(seed), done, mark,
                                common["capacity"], common["yield_pushes"], np.float32(p_proliferate),
                                common["necrosis_step"], common["necrosis_age"], np.float32(necrosis_rate), bbox, *sv)
            done = mark
            snapshots[mark] = pop.copy()
            if mark == int(steps):
                final = (pop.copy(), pressure.copy())
    else:
        from tumorsyn.generators.ca.cuda import CudaState, _grow_cuda

        with _on_gpu(where.index):  # the state's arrays live on, and the kernels run on, that GPU
            state = CudaState(pop, age, pressure, tissue, prob, OFFSETS)
            start_box = (sv[0], sv[0] + 1, sv[1], sv[1] + 1, sv[2], sv[2] + 1)
            done = 0
            for mark in marks:
                work += _grow_cuda(state, seed=int(seed), first_step=done, last_step=mark,
                                   p_proliferate=p_proliferate, necrosis_rate=necrosis_rate, start_box=start_box,
                                   base_step=0, seed_voxel=sv, **common)
                done = mark
                host_pop, _, host_pressure = state.copy_to_host()
                snapshots[mark] = host_pop
                if mark == int(steps):
                    final = (host_pop.copy(), host_pressure)
    wanted = {int(s) for s in save_steps}
    return CAResult(pop=final[0], pressure=final[1], snapshots={s: snapshots[s] for s in sorted(wanted)},
                    work=int(work), device=kind)
