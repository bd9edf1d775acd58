"""The pre-registered real-vs-synthetic experiment over folds of real tumours, every arm with several seeds.

Used by ``tumorsyn segment experiment`` when ``experiment.folds.kind`` is set (docs/experiment.md).
For each arm and seed: an arm that trains on real data (``data.real.weight > 0`` and at least one
step) trains once per fold on that fold's training cases (:mod:`segment.folds`) and predicts the
fold's test scans; an arm that sees no real data (synthetic-only, the untrained network) trains once
per seed and its predictions are scored on every fold — the same as training it per fold with one
seed. ``baseline: organ_only`` predicts each fold's evaluation mask. Every arm and seed is then
scored on all folds pooled (each tested lesion once) under each size convention, further test
scans (``experiment.test``, never trained on) per model, and arm pairs compared lesion by lesion.

Output folder::

    folds/                 fold files (training copies, references, evaluation masks), folds.json, lesions.json
    arms/<arm>/seed<s>/<fold or shared>/run/      a training run      .../pred/   its predictions
    arms/<arm>/seed<s>/report_<convention>/       ``tumorsyn evaluate`` report over the pooled folds
    arms/<arm>/seed<s>/<fold or shared>/further/  report on experiment.test
    compare/<a>_vs_<b>/seed<s>/                   ``tumorsyn evaluate --compare``
    figures/               sensitivity by size bin (PNG), preview sheets of detected and missed small tumours
    report.md, report.json, design.json, timings.json, versions.json

Resuming: finished training runs, predictions (``pred/DONE``) and reports are kept; a killed run
continues where it stopped. The reports and figures are rebuilt from the predictions each time.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

from tumorsyn.errors import ConfigError

from segment.config import DEFAULTS, merge_overrides, validate_config
from segment.folds import Fold, build_folds, check_design, load_folds

__all__ = ["run_fold_experiment", "plan_runs"]


def _is_baseline(arm: dict | None) -> bool:
    return bool((arm or {}).get("baseline"))


def _train_config(config: dict, name: str, arm: dict, seed: int, fold: Fold | None, run_dir: Path) -> dict:
    """One training run's full config: the arm's overrides, the seed, the fold's real cases (or none)."""
    overrides = copy.deepcopy((arm or {}).get("overrides") or {})
    merged = merge_overrides(config, overrides, "", f"experiment.arms.{name}.overrides")
    merged["seed"] = int(seed)
    merged["output_dir"] = str(run_dir)
    # The experiment's own keys never reach a training run: changing the report does not block resuming.
    merged["experiment"] = copy.deepcopy(DEFAULTS["experiment"])
    real = merged["data"]["real"]
    real.update(dataset=None, cases=copy.deepcopy(fold.train_cases) if fold is not None else [])
    return validate_config(merged, path=f"experiment.arms.{name}", check_files=False)


def _uses_real_data(config: dict, name: str, arm: dict) -> bool:
    probe = merge_overrides(config, copy.deepcopy((arm or {}).get("overrides") or {}), "", f"experiment.arms.{name}")
    return probe["train"]["epochs"] > 0 and probe["data"]["real"]["weight"] > 0


def plan_runs(config: dict, folds: list[Fold]) -> list[dict]:
    """Every training run of the design: ``{arm, seed, key, folds, config}`` (``key`` = fold name or ``shared``)."""
    out = Path(config["output_dir"])
    exp = config["experiment"]
    runs = []
    for name, arm in exp["arms"].items():
        if _is_baseline(arm):
            continue
        per_fold = _uses_real_data(config, name, arm)
        for seed in exp["seeds"] or [config["seed"]]:
            groups = [(f.name, [f], f) for f in folds] if per_fold else [("shared", folds, None)]
            for key, served, train_fold in groups:
                run_dir = out / "arms" / name / f"seed{seed}" / key / "run"
                runs.append({"arm": name, "seed": seed, "key": key, "folds": served,
                             "config": _train_config(config, name, arm, seed, train_fold, run_dir)})
    return runs


def _json(path: Path, data) -> None:
    from tumorsyn.metrics.report import write_json

    write_json(path, data)


