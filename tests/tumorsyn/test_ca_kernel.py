"""The automaton's kernels: randomness, rules, CPU = parallel CPU = (simulated) GPU."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba", reason="the ca generator needs numba (pip install 'tumorsyn[ca]')")

from tests.conftest import REPO  # noqa: E402
from tumorsyn.errors import ConfigError  # noqa: E402
from tumorsyn.generators.ca.grow import grow_ca, resolve_device  # noqa: E402
from tumorsyn.generators.ca.hashing import hash4, pick26, uniform01  # noqa: E402
from tumorsyn.generators.ca.model import (BARRIER, HIGH, LOW, MID, OFFSETS, VESSEL, N_CLASSES,  # noqa: E402
                                          probability_table, tissue_classes)

PARAMS = {"invasion": {"low": 0.9, "mid": 0.7, "high": 0.5, "vessel": 0.1, "outside": 0.4}}


def _homogeneous(n=25, cls=MID):
    tissue = np.full((n, n, n), cls, np.int8)
    tissue[[0, -1], :, :] = BARRIER
    tissue[:, [0, -1], :] = BARRIER
    tissue[:, :, [0, -1]] = BARRIER
    return tissue


def test_offsets_are_the_26_neighbours():
    assert OFFSETS.shape == (26, 3)
    assert len({tuple(o) for o in OFFSETS}) == 26
    assert np.abs(OFFSETS).max() == 1 and not (OFFSETS == 0).all(axis=1).any()


@pytest.mark.filterwarnings("ignore:overflow encountered")  # uint64 wrap-around is the hash's arithmetic
def test_picker_is_uniform_over_26_neighbours():
    # Fixed seeds: the counts are a deterministic function of the hash; the bound is a 6-sigma
    # chi-square band, and a picker with 28 outcomes or a missing neighbour fails it by far.
    draws = np.array([pick26(hash4(7, step, index, 0)) for step in range(4) for index in range(6500)])
    counts = np.bincount(draws, minlength=27)
    assert counts[26] == 0 and counts[:26].min() > 0
    expected = draws.size / 26
    chi2 = float(((counts[:26] - expected) ** 2 / expected).sum())
    assert chi2 < 25 + 6 * np.sqrt(2 * 25), chi2


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_uniform_draws_are_uniform_in_unit_interval():
    u = np.array([uniform01(hash4(3, 1, index, 1)) for index in range(20000)], dtype=np.float64)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    assert abs((u < 0.25).mean() - 0.25) < 0.015


def test_reproducible_by_seed():
    tissue, prob = _homogeneous(), probability_table(PARAMS, (1, 1, 1))
    a = grow_ca(tissue, prob, seed=5, seed_voxel=(12, 12, 12), steps=30, device="cpu")
    b = grow_ca(tissue, prob, seed=5, seed_voxel=(12, 12, 12), steps=30, device="cpu")
    c = grow_ca(tissue, prob, seed=6, seed_voxel=(12, 12, 12), steps=30, device="cpu")
    assert np.array_equal(a.pop, b.pop) and (a.pop > 0).sum() > 20
    assert not np.array_equal(a.pop, c.pop)


def test_serial_and_parallel_kernels_agree():
    tissue, prob = _homogeneous(31), probability_table(PARAMS, (0.8, 0.8, 2.0))
    tissue[14:17, :, 8:] = VESSEL
    kw = dict(seed=11, seed_voxel=(10, 15, 15), steps=40, yield_pushes=3, necrosis_step=25, necrosis_age=4,
              necrosis_rate=0.5, save_steps=(20,), device="cpu")
    a = grow_ca(tissue, prob, parallel=False, **kw)
    b = grow_ca(tissue, prob, parallel=True, **kw)
    assert np.array_equal(a.pop, b.pop) and np.array_equal(a.pressure, b.pressure)
    assert np.array_equal(a.snapshots[20], b.snapshots[20])


def test_serial_and_parallel_kernels_have_their_own_cache_entries():
    # Numba's disk cache keys a kernel by qualified name and line, not by compile flags: one name
    # for both builds would make whichever was cached first serve both.
    from tumorsyn.generators.ca import cpu

    assert cpu._grow_numba.targetoptions.get("parallel") is True
    assert not cpu._grow_numba_serial.targetoptions.get("parallel")
    assert cpu._grow_numba.py_func.__qualname__ != cpu._grow_numba_serial.py_func.__qualname__


def test_tissue_probabilities_take_effect():
    # Left half loose (LOW, p=0.9), right half dense (HIGH, p=0.2): the dense side is entered less.
    tissue = _homogeneous(41, LOW)
    tissue[21:-1] = HIGH
    params = {"invasion": {"low": 0.9, "mid": 0.6, "high": 0.2, "vessel": 0.1, "outside": 0.4}}
    loose = dense = 0
    for seed in range(3):
        r = grow_ca(tissue, probability_table(params, (1, 1, 1)), seed=seed, seed_voxel=(20, 20, 20), steps=45,
                    device="cpu")
        loose += int((r.pop[:20] > 0).sum())
        dense += int((r.pop[21:] > 0).sum())
    assert loose > 2 * dense > 0


def test_barriers_hold_and_vessels_deflect():
    prob = probability_table(PARAMS, (1, 1, 1))
    free_tissue = _homogeneous(41)
    tissue = free_tissue.copy()
    tissue[20:23, 1:-1, 1:-1] = VESSEL  # a wall of vessel at x = 20..22, 5 voxels from the seed
    kw = dict(seed=2, seed_voxel=(15, 20, 20), steps=70, device="cpu")
    free = grow_ca(free_tissue, prob, **kw)
    held = grow_ca(tissue, prob, yield_pushes=255, **kw)
    assert (free.pop[20:] > 0).sum() > 100            # without the vessel the tumour goes on
    assert (held.pop[20:] != 0).sum() == 0            # an intact vessel is never crossed
    assert held.pressure[20].sum() > 0                 # but it is pushed on
    # Deflected picks pile the growth up along the wall instead of through it.
    assert (held.pop[17:20] > 0).sum() >= (free.pop[17:20] > 0).sum()
    yielding = grow_ca(tissue, prob, yield_pushes=1, **kw)
    assert (yielding.pop[20:23] != 0).sum() > 0        # a vessel that gives way is invaded
    assert (held.pop[tissue == BARRIER] == 0).all()    # barriers (outside the organ) are never entered


def test_necrosis_only_after_its_step():
    tissue, prob = _homogeneous(41), probability_table(PARAMS, (1, 1, 1))
    kw = dict(seed=4, seed_voxel=(20, 20, 20), necrosis_step=40, necrosis_age=6, necrosis_rate=0.5, device="cpu")
    early = grow_ca(tissue, prob, steps=40, **kw)
    late = grow_ca(tissue, prob, steps=70, **kw)
    assert (early.pop < 0).sum() == 0
    dead = late.pop < 0
    assert dead.sum() > 0
    # The dead voxels are the core: closer to the seed than the living rim on average.
    idx = np.argwhere(dead) - 20
    alive = np.argwhere(late.pop > 0) - 20
    assert np.linalg.norm(idx, axis=1).mean() < np.linalg.norm(alive, axis=1).mean()


def test_bad_inputs_raise_config_errors():
    tissue, prob = _homogeneous(), probability_table(PARAMS, (1, 1, 1))
    with pytest.raises(ConfigError, match="border"):
        grow_ca(tissue, prob, seed=1, seed_voxel=(0, 5, 5), steps=3, device="cpu")
    with pytest.raises(ConfigError, match="capacity"):
        grow_ca(tissue, prob, seed=1, seed_voxel=(5, 5, 5), steps=3, capacity=1, device="cpu")
    with pytest.raises(ConfigError, match="prob"):
        grow_ca(tissue, prob[:3], seed=1, seed_voxel=(5, 5, 5), steps=3, device="cpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")


def test_tissue_classes_are_relative_to_the_organ_statistics():
    rng = np.random.default_rng(0)
    organ = np.ones((20, 20, 20), bool)
    for mean in (60.0, 180.0):  # unenhanced-like and arterial-like organ levels
        ct = (mean + rng.normal(0, 8, organ.shape)).astype(np.float32)
        ct[8:11, 8:11, :] = mean + 150.0
        tissue = tissue_classes(organ, spacing_mm=(1, 1, 1), organ="liver", organ_mean_hu=mean, organ_std_hu=8.0,
                                ct_box=ct, exophytic=False, margin_mm=0.0)
        assert tissue.shape == (22, 22, 22)
        assert (tissue[10, 10, 1:-1] == VESSEL).all()
        assert {LOW, MID, HIGH} <= set(np.unique(tissue).tolist())
    assert probability_table(PARAMS, (1, 1, 1)).shape == (N_CLASSES, 26)


_SIM_SCRIPT = textwrap.dedent("""
    import sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from tests.tumorsyn.test_ca_kernel import small_world
    from tumorsyn.generators.ca.grow import grow_ca
    tissue, prob, kw = small_world()
    r = grow_ca(tissue, prob, device="cuda", **kw)
    assert r.device == "cuda"
    np.savez(sys.argv[1], pop=r.pop, pressure=r.pressure, snap=r.snapshots[3])
