"""Real-vs-synthetic experiment: train each arm, predict held-out real-tumour scans, evaluate, compare, report.

``experiment.arms`` maps a name to either ``{overrides: {...}}`` (config keys changed for that arm,
e.g. ``{synthesis: {enabled: false}}`` for real-only) or ``{baseline: organ_only}`` (the organ mask
itself as the "tumour" prediction: every lesion is found, Dice is the tumour's share of the organ —
the floor any detector must beat on Dice and false positives). An arm with ``train.epochs: 0`` is
the untrained network. The first arm is the reference of every comparison.

Output folder (``output_dir``)::

    reference/<id>.nii.gz   organ/<id>.nii.gz      the test scans' tumour and organ masks (input grid)
    arms/<arm>/run/         the training run       arms/<arm>/pred/   predictions
    arms/<arm>/report/      ``tumorsyn evaluate`` report (report.md, report.json, lesions.csv, plots)
    compare/<a>_vs_<b>/     ``tumorsyn evaluate --compare`` output
    report.md, report.json  one table per size bin for all arms

Test scans (e.g. 3D-IRCADb) are only read; everything derived from them goes into ``output_dir``:
keep it outside the repository when their licence forbids redistribution.
"""
from __future__ import annotations

import copy
import csv
import json
import sys
import time
from pathlib import Path

from tumorsyn.errors import ConfigError

from segment.config import merge_overrides, validate_config
from segment.data import read_case_masks, source_cases

__all__ = ["run_experiment", "arm_config"]


def arm_config(config: dict, name: str, arm: dict) -> dict:
    """The full config of one arm: the experiment's config with the arm's overrides, its own run folder."""
    overrides = copy.deepcopy((arm or {}).get("overrides") or {})
    merged = merge_overrides(config, overrides, "", f"experiment.arms.{name}.overrides")
    merged["output_dir"] = str(Path(config["output_dir"]) / "arms" / name / "run")
    merged["experiment"] = copy.deepcopy(config["experiment"])
    merged["experiment"]["arms"] = {}
    return validate_config(merged, path=f"experiment.arms.{name}", check_files=False)


def _write_pred_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "path"])
        writer.writerows(rows)
    return path


def _pct(row: dict) -> str:
    if row.get("value") is None:
        return "n/a"
    lo, hi = row.get("ci95") or (None, None)
    ci = f" [{100 * lo:.0f}–{100 * hi:.0f}]" if lo is not None else ""
    return f"{100 * row['value']:.1f} % ({row['k']}/{row['n']}){ci}"


def _table(reports: dict[str, dict]) -> str:
    bins = None
    lines = []
    for name, report in reports.items():
        s = report["summary"]
        ls = s["lesion_sensitivity"]
        if bins is None:
            bins = [row["bin"] for row in ls["by_size"]]
            lines.append("| arm | " + " | ".join(f"sensitivity {b}" for b in bins) +
                         " | sensitivity < 20 mm | sensitivity all | FP / scan | mean Dice | global Dice |")
            lines.append("|" + "---|" * (len(bins) + 6))
        seg = s["segmentation"]
        dice = seg["dice_per_case"]["mean"]
        glob = seg.get("global_dice")
        lines.append(f"| {name} | " + " | ".join(_pct(r) for r in ls["by_size"]) + f" | {_pct(ls['early_lt_20mm'])} | {_pct(ls['overall'])} | "
                     f"{s['false_positives']['per_scan']:.2f} | {'n/a' if dice is None else f'{dice:.3f}'} | "
                     f"{'n/a' if not isinstance(glob, (int, float)) else f'{glob:.3f}'} |")
    return "\n".join(lines)