def _predict(run: dict, scans: list[tuple[str, str, str]], pred_dir: Path, quiet: bool) -> None:
    """Predict ``(scan id, ct, organ mask)`` with the run's model unless ``pred_dir/DONE`` says it was done."""
    from segment.predict import predict_files

    done = pred_dir / "DONE"
    if done.is_file() and json.loads(done.read_text()) == sorted(s[0] for s in scans):
        return
    predict_files(Path(run["config"]["output_dir"]), [s[1] for s in scans], pred_dir, organ_masks=[s[2] for s in scans],
                  case_ids=[s[0] for s in scans], quiet=quiet, device="auto")
    done.write_text(json.dumps(sorted(s[0] for s in scans)))


def _evaluate(pairs, out_dir: Path, config: dict, convention: str, *, workers: int, command: str) -> dict:
    """``tumorsyn evaluate`` on the pairs under one size convention; the report written and returned (loaded)."""
    from tumorsyn import metrics

    exp = config["experiment"]
    bins = metrics.size_convention(convention, exp["bins_mm"]).bins_mm
    results = metrics.evaluate_dataset(pairs, workers=workers, match=exp["match"], bins_mm=bins,
                                       size_convention=convention)
    report = metrics.build_report(
        results, summary=metrics.summarize(results, bins_mm=bins, size_convention=convention),
        conventions=metrics.conventions(match=exp["match"], bins_mm=bins, organ_restricted=True,
                                        size_convention_name=convention),
        versions=metrics.versions(), sources={"pairs": [p.case_id for p in pairs]}, command=command)
    metrics.write_report(out_dir, report)
    return metrics.load_report(out_dir)


def _write_further_refs(config: dict, out: Path) -> list:
    """Reference and organ masks of ``experiment.test`` (never trained on), on each scan's grid."""
    from tumorsyn.io.writers import write_mask_like

    from segment.data import read_case_masks, source_cases

    cases = source_cases(config["experiment"]["test"], "experiment.test")
    for case in cases:
        scan, organ, tumor = read_case_masks(case, config["organ"])
        write_mask_like(out / "reference" / f"{case.case_id}.nii.gz", scan, tumor)
        write_mask_like(out / "organ" / f"{case.case_id}.nii.gz", scan, organ | tumor)
    return cases


def run_fold_experiment(config: dict, *, quiet: bool = False, workers: int = 1) -> Path:
    """Run (or resume) the whole fold design; write the report; return the output folder."""
    from accelerate import PartialState

    from segment.train import train

    # Under `accelerate launch` every process trains; the main one alone writes folds, predicts and reports.
    import torch

    # cpu=True without a GPU, so that a launcher's CPU processes are seen as one data-parallel group.
    state = PartialState(cpu=bool(config["train"]["cpu"]) or not torch.cuda.is_available())
    main = state.is_main_process
    log = (lambda *a: None) if quiet or not main else (lambda *a: print(*a, file=sys.stderr, flush=True))
    out = Path(config["output_dir"])
    exp = config["experiment"]
    if not exp["arms"]:
        raise ConfigError("experiment.arms is empty: name the arms to compare (docs/experiment.md)")
    started = time.perf_counter()
    if main:
        (out / "reference").mkdir(parents=True, exist_ok=True)
        (out / "organ").mkdir(parents=True, exist_ok=True)
        folds = build_folds(config, out)
        design = check_design(folds)
        _json(out / "design.json", {"rules": design, "folds": {f.name: f.facts for f in folds},
                                    "preregistration": exp["preregistration"], "departures": exp["departures"]})
        broken = [rule for rule, ok in design.items() if ok is False]
        if broken:
            raise ConfigError(f"the folds break the design rule(s) {', '.join(broken)}; see {out / 'design.json'}")
        log(f"folds: {', '.join(f'{f.name} ({f.tested_lesions} tested tumours)' for f in folds)}; design rules hold")
        further = _write_further_refs(config, out)
    state.wait_for_everyone()
    if not main:
        folds = load_folds(out)
    runs = plan_runs(config, folds)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}

    for i, run in enumerate(runs, 1):
        label = f"{run['arm']} seed {run['seed']} {run['key']}"
        run_dir = Path(run["config"]["output_dir"])
        pred_dir = run_dir.parent / "pred"
        state.wait_for_everyone()  # every process sees the same finished runs
        if (pred_dir / "DONE").is_file() and (run_dir / "model").is_dir():
            log(f"[{i}/{len(runs)}] {label}: done")
        else:
            t0 = time.perf_counter()
            log(f"[{i}/{len(runs)}] {label}: training ({time.perf_counter() - started:.0f} s so far)")
            train(run["config"], quiet=quiet)
            if not main:
                continue
            scans = {(t.scan_id, t.ct, t.organ) for f in run["folds"] for t in f.test}
            scans |= {(c.case_id, str(c.ct), str(out / "organ" / f"{c.case_id}.nii.gz")) for c in further}
            _predict(run, sorted(scans), pred_dir, quiet)
            timings[f"{run['arm']}/seed{run['seed']}/{run['key']}"] = timings.get(
                f"{run['arm']}/seed{run['seed']}/{run['key']}", 0.0) + time.perf_counter() - t0
            _json(timings_path, timings)

    state.wait_for_everyone()
    if main:
        _score_and_report(config, out, folds, design, further, timings, started=started, workers=workers)
    state.wait_for_everyone()  # the report exists for every process when the command returns
    return out


