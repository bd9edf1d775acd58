"""Issue 16's three figures in the bundled example, side by side: diffusion, the SyntheticTumors recipe, rules, CA.

Each generator writes ``--n`` early tumours (< 20 mm) into the bundled example's liver, pancreas and
kidney (3 mm, non-contrast), one tumour per call on the unchanged scan, and each is described with
the realism descriptors on the example's own grid. The figures of ``train-diffusion --evaluate``
(contrast and internal spread in host-noise units, edge sharpness) are compared with the held-out real
tumours of the diffusion recipe's config (LiTS-117's held-out slab), averaged onto the example's 3 mm
voxels where enough of them remain (else on their own grid): the generated median inside the real
IQR is "in". The diffusion model, rules and CA write through ``train_diffusion.host_check.check_hosts``
(the path of ``tumorsyn generate``, tumour ``i`` from seed ``[seed, 0, i]``); the SyntheticTumors
recipe through ``bench_realism.synth_baseline``.

With ``--heldout-host`` the same generators also write ``--n`` liver tumours into the held-out region of
the config's held-out scans (LiTS-117's slab z 87-127: portal-venous, 1.36 x 1.36 x 1.6 mm), on that
scan's own grid, and are compared there with the real tumours of that same region on the same grid
(issue 14's ruler too). This is the path of ``tumorsyn generate`` in the contrast phase and on the grid
the diffusion recipe learnt from, in voxels it never trained on; ``--evaluate`` instead inpaints the real
tumours' own sites on the model's grid.

Sizes (``--sizes``). ``real`` (the default): tumour ``i`` of every generator and organ is asked for the same
target diameter (+-5 %), a real early liver tumour's equivalent diameter drawn from the CALIBRATION half of
``bench_realism.py`` (LiTS-117's slab below the split and 3D-IRCADb patients 2-10: none of the held-out slab's
tumours) times exp(N(0, 0.05)): the real tumours compared with are small (most of LiTS-117's under 10 mm), and at 3 mm
a tumour's size decides how much of its contrast and edge partial volume keeps. Liver sizes for every organ,
as the reference is liver tumours. ``uniform``: uniform in 5-20 mm, drawn by each generator (the figures
before 2026-12-03).

Several ``--seeds`` show how much the verdict moves from one draw of ``--n`` tumours to the next; the
pooled line joins them. Last, the pooled liver tumours are compared on every descriptor of ``tumorsyn
realism`` with the same real tumours (in IQR, in-range share, AI-reader AUC: ``bench_realism.figures``):
issue 14's ruler, on the only real tumours the diffusion recipe never trained on. Setup (reading the
reference) is untimed; nothing asserts.

    python benchmarks/bench_example_figures.py --model RUN/model [--n 24] [--seeds 0,1,2] [--heldout-host]
        [--sizes real|uniform] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from train_diffusion.config import load_config
from train_diffusion.data import HeldoutReference, heldout_scans, holdout_native_rows
from train_diffusion.figures import FIGURES
from train_diffusion.host_check import check_hosts, measure_written, organ_figures

import bench_realism  # noqa: E402  (this folder)
from benchkit import cpu_model, loadavg, say  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "diffusion" / "liver_early_lits_cpu.yaml"
ORGANS = ("liver", "pancreas", "kidney")
GENERATORS = ("diffusion", "baseline", "rules", "ca")
SIZE_MM = (5.0, 20.0)
SIZES = ("real", "uniform")


def early_liver_pool(workers: int = 1) -> np.ndarray | None:
    """Equivalent diameters (mm) of the calibration half's real early liver tumours; None without the real data."""
    return bench_realism.size_pools(bench_realism.present_sources(), workers).get(("liver", "early"))


def size_targets(pool: np.ndarray | None, n: int, seed: int) -> list[float | None]:
    """Tumour ``i``'s target diameter (mm) for seed ``seed``, the same for every generator and organ (``None``:
    uniform in :data:`SIZE_MM`, drawn by the generator)."""
    return bench_realism.target_diameters(pool, SIZE_MM, n, np.random.default_rng([seed, bench_realism.SIZE_STREAM]))


def _ranges(targets: list[float | None]) -> list[tuple[float, float]]:
    return [bench_realism.size_range(SIZE_MM, d) for d in targets]