def run_experiment(config: dict, *, quiet: bool = False, workers: int = 1) -> Path:
    """Train every arm, predict the test scans, evaluate and compare; return the output folder."""
    from tumorsyn import metrics
    from tumorsyn.io.writers import write_mask_like

    from segment.predict import output_names, predict_files
    from segment.train import train, versions

    if config["experiment"]["folds"]["kind"]:
        from segment.fold_experiment import run_fold_experiment

        return run_fold_experiment(config, quiet=quiet, workers=workers)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    out = Path(config["output_dir"])
    cases = source_cases(config["experiment"]["test"], "experiment.test")
    if not cases:
        raise ConfigError("experiment.test holds no cases: give held-out real-tumour scans (dataset or cases)")
    arms = config["experiment"]["arms"] or {"model": {}}
    arm_configs = {name: None if (arm or {}).get("baseline") else arm_config(config, name, arm)
                   for name, arm in arms.items()}
    started = time.perf_counter()

    # Reference and organ masks of the test scans, on each scan's own grid.
    ref_dir, organ_dir = out / "reference", out / "organ"
    ref_dir.mkdir(parents=True, exist_ok=True)
    organ_dir.mkdir(parents=True, exist_ok=True)
    for case in cases:
        scan, organ, tumor = read_case_masks(case, config["organ"])
        write_mask_like(ref_dir / f"{case.case_id}.nii.gz", scan, tumor)
        write_mask_like(organ_dir / f"{case.case_id}.nii.gz", scan, organ)

    reports: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for name, arm in arms.items():
        t0 = time.perf_counter()
        arm_dir = out / "arms" / name
        pred_dir = arm_dir / "pred"
        if (arm or {}).get("baseline") == "organ_only":
            from tumorsyn.io import load_labels

            pred_dir.mkdir(parents=True, exist_ok=True)
            for case in cases:
                organ_scan = load_labels(organ_dir / f"{case.case_id}.nii.gz")
                write_mask_like(pred_dir / output_names(case.case_id)["tumor"], organ_scan,
                                organ_scan.to_canonical(organ_scan.raw) != 0)
        else:
            log(f"[{name}] training")
            run_dir = train(arm_configs[name], quiet=quiet)
            log(f"[{name}] predicting {len(cases)} test scan(s)")
            predict_files(run_dir, [c.ct for c in cases], pred_dir,
                          organ_masks=[organ_dir / f"{c.case_id}.nii.gz" for c in cases],
                          case_ids=[c.case_id for c in cases], quiet=quiet, device="auto")
        pred_csv = _write_pred_csv(arm_dir / "predictions.csv",
                                   [(c.case_id, str(pred_dir / output_names(c.case_id)["tumor"])) for c in cases])
        pairs = metrics.pair_cases(ref_dir, pred_csv, organ_dir)
        match = config["experiment"]["match"]
        results = metrics.evaluate_dataset(pairs, workers=workers, match=match)
        report = metrics.build_report(
            results, summary=metrics.summarize(results),
            conventions=metrics.conventions(match=match, organ_restricted=True),
            versions=metrics.versions(), sources={"pred": str(pred_csv), "ref": str(ref_dir), "organ_mask": str(organ_dir)},
            command=f"tumorsyn segment experiment (arm {name})")
        metrics.write_report(arm_dir / "report", report)
        reports[name] = metrics.load_report(arm_dir / "report")
        timings[name] = time.perf_counter() - t0
        log(f"[{name}] done in {timings[name]:.0f} s")

    names = list(reports)
    comparisons = {}
    for other in names[1:]:
        comparison = metrics.compare_reports(reports[names[0]], reports[other], names=[names[0], other])
        folder = out / "compare" / f"{names[0]}_vs_{other}"
        metrics.write_comparison(folder, comparison)
        comparisons[other] = {"folder": str(folder), "text": metrics.render_comparison(comparison)}

    table = _table(reports)
    text = [f"# Segmentation experiment: {len(names)} arm(s), {len(cases)} held-out real-tumour scan(s)", "",
            f"Organ: {config['organ']}. Detection: per-lesion, match `{config['experiment']['match']}`, lesions and "
            "predictions restricted to the organ mask; sizes = maximum 3D diameter (ANCHORS.md conventions). "
            "Intervals: Wilson 95 %.", "", table, ""]
    for name, arm in arms.items():
        if (arm or {}).get("baseline"):
            kind = "baseline: the organ mask as tumour prediction"
        else:
            c = arm_configs[name]
            kind = (f"{c['network']['name']}, {c['train']['epochs'] * c['train']['steps_per_epoch']} steps, synthesis "
                    f"{'on (' + c['synthesis']['method'] + ', p=' + str(c['synthesis']['prob']) + ')' if c['synthesis']['enabled'] else 'off'}, "
                    f"real weight {c['data']['real']['weight']}, healthy weight {c['data']['healthy']['weight']}")
        text.append(f"- **{name}** ({timings[name]:.0f} s): {kind}; report `arms/{name}/report/report.md`")
    for other, comp in comparisons.items():
        text += ["", f"## {names[0]} vs {other}", "", "```", comp["text"], "```"]
    text += ["", f"Total time {time.perf_counter() - started:.0f} s. Versions: `versions.json`."]
    (out / "report.md").write_text("\n".join(text) + "\n")
    (out / "versions.json").write_text(json.dumps(versions(), indent=2))
    (out / "report.json").write_text(json.dumps({
        "arms": {n: {"summary": r["summary"], "config": arm_configs[n], "seconds": timings[n]} for n, r in reports.items()},
        "comparisons": {o: c["folder"] for o, c in comparisons.items()}}, indent=2, default=str))
    return out
