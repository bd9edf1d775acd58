"""Calibration check: synthetic tumours in 3D-IRCADb patient 7 against the CALIBRATION half of the real tumours.

What the generators' constants (contrast gain, texture grain, edge table, solidity anchor) were tuned
with: it never reads the TEST half that ``bench_realism.py`` reports on. Per generator it prints the
in-IQR count, the mean in-range share, the AI reader's AUC and, per descriptor, the synthetic median
against the real median and IQR and that descriptor's own AUC (Mann-Whitney; 0.5 = no cue), flagging
the descriptors outside the IQR::

    python benchmarks/calibrate_realism.py --generators rules,ca --n 24

Needs ``../shared/data/real`` (3D-IRCADb patient 7, LiTS-117). Nothing asserts.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import bench_realism as bench  # this folder


def calibration_figures(generator: str, size_class: str, n: int, seed: int, real: list[dict], host, *,
                        lits_grid: bool = False, pool=None) -> dict:
    """Figures of ``n`` tumours of one generator in ``host``; sizes drawn from ``pool`` (mm) when given,
    the same targets for every generator (``bench_realism.target_diameters``), else uniform in the class."""
    rows = []
    ci = list(bench.CLASSES).index(size_class)
    lo_hi = bench.CLASSES[size_class]
    targets = bench.target_diameters(pool, lo_hi, n, bench._rng(seed, bench.SIZE_STREAM, 0, ci))
    for i, diameter in enumerate(targets):
        rng = bench._rng(seed, bench.GENERATORS.index(generator), 0, ci, i)
        if generator == "baseline":
            ct, tumour = bench.synth_baseline(host, lo_hi, rng, diameter=diameter)
        else:
            ct, tumour = bench.synth_ours(host, generator, bench.size_range(lo_hi, diameter), rng)
        native, matched = bench.describe(host, ct, tumour)
        row = matched if lits_grid else native
        if row is not None and bench.class_of(row["equivalent_diameter_mm"]) == size_class:
            rows.append({**row, "organ": "liver", "size_class": size_class, "described": True})
    return bench.figures([r for r in real if r["size_class"] == size_class], rows, "liver", size_class, seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", default="rules,ca", help="comma-separated subset of rules,ca,baseline")
    parser.add_argument("--size-class", choices=list(bench.CLASSES), default="early")
    parser.add_argument("--n", type=int, default=24, help="tumours per generator (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", choices=bench.SIZE_MODES, default="real",
                        help="real (default): sizes of the calibration half's real tumours; uniform: uniform in the class")
    parser.add_argument("--lits-grid", action="store_true",
                        help="describe each tumour on p7 block-averaged to LiTS-117's grid (matched voxel size)")
    args = parser.parse_args(argv)
    hosts, notes = bench.load_hosts()
    host = next((h for h in hosts if h.key == "ircad7"), None)
    if host is None:
        bench.say("; ".join(notes) or "3D-IRCADb patient 7 is missing")
        return 1
    # On the matched grid only LiTS-117 is on that grid (3D-IRCADb's calibration shapes are finer).
    real = bench.real_rows("liver", "calibration", sources=("lits117",) if args.lits_grid else None, workers=1)
    # The sizes of the real tumours compared with (on the matched grid: LiTS-117's).
    pool = np.array([r["equivalent_diameter_mm"] for r in real if r["size_class"] == args.size_class]) \
        if args.sizes == "real" else None
    for generator in args.generators.split(","):
        start = time.perf_counter()
        fig = calibration_figures(generator, args.size_class, args.n, args.seed, real, host, lits_grid=args.lits_grid,
                                  pool=pool)
        grid = "LiTS-117 grid" if args.lits_grid else "native grid"
        bench.say(f"== {generator} {args.size_class} ({grid}, calibration half, {fig['n_syn']} synthetic vs {fig['n_real']} "
                  f"real): in IQR {fig['in_iqr']}/{fig['of']}, in-range {fig['in_range']:.3f}, AUC {fig['auc']:.3f}, "
                  f"top cues {', '.join(fig.get('top') or [])} ({time.perf_counter() - start:.0f} s)")
        for name, d in fig["descriptors"].items():
            lo, hi = d["real_iqr"]
            flag = "" if lo <= d["synthetic_median"] <= hi else "   <-- outside the real IQR"
            bench.say(f"  {name:<28} synthetic {d['synthetic_median']:8.3f}   real {d['real_median']:8.3f} "
                      f"[{lo:7.3f}, {hi:7.3f}]   in range {d['in_real_range']:.2f}   alone AUC {d['auc_single']:.2f}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