def _score_and_report(config: dict, out: Path, folds: list[Fold], design: dict, further: list, timings: dict, *,
                      started: float, workers: int) -> None:
    """Score every arm and seed from the predictions, compare, and write the report (main process only)."""
    from tumorsyn import metrics

    from segment.predict import output_names
    from segment.report_experiment import write_experiment_report
    from segment.train import versions

    exp = config["experiment"]
    # Score: every arm and seed on the pooled folds, under each size convention; further scans per model.
    reports: dict[str, dict] = {}
    further_reports: dict[str, dict] = {}
    arm_seeds: dict[str, list] = {}
    for name, arm in exp["arms"].items():
        seeds = ["-"] if _is_baseline(arm) else (exp["seeds"] or [config["seed"]])
        arm_seeds[name] = seeds
        for seed in seeds:
            base = out / "arms" / name / ("" if seed == "-" else f"seed{seed}")
            pairs = []
            for fold in folds:
                for test in fold.test:
                    if _is_baseline(arm):
                        prediction = test.evaluation_mask
                    else:
                        key = fold.name if (base / fold.name / "run").is_dir() else "shared"
                        prediction = str(base / key / "pred" / output_names(test.scan_id)["tumor"])
                    pairs.append(metrics.CasePaths(test.case_id, Path(test.reference), Path(prediction),
                                                   Path(test.evaluation_mask)))
            for convention in exp["size_conventions"]:
                reports[f"{name}|{seed}|{convention}"] = _evaluate(
                    pairs, base / f"report_{convention}", config, convention, workers=workers,
                    command=f"tumorsyn segment experiment (arm {name}, seed {seed}, {convention})")
            if _is_baseline(arm) or not further:
                continue
            for model in sorted(p.name for p in base.iterdir() if (p / "pred" / "DONE").is_file()):
                pairs = [metrics.CasePaths(c.case_id, out / "reference" / f"{c.case_id}.nii.gz",
                                           base / model / "pred" / output_names(c.case_id)["tumor"],
                                           out / "organ" / f"{c.case_id}.nii.gz") for c in further]
                further_reports[f"{name}|{seed}|{model}"] = _evaluate(
                    pairs, base / model / "further", config, exp["size_conventions"][0], workers=1,
                    command=f"tumorsyn segment experiment (arm {name}, seed {seed}, model {model}, further test)")

    primary = exp["size_conventions"][0]
    comparisons = {}
    for a, b in exp["comparisons"]:
        for seed in exp["seeds"] or [config["seed"]]:
            ra, rb = (reports.get(f"{n}|{seed}|{primary}") or reports.get(f"{n}|-|{primary}") for n in (a, b))
            comparison = metrics.compare_reports(ra, rb, names=[a, b])
            metrics.write_comparison(out / "compare" / f"{a}_vs_{b}" / f"seed{seed}", comparison)
            comparisons[f"{a}|{b}|{seed}"] = comparison

    _json(out / "versions.json", versions())
    write_experiment_report(out, config, folds=folds, design=design, reports=reports, further=further_reports,
                            comparisons=comparisons, arm_seeds=arm_seeds, timings=timings,
                            seconds=time.perf_counter() - started)
