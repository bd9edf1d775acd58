"""Issue 16's three figures in the bundled example, side by side: diffusion, the SyntheticTumors recipe, rules, CA.

Each generator writes ``--n`` early tumours (5-20 mm) into the bundled example's liver, pancreas and
kidney (3 mm, non-contrast), one tumour per call on the unchanged scan, and each is described with
the realism descriptors on the example's own grid. The figures of ``train-diffusion --evaluate``
(contrast and internal spread in host-noise units, edge sharpness) are compared with the held-out real
tumours of the diffusion recipe's config (LiTS-117's held-out slab), averaged onto the example's 3 mm
voxels where enough of them remain (else on their own grid): the generated median inside the real
IQR is "in". The diffusion model, rules and CA write through ``train_diffusion.host_check.check_hosts``
(the path of ``tumorsyn generate``, tumour ``i`` from seed ``[seed, 0, i]``); the SyntheticTumors
recipe through ``bench_realism.synth_baseline``.

Several ``--seeds`` show how much the verdict moves from one draw of ``--n`` tumours to the next; the
pooled line joins them. Last, the pooled liver tumours are compared on every descriptor of ``tumorsyn
realism`` with the same real tumours (in IQR, in-range share, AI-reader AUC: ``bench_realism.figures``):
issue 14's ruler, on the only real tumours the diffusion recipe never trained on. Setup (reading the
reference) is untimed; nothing asserts.

    python benchmarks/bench_example_figures.py --model RUN/model [--n 24] [--seeds 0,1,2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from train_diffusion.config import load_config
from train_diffusion.data import HeldoutReference
from train_diffusion.figures import FIGURES
from train_diffusion.host_check import check_hosts, measure_written, organ_figures

import bench_realism  # noqa: E402  (this folder)
from benchkit import cpu_model, loadavg, say  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "configs" / "diffusion" / "liver_early_lits_cpu.yaml"
ORGANS = ("liver", "pancreas", "kidney")
GENERATORS = ("diffusion", "baseline", "rules", "ca")
SIZE_MM = (5.0, 20.0)


def _baseline_rows(organ: str, n: int, seed: int) -> tuple[list[dict], tuple]:
    """The SyntheticTumors recipe's ``n`` tumours in the example's ``organ`` (bench_realism's host and adaptation)."""
    hosts, _ = bench_realism.load_hosts()
    host = next(h for h in hosts if h.key == "example" and h.organ == organ)
    rng = np.random.default_rng([seed, 7, ORGANS.index(organ)])
    rows = []
    for i in range(n):
        ct_out, tumour = bench_realism.synth_baseline(host, SIZE_MM, rng)
        rows.append(measure_written(ct_out, tumour, host.mask, host.spacing_mm, seed=i, size_mm=float("nan"),
                                    every_descriptor=True))
    return rows, tuple(host.spacing_mm)


def run_generator(name: str, *, model: str | None, n: int, seed: int, reference: HeldoutReference) -> dict:
    """Per organ: the tumours' rows and figures (``organ_figures``) of one generator and seed."""
    if name == "baseline":
        out = {}
        for organ in ORGANS:
            rows, spacing = _baseline_rows(organ, n, seed)
            out[organ] = {"tumours": rows, **organ_figures(rows, spacing, reference.native, reference)}
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the host check records warnings itself
        result = check_hosts(model if name == "diffusion" else None, ["example"], ORGANS, tumours=n, size_mm=SIZE_MM,
                             seed=seed, device="cpu", reference=reference.native, reference_on_grid=reference,
                             method=name, every_descriptor=True)
    return {e["organ"]: {k: e[k] for k in ("tumours", "figures", "warnings", "invisible")} for e in result["hosts"]}


def _cell(figures: dict) -> str:
    parts, inside = [], 0
    for name in FIGURES:
        f = figures.get(name) or {}
        if f.get("inside_real_iqr") is None:
            parts.append("n/a")
            continue
        inside += bool(f["inside_real_iqr"])
        parts.append(f"{f['generated_median']:.2f} {'in' if f['inside_real_iqr'] else 'out'}")
    return " / ".join(parts), inside


def print_table(title: str, results: dict[str, dict]) -> None:
    say(f"\n{title}")
    say("| generator | " + " | ".join(f"{o}: contrast / spread / edge" for o in ORGANS) + " | in (of 9) |")
    say("|---|" + "---|" * (len(ORGANS) + 1))
    for name, per_organ in results.items():
        cells, total = [], 0
        for organ in ORGANS:
            text, inside = _cell(per_organ[organ]["figures"])
            cells.append(text)
            total += inside
        say(f"| {name} | " + " | ".join(cells) + f" | {total} |")


def descriptor_table(reference: HeldoutReference, pooled_rows: dict, spacing, seed: int) -> dict:
    """Every realism descriptor of the pooled liver tumours against the held-out real ones on the example's grid:
    descriptors in the real IQR, the in-range share and the AI reader's AUC (``bench_realism.figures``)."""
    def tagged(rows, has_ct=True):
        out = []
        for row in rows:
            cls = bench_realism.class_of(row["equivalent_diameter_mm"]) if np.isfinite(row["equivalent_diameter_mm"]) \
                else None
            if cls == "early":
                out.append({**row, "organ": "liver", "size_class": cls, "has_ct": has_ct})
        return out

    real = tagged(reference.rows_on_grid(spacing))
    say(f"\nliver, every descriptor of tumorsyn realism against the {len(real)} held-out real tumours of 5-20 mm "
        "on the example's grid (pooled)")
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
    everything: dict = {"n": args.n, "seeds": seeds, "size_mm": list(SIZE_MM), "model": args.model, "runs": {}}
    pooled_rows: dict = {g: {o: [] for o in ORGANS} for g in generators}
    for seed in seeds:
        results = {}
        for name in generators:
            started = time.perf_counter()
            results[name] = run_generator(name, model=args.model, n=args.n, seed=seed, reference=reference)
            say(f"{name}, seed {seed}: {time.perf_counter() - started:.0f} s")
            for organ in ORGANS:
                pooled_rows[name][organ] += results[name][organ]["tumours"]
        everything["runs"][str(seed)] = results
        print_table(f"seed {seed}: {args.n} tumours of 5-20 mm per organ (generated median, in/out of the real IQR)",
                    results)
    from tumorsyn.io import load_scan

    spacing = tuple(load_scan(REPO / "tumorsyn" / "data" / "example_ct.nii.gz").spacing_mm)
    if len(seeds) > 1:
        pooled = {g: {o: {"figures": organ_figures(rows, spacing, reference.native, reference)["figures"]}
                      for o, rows in per.items()} for g, per in pooled_rows.items()}
        everything["pooled"] = pooled
        print_table(f"pooled over seeds {', '.join(map(str, seeds))} ({args.n * len(seeds)} tumours per cell)", pooled)
    everything["descriptors_liver"] = descriptor_table(reference, pooled_rows, spacing, seeds[0])
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1, default=float))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