""")


def small_world():
    """A 12^3 box with a yielding vessel, fast growth and necrosis: every rule acts in 7 steps."""
    rng = np.random.default_rng(0)
    organ = np.ones((10, 10, 10), bool)
    ct = (100 + rng.normal(0, 10, organ.shape)).astype(np.float32)
    ct[6:8] += 150
    tissue = tissue_classes(organ, spacing_mm=(1, 1, 1.5), organ="liver", organ_mean_hu=100.0, organ_std_hu=10.0,
                            ct_box=ct, exophytic=False, margin_mm=0.0)
    prob = probability_table({"invasion": {"low": 0.95, "mid": 0.85, "high": 0.6, "vessel": 0.5, "outside": 0.4}},
                             (1, 1, 1.5))
    kw = dict(seed=12345, seed_voxel=(5, 6, 6), capacity=2, steps=7, save_steps=(3,), yield_pushes=2,
              necrosis_step=4, necrosis_age=1, necrosis_rate=0.5)
    return tissue, prob, kw


def test_cpu_equals_simulated_cuda(tmp_path):
    tissue, prob, kw = small_world()
    cpu = grow_ca(tissue, prob, device="cpu", **kw)
    assert (cpu.pop > 0).sum() >= 5 and (cpu.pop < 0).sum() >= 1 and cpu.pressure.max() >= 1
    out = tmp_path / "sim.npz"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", _SIM_SCRIPT, str(out), str(REPO)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sim = np.load(out)
    assert np.array_equal(cpu.pop, sim["pop"])
    assert np.array_equal(cpu.pressure, sim["pressure"])
    assert np.array_equal(cpu.snapshots[3], sim["snap"])


def _real_gpu() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


@pytest.mark.skipif(not _real_gpu(), reason="no CUDA GPU on this machine (the simulator test covers the kernel)")
def test_cpu_equals_real_gpu():
    tissue = _homogeneous(61)
    tissue[34:37, 1:-1, 1:-1] = VESSEL
    prob = probability_table(PARAMS, (0.78, 0.78, 1.6))
    kw = dict(seed=99, seed_voxel=(25, 30, 30), steps=90, yield_pushes=4, necrosis_step=50, necrosis_age=5,
              necrosis_rate=0.3, save_steps=(30, 60))
    cpu = grow_ca(tissue, prob, device="cpu", **kw)
    gpu = grow_ca(tissue, prob, device="cuda", **kw)
    assert np.array_equal(cpu.pop, gpu.pop) and np.array_equal(cpu.pressure, gpu.pressure)
    for step in (30, 60):
        assert np.array_equal(cpu.snapshots[step], gpu.snapshots[step])