def _baseline_rows(organ: str, targets: list[float | None], seed: int) -> tuple[list[dict], tuple]:
    """The SyntheticTumors recipe's tumours in the example's ``organ``, one per target diameter (bench_realism's host
    and adaptation)."""
    hosts, _ = bench_realism.load_hosts()
    host = next(h for h in hosts if h.key == "example" and h.organ == organ)
    rng = np.random.default_rng([seed, 7, ORGANS.index(organ)])
    rows = []
    for i, diameter in enumerate(targets):
        ct_out, tumour = bench_realism.synth_baseline(host, SIZE_MM, rng, diameter=diameter)
        rows.append(measure_written(ct_out, tumour, host.mask, host.spacing_mm, seed=i, size_mm=float("nan"),
                                    every_descriptor=True))
    return rows, tuple(host.spacing_mm)


def run_generator(name: str, *, model: str | None, n: int, seed: int, reference: HeldoutReference,
                  targets: list[float | None] | None = None) -> dict:
    """Per organ: the tumours' rows and figures (``organ_figures``) of one generator and seed; ``targets``: tumour
    ``i``'s diameter (mm; None or absent: uniform in :data:`SIZE_MM`)."""
    targets = list(targets) if targets is not None else [None] * n
    if name == "baseline":
        out = {}
        for organ in ORGANS:
            rows, spacing = _baseline_rows(organ, targets[:n], seed)
            out[organ] = {"tumours": rows, **organ_figures(rows, spacing, reference.native, reference)}
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the host check records warnings itself
        result = check_hosts(model if name == "diffusion" else None, ["example"], ORGANS, tumours=n, size_mm=SIZE_MM,
                             seed=seed, device="cpu", reference=reference.native, reference_on_grid=reference,
                             method=name, every_descriptor=True, sizes_mm=_ranges(targets))
    return {e["organ"]: {k: e[k] for k in ("tumours", "figures", "warnings", "invisible")} for e in result["hosts"]}


class HeldoutHost:
    """The held-out region of the config's first held-out scan as a host: NIfTI files for ``check_hosts`` (in a
    temporary folder: the data's licence keeps them off the repository) and a ``bench_realism.Host`` for the
    SyntheticTumors recipe."""

    def __init__(self, config: dict, folder: Path) -> None:
        import nibabel as nib

        scan = heldout_scans(config)[0]
        self.case_id, self.spacing_mm, self.organ = scan["case_id"], scan["spacing_mm"], scan["organ_name"]
        affine = np.diag([*self.spacing_mm, 1.0])
        labels = np.where(scan["tumour"], 2, np.where(scan["organ"], 1, 0)).astype(np.uint8)  # decathlon: 1 organ, 2 tumour
        nib.save(nib.Nifti1Image(np.round(scan["hu"]).astype(np.int16), affine), folder / "heldout_ct.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), folder / "heldout_labels.nii.gz")
        self.entry = {"ct": str(folder / "heldout_ct.nii.gz"), "labels": str(folder / "heldout_labels.nii.gz"),
                      "label_preset": "decathlon"}
        self.host = bench_realism._host("heldout", self.case_id, self.organ, scan["hu"], scan["organ"], self.spacing_mm)


def run_heldout_host(name: str, *, model: str | None, n: int, seed: int, host: HeldoutHost, reference: list[dict],
                     targets: list[float | None] | None = None) -> dict:
    """One generator's ``n`` tumours in the held-out host (rows and figures against its real tumours, same grid)."""
    targets = list(targets) if targets is not None else [None] * n
    if name == "baseline":
        rng = np.random.default_rng([seed, 8])
        rows = []
        for i, diameter in enumerate(targets[:n]):
            ct_out, tumour = bench_realism.synth_baseline(host.host, SIZE_MM, rng, diameter=diameter)
            rows.append(measure_written(ct_out, tumour, host.host.mask, host.spacing_mm, seed=i, size_mm=float("nan"),
                                        every_descriptor=True))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = check_hosts(model if name == "diffusion" else None, [host.entry], [host.organ], tumours=n,
                                 size_mm=SIZE_MM, seed=seed, device="cpu", method=name, every_descriptor=True,
                                 sizes_mm=_ranges(targets))
        rows = result["hosts"][0]["tumours"]
    return {"tumours": rows, **organ_figures(rows, host.spacing_mm, reference)}


def _sizes_text(mode: str) -> str:
    return "at real early liver tumours' sizes" if mode == "real" else "of 5-20 mm"


def print_host_table(title: str, results: dict[str, dict]) -> None:
    say(f"\n{title}")
    say("| generator | liver: contrast / spread / edge (all 3 inside, % of bootstrap resamples) | in (of 3) |")
    say("|---|---|---|")
    for name, entry in results.items():
        text, inside = _cell(entry["figures"])
        say(f"| {name} | {text} | {inside} |")


def _cell(figures: dict) -> str:
    parts, inside = [], 0
    for name in FIGURES:
        f = figures.get(name) or {}
        if f.get("inside_real_iqr") is None:
            parts.append("n/a")
            continue
        inside += bool(f["inside_real_iqr"])
        parts.append(f"{f['generated_median']:.2f} {'in' if f['inside_real_iqr'] else 'out'}")
    share = figures.get("working_share")
    # How firm the verdict is: the share of bootstrap resamples with all three inside (train_diffusion.figures).
    return " / ".join(parts) + (f" ({100 * share:.0f} %)" if share is not None else ""), inside


def print_table(title: str, results: dict[str, dict]) -> None:
    say(f"\n{title}")
    say("| generator | " + " | ".join(f"{o}: contrast / spread / edge (all 3 in, %)" for o in ORGANS) + " | in (of 9) |")
    say("|---|" + "---|" * (len(ORGANS) + 1))
    for name, per_organ in results.items():
        cells, total = [], 0
        for organ in ORGANS:
            text, inside = _cell(per_organ[organ]["figures"])
            cells.append(text)
            total += inside
        say(f"| {name} | " + " | ".join(cells) + f" | {total} |")


def descriptor_table(real_rows: list[dict], pooled_rows: dict, seed: int, where: str = "the example's grid") -> dict:
    """Every realism descriptor of the pooled liver tumours against held-out real ones (``real_rows``, read on the
    hosts' grid): descriptors in the real IQR, the in-range share and the AI reader's AUC (``bench_realism.figures``)."""
    def tagged(rows, has_ct=True):
        out = []
        for row in rows:
            cls = bench_realism.class_of(row["equivalent_diameter_mm"]) if np.isfinite(row["equivalent_diameter_mm"]) \
                else None
            if cls == "early":
                out.append({**row, "organ": "liver", "size_class": cls, "has_ct": has_ct})
        return out

    real = tagged(real_rows)
    say(f"\nliver, every descriptor of tumorsyn realism against the {len(real)} held-out real early tumours "
        f"on {where} (pooled)")
    say("| generator | in IQR | in-range | AI-reader AUC [CI] | outside the IQR |")
    say("|---|---|---|---|---|")
    out = {}
    for name, per_organ in pooled_rows.items():
        fig = bench_realism.figures(real, tagged(per_organ["liver"]), "liver", "early", seed)
        out[name] = fig
        auc = "n/a" if fig["auc"] is None else f"{fig['auc']:.2f} [{fig['ci95'][0]:.2f}-{fig['ci95'][1]:.2f}]"
        in_range = "n/a" if fig["in_range"] is None else f"{fig['in_range']:.2f}"
        say(f"| {name} | {fig['in_iqr']}/{fig['of']} | {in_range} | {auc} | {', '.join(fig['outside_iqr'])} |")
    return out


def heldout_host_runs(config: dict, generators: list[str], args, seeds: list[int],
                      targets: dict[int, list[float | None]]) -> dict:
    """Every generator's liver tumours in the held-out host, per seed and pooled, and issue 14's ruler there
    (``targets``: per seed, tumour ``i``'s diameter, as in the example)."""
    real = holdout_native_rows(config)
    out: dict = {"runs": {}}
    pooled: dict = {g: [] for g in generators}
    with tempfile.TemporaryDirectory(prefix="tumorsyn_heldout_") as folder:
        host = HeldoutHost(config, Path(folder))
        say(f"\nheld-out host: {host.case_id}'s held-out region, {host.organ}, "
            f"{' x '.join(f'{s:g}' for s in host.spacing_mm)} mm; {len(real)} real tumours there")
        out["host"] = {"case": host.case_id, "spacing_mm": list(host.spacing_mm)}
        for seed in seeds:
            results = {}
            for name in generators:
                started = time.perf_counter()
                results[name] = run_heldout_host(name, model=args.model, n=args.n, seed=seed, host=host, reference=real,
                                                 targets=targets[seed])
                say(f"{name}, held-out host, seed {seed}: {time.perf_counter() - started:.0f} s")
                pooled[name] += results[name]["tumours"]
            out["runs"][str(seed)] = results
            print_host_table(f"held-out host, seed {seed}: {args.n} liver tumours {_sizes_text(args.sizes)} "
                             "(generated median, in/out "
                             "of the real IQR on the same grid)", results)
    if len(seeds) > 1:
        out["pooled"] = {g: {"figures": organ_figures(rows, host.spacing_mm, real)["figures"]} for g, rows in pooled.items()}
        print_host_table(f"held-out host, pooled over seeds {', '.join(map(str, seeds))}", out["pooled"])
    out["descriptors_liver"] = descriptor_table(real, {g: {"liver": rows} for g, rows in pooled.items()}, seeds[0],
                                                where="the held-out scan's own grid")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a diffusion model folder (train-diffusion's RUN/model); without it, no "
                                        "diffusion row")
    parser.add_argument("--config", default=str(RECIPE), help="the training config whose held-out tumours are the "
                                                              "reference (default: the CPU recipe)")
    parser.add_argument("--generators", default=",".join(GENERATORS), help="comma-separated, of "
                                                                           f"{', '.join(GENERATORS)}")
    parser.add_argument("--n", type=int, default=24, help="tumours per generator, organ and seed (default 24)")
    parser.add_argument("--seeds", default="0", help="comma-separated master seeds (default 0)")
    parser.add_argument("--heldout-host", action="store_true", help="also write liver tumours into the held-out region "
                                                                     "of the config's held-out scan, on its own grid")
    parser.add_argument("--sizes", choices=SIZES, default="real",
                        help="real (default): every generator and organ at the same target diameters, drawn from the "
                             "calibration half's real early liver tumours; uniform: uniform in 5-20 mm")
    parser.add_argument("--workers", type=int, default=1, help="processes describing the real tumours whose sizes "
                                                                "are drawn (default 1)")
    parser.add_argument("--json", help="write every row and figure here")
    args = parser.parse_args(argv)
    generators = [g for g in args.generators.split(",") if g]
    unknown = sorted(set(generators) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    if "diffusion" in generators and not args.model:
        generators.remove("diffusion")
        say("no --model: the diffusion row is skipped")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    say(f"# issue 16's figures in the bundled example — {cpu_model()}, load {loadavg()}")
    config = load_config(args.config)
    reference = HeldoutReference(config)
    say(f"reference: {len(reference.native)} held-out real tumours of {args.config}")
    pool = early_liver_pool(args.workers) if args.sizes == "real" else None
    if args.sizes == "real" and pool is None:
        say("sizes: no real calibration tumours to draw from (real data absent): uniform in 5-20 mm")
    elif pool is not None:
        say(f"sizes: drawn from {pool.size} real early liver tumours of the calibration half, median "
            f"{np.median(pool):.1f} mm, the same targets for every generator and organ")
    args.sizes = "real" if pool is not None else "uniform"  # what was drawn
    targets = {seed: size_targets(pool, args.n, seed) for seed in seeds}
    everything: dict = {"n": args.n, "seeds": seeds, "size_mm": list(SIZE_MM), "model": args.model, "sizes": args.sizes,
                        "targets_mm": {str(seed): t for seed, t in targets.items()}, "runs": {}}
    pooled_rows: dict = {g: {o: [] for o in ORGANS} for g in generators}
    for seed in seeds:
        results = {}
        for name in generators:
            started = time.perf_counter()
            results[name] = run_generator(name, model=args.model, n=args.n, seed=seed, reference=reference,
                                          targets=targets[seed])
            say(f"{name}, seed {seed}: {time.perf_counter() - started:.0f} s")
            for organ in ORGANS:
                pooled_rows[name][organ] += results[name][organ]["tumours"]
        everything["runs"][str(seed)] = results
        print_table(f"seed {seed}: {args.n} tumours per organ, {_sizes_text(args.sizes)} (generated median, in/out of "
                    "the real IQR)",
                    results)
    from tumorsyn.io import load_scan

    spacing = tuple(load_scan(REPO / "tumorsyn" / "data" / "example_ct.nii.gz").spacing_mm)
    if len(seeds) > 1:
        pooled = {g: {o: {"figures": organ_figures(rows, spacing, reference.native, reference)["figures"]}
                      for o, rows in per.items()} for g, per in pooled_rows.items()}
        everything["pooled"] = pooled
        print_table(f"pooled over seeds {', '.join(map(str, seeds))} ({args.n * len(seeds)} tumours per cell)", pooled)
    everything["descriptors_liver"] = descriptor_table(reference.rows_on_grid(spacing), pooled_rows, seeds[0])
    if args.heldout_host:
        everything["heldout_host"] = heldout_host_runs(config, generators, args, seeds, targets)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1, default=float))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
