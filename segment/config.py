"""Training/experiment configuration: YAML file + ``--set key=value`` overrides, validated before any work.

A configuration is a nested dict. :data:`DEFAULTS` holds every key with its default; the YAML file
overrides some of them and ``--set data.batch_size=4`` overrides single keys (the value is parsed as
YAML, so ``--set synthesis.size_mm="[[5, 10], 0.8]"`` works). Unknown keys are errors, so a typo
never silently falls back to a default. Every error is one line naming the file and the key.

Relative data paths in the file are relative to the YAML file's folder; ``${REAL}`` in a path is
replaced by the real-data folder (``--real-data DIR``, else $TUMORSYN_REAL_DATA, else
``<repo>/../shared/data/real``, the shared real scans) and ``${REPO}`` by the project root.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from tumorsyn.configfile import apply_overrides as _apply_overrides
from tumorsyn.configfile import merge_config, read_config
from tumorsyn.configfile import expand_path as _expand_path
from tumorsyn.configfile import need as _need
from tumorsyn.configfile import need_path as _need_path
from tumorsyn.configfile import positive_ints as _positive_ints
from tumorsyn.errors import ConfigError
from tumorsyn.io.labels import LABEL_PRESETS, ORGANS

__all__ = ["DEFAULTS", "NETWORKS", "SOURCE_KEYS", "load_config", "apply_overrides", "merge_overrides", "validate_config",
           "dump_config"]

NETWORKS = ("unet", "segresnet", "dynunet", "swinunetr")
MIXED_PRECISION = ("no", "bf16", "fp16")
SELECT_ON = ("sensitivity", "dice", "last")

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "runs/segment",
    "organ": "liver",
    "data": {
        # Each source: {"dataset": DIR_OR_CSV} and/or {"cases": [{"ct":, "labels":} | {"ct":, "organ":, "tumor": [..]}]}
        "real": {"dataset": None, "cases": [], "label_preset": "decathlon", "organ_labels": None, "weight": 1.0},
        "healthy": {"dataset": None, "cases": [], "label_preset": "totalsegmentator", "organ_labels": None,
                    "weight": 1.0},
        "validation": {"dataset": None, "cases": [], "label_preset": "decathlon", "organ_labels": None},
        "spacing_mm": [1.5, 1.5, 2.0],     # resample every scan to this voxel size (null: keep each scan's own)
        "crop_margin_mm": 20.0,            # crop each scan to its organ box + this margin at load time
        "roi_size": [96, 96, 96],          # training patch, voxels
        "samples_per_scan": 2,             # patches drawn from one loaded scan
        "crop_ratios": [1, 1, 2],          # patch centre on background / organ / tumour voxels
        "hu_window": [-175.0, 250.0],      # HU mapped to [0, 1] (clipped)
        "batch_size": 1,                   # scans per batch (each gives samples_per_scan patches)
        "workers": 2,                      # DataLoader worker processes (synthesis runs there)
        "flip_prob": 0.0,                  # random flips along each axis
    },
    "synthesis": {
        "enabled": True,
        "method": "rules",
        "prob": 0.9,
        "count": 1,
        # weighted size bins in mm (equivalent-sphere diameter), DiffTumor's early-tumour mix
        "size_mm": [[[5, 10], 0.8], [[10, 20], 0.1], [[20, 40], 0.1]],
        "apply_to": ["healthy"],           # which sources get synthetic tumours
        "options": {"allow_smaller": True},
        # Draw and write the tumours in the training process on its device, a whole batch in one
        # generator call (the diffusion model on the training GPU), instead of in DataLoader
        # workers; patches are then cut in the training process too (data.workers is not used).
        "batched_on_device": False,
    },
    "network": {
        "name": "unet",
        "kwargs": {},                      # passed to the MONAI constructor (overrides the defaults)
        "init_checkpoint": None,           # local .safetensors/.pt/.pth, or a run/model folder
    },
    "train": {
        "epochs": 10,
        "steps_per_epoch": 50,             # optimizer steps per epoch
        "lr": 3e-4,
        "weight_decay": 1e-5,
        "warmup_steps": 0,
        "grad_accum": 1,
        "mixed_precision": "no",
        "max_grad_norm": 1.0,
        "checkpoint_every": 50,            # optimizer steps between resumable checkpoints (and each epoch end)
        "select_on": "sensitivity",        # best model: validation tumour sensitivity, dice, or last
        "batch_dice": True,                # Dice of the loss pooled over the batch (nnU-Net) or per patch
        "cpu": False,                      # force CPU even when a GPU is there
        "threads": None,                   # torch CPU threads of the training process (null: torch's default)
        "progress": True,
    },
    "predict": {
        "overlap": 0.5,
        "sw_batch_size": 2,
        "threshold": 0.5,                  # tumour probability above which a voxel is tumour
        "min_tumor_mm3": 0.0,              # drop predicted components smaller than this
    },
    "experiment": {
        "arms": {},                        # name -> {"overrides": {...}} or {"baseline": "organ_only"}
        "test": {"dataset": None, "cases": [], "label_preset": "decathlon", "organ_labels": None},
        "match": "any",
        # Folds over real tumours (segment/folds.py, docs/experiment.md): null = the arms train once on
        # data.* and are tested on experiment.test. "slabs": one scan cut along an axis with a gap;
        # "patients": k folds of the data.real scans, stratified by each scan's smallest tumour.
        "folds": {"kind": None, "scan": None, "label_preset": "decathlon", "axis": 2, "gap": None,
                  "exclude_margin_voxels": 2, "k": 5, "stratify_bins_mm": [5, 10, 20]},
        "seeds": None,                     # training seeds of every arm (null: [seed])
        "size_conventions": ["max-diameter", "diameter"],  # the first is primary (comparisons, claim table)
        "bins_mm": [5, 10, 20],
        "comparisons": [],                 # [[a, b], ...]: paired McNemar per seed, b against a
        "claim": {"real": None, "synthetic": None, "mixed": None},  # arm names for the published-claim table
        "caveats": [],                     # printed under the claim table, always
        "preregistration": None,           # where the design was written down before the run
        "departures": [],                  # every departure from that design, stated
    },
}

SOURCE_KEYS = ("real", "healthy", "validation")  # the data sources of a config (experiment.test apart)


_FREE_FORM = ("network.kwargs", "synthesis.options", "experiment.arms", "experiment.folds.scan")


def merge_overrides(base: dict, update: Mapping, where: str, path: str) -> dict:
    """``base`` updated recursively with ``update``; unknown keys are errors (free-form dicts excepted)."""
    return merge_config(base, update, path=path, free_form=_FREE_FORM, where=where)


def apply_overrides(config: dict, overrides: Iterable[str], *, path: str = "--set") -> dict:
    """Apply ``key.sub=value`` strings (value parsed as YAML) to a copy of ``config``."""
    return _apply_overrides(config, overrides, path=path, free_form=_FREE_FORM, example="train.epochs=2")


def _resolve_paths(config: dict, base_dir: Path, real_data=None) -> None:
    def _expand(value, base: Path) -> str:
        return _expand_path(value, base, real_data=real_data)

    sources = [config["data"][k] for k in SOURCE_KEYS] + [config["experiment"]["test"]]
    for source in sources:
        if source.get("dataset"):
            source["dataset"] = _expand(source["dataset"], base_dir)
        for case in source.get("cases") or []:
            if not isinstance(case, dict):
                continue
            for key in ("ct", "labels", "organ"):
                if case.get(key):
                    case[key] = _expand(case[key], base_dir)
            if case.get("tumor"):
                tumors = case["tumor"] if isinstance(case["tumor"], list) else [case["tumor"]]
                case["tumor"] = [_expand(t, base_dir) for t in tumors]
    scan = config["experiment"]["folds"].get("scan")
    if isinstance(scan, dict):
        for key in ("ct", "labels"):
            if scan.get(key):
                scan[key] = _expand(scan[key], base_dir)
    ckpt = config["network"].get("init_checkpoint")
    if ckpt:
        config["network"]["init_checkpoint"] = _expand(ckpt, base_dir)
    if config["output_dir"] is not None:  # null: the config leaves the folder to --out
        config["output_dir"] = _expand(config["output_dir"], Path.cwd())


def validate_config(config: dict, *, path: str = "config", check_files: bool = True, real_data=None) -> dict:
    """Check every value; raise :class:`ConfigError` ``"<file>: <key> <problem>; <remedy>"`` on the first bad one.

    ``real_data`` is the folder ``${REAL}`` stood for (``--real-data``), named when a path under it is missing.
    """
    c = config
    _need(c["output_dir"] is not None, path, "output_dir is not set (this config leaves the output folder to you); "
          "give --out DIR, a new folder or one this config made")
    _need(isinstance(c["seed"], int), path, f"seed must be an integer, got {c['seed']!r}")
    _need(c["organ"] in ORGANS, path, f"organ {c['organ']!r} unknown; choose one of {', '.join(ORGANS)}")
    d = c["data"]
    _need(d["spacing_mm"] is None or (isinstance(d["spacing_mm"], (list, tuple)) and len(d["spacing_mm"]) == 3
                                      and all(isinstance(v, (int, float)) and v > 0 for v in d["spacing_mm"])),
          path, f"data.spacing_mm must be three positive numbers (mm) or null, got {d['spacing_mm']!r}")
    _need(_positive_ints(d["roi_size"], 3), path, f"data.roi_size must be three positive integers (voxels), got {d['roi_size']!r}")
    _need(_positive_ints(d["crop_ratios"], 3) or (isinstance(d["crop_ratios"], list) and len(d["crop_ratios"]) == 3
                                                  and all(isinstance(v, (int, float)) and v >= 0 for v in d["crop_ratios"])
                                                  and sum(d["crop_ratios"]) > 0),
          path, f"data.crop_ratios must be three non-negative weights (background, organ, tumour), got {d['crop_ratios']!r}")
    for key in ("samples_per_scan", "batch_size"):
        _need(isinstance(d[key], int) and d[key] >= 1, path, f"data.{key} must be an integer >= 1, got {d[key]!r}")
    _need(isinstance(d["workers"], int) and d["workers"] >= 0, path, f"data.workers must be an integer >= 0, got {d['workers']!r}")
    _need(isinstance(d["crop_margin_mm"], (int, float)) and d["crop_margin_mm"] >= 0, path,
          f"data.crop_margin_mm must be >= 0 (mm), got {d['crop_margin_mm']!r}")
    w = d["hu_window"]
    _need(isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(v, (int, float)) for v in w) and w[0] < w[1],
          path, f"data.hu_window must be [low_hu, high_hu] with low < high, got {w!r}")
    _need(isinstance(d["flip_prob"], (int, float)) and 0 <= d["flip_prob"] <= 1, path,
          f"data.flip_prob must be in [0, 1], got {d['flip_prob']!r}")
    for name in SOURCE_KEYS:
        _validate_source(d[name], f"data.{name}", c["organ"], path, check_files, real_data)
    _validate_source(c["experiment"]["test"], "experiment.test", c["organ"], path, check_files, real_data)
    for name in ("real", "healthy"):
        weight = d[name]["weight"]
        _need(isinstance(weight, (int, float)) and weight >= 0, path,
              f"data.{name}.weight must be a non-negative number, got {weight!r}")

    s = c["synthesis"]
    from tumorsyn.generators import available_generators
    methods = available_generators()
    _need(s["method"] in methods, path, f"synthesis.method {s['method']!r} is not a registered generator; "
                                        f"choose one of {', '.join(methods)}")
    _need(isinstance(s["prob"], (int, float)) and 0 <= s["prob"] <= 1, path, f"synthesis.prob must be in [0, 1], got {s['prob']!r}")
    _need(isinstance(s["count"], int) and s["count"] >= 1, path, f"synthesis.count must be an integer >= 1, got {s['count']!r}")
    apply_to = s["apply_to"] if isinstance(s["apply_to"], list) else [s["apply_to"]]
    _need(all(a in ("real", "healthy") for a in apply_to), path,
          f"synthesis.apply_to must list 'healthy' and/or 'real', got {s['apply_to']!r}")
    s["apply_to"] = apply_to
    _need(isinstance(s["options"], dict), path, "synthesis.options must be a mapping")
    _need(isinstance(s["batched_on_device"], bool), path,
          f"synthesis.batched_on_device must be true or false, got {s['batched_on_device']!r}")
    try:
        from tumorsyn.sampling import parse_size_bins

        parse_size_bins(s["size_mm"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: synthesis.size_mm: {exc}") from None

    n = c["network"]
    _need(isinstance(n["name"], str) and n["name"].lower() in NETWORKS, path,
          f"unknown network {n['name']!r}; choose one of {', '.join(NETWORKS)}")
    n["name"] = n["name"].lower()
    _need(isinstance(n["kwargs"], dict), path, "network.kwargs must be a mapping of constructor arguments")
    if n["init_checkpoint"] and check_files:
        _need_path(n["init_checkpoint"], path, "network.init_checkpoint", real_data=real_data)
    if n["name"] == "swinunetr":
        _need(all(r % 32 == 0 for r in d["roi_size"]), path,
              f"data.roi_size {d['roi_size']} must be divisible by 32 for swinunetr")

    t = c["train"]
    for key in ("epochs",):
        _need(isinstance(t[key], int) and t[key] >= 0, path, f"train.{key} must be an integer >= 0, got {t[key]!r}")
    for key in ("steps_per_epoch", "grad_accum", "checkpoint_every"):
        _need(isinstance(t[key], int) and t[key] >= 1, path, f"train.{key} must be an integer >= 1, got {t[key]!r}")
    _need(isinstance(t["warmup_steps"], int) and t["warmup_steps"] >= 0, path, "train.warmup_steps must be an integer >= 0")
    for key in ("lr", "weight_decay", "max_grad_norm"):
        _need(isinstance(t[key], (int, float)) and t[key] >= 0, path, f"train.{key} must be a number >= 0, got {t[key]!r}")
    if t["mixed_precision"] is False:  # YAML reads a bare `no` (as in --set train.mixed_precision=no) as false
        t["mixed_precision"] = "no"
    _need(t["mixed_precision"] in MIXED_PRECISION, path,
          f"train.mixed_precision {t['mixed_precision']!r} unknown; choose one of {', '.join(MIXED_PRECISION)}")
    _need(t["threads"] is None or (isinstance(t["threads"], int) and not isinstance(t["threads"], bool)
                                   and t["threads"] >= 1), path,
          f"train.threads must be a positive integer or null, got {t['threads']!r}")
    _need(isinstance(t["batch_dice"], bool), path, f"train.batch_dice must be true or false, got {t['batch_dice']!r}")
    _need(t["select_on"] in SELECT_ON, path, f"train.select_on {t['select_on']!r} unknown; choose one of {', '.join(SELECT_ON)}")

    p = c["predict"]
    _need(isinstance(p["overlap"], (int, float)) and 0 <= p["overlap"] < 1, path, f"predict.overlap must be in [0, 1), got {p['overlap']!r}")
    _need(isinstance(p["sw_batch_size"], int) and p["sw_batch_size"] >= 1, path, "predict.sw_batch_size must be an integer >= 1")
    _need(isinstance(p["threshold"], (int, float)) and 0 < p["threshold"] < 1, path, "predict.threshold must be in (0, 1)")

    arms = c["experiment"]["arms"]
    _need(isinstance(arms, dict), path, "experiment.arms must map arm names to {overrides: {...}} or {baseline: organ_only}")
    for name, arm in arms.items():
        arm = arm or {}
        _need(isinstance(arm, dict) and set(arm) <= {"overrides", "baseline"}, path,
              f"experiment.arms.{name} must hold 'overrides' (a mapping of config keys) or 'baseline: organ_only'")
        _need(arm.get("baseline") in (None, "organ_only"), path,
              f"experiment.arms.{name}.baseline {arm.get('baseline')!r} unknown; the only baseline is organ_only")
    _need(c["experiment"]["match"] in ("any", "iou0.5", "dice0.1", "centroid"), path,
          f"experiment.match {c['experiment']['match']!r} unknown; choose any, iou0.5, dice0.1 or centroid")
    _validate_experiment(c["experiment"], path, check_files, real_data)
    return c


def _validate_experiment(e: dict, path: str, check_files: bool, real_data=None) -> None:
    """The fold design, seeds, size conventions and comparisons of ``experiment``."""
    from tumorsyn.metrics.sizes import SIZE_CONVENTIONS, check_bins_mm

    f = e["folds"]
    _need(f["kind"] in (None, "slabs", "patients"), path,
          f"experiment.folds.kind {f['kind']!r} unknown; choose slabs, patients or null")
    if f["kind"] == "slabs":
        scan = f["scan"]
        _need(isinstance(scan, dict) and scan.get("ct") and scan.get("labels"), path,
              "experiment.folds.scan must be {id, ct, labels} (a label map with organ and tumours) for slab folds")
        if check_files:
            for key in ("ct", "labels"):
                _need_path(scan[key], path, f"experiment.folds.scan.{key}", real_data=real_data)
        _need(f["axis"] in (0, 1, 2), path, f"experiment.folds.axis must be 0, 1 or 2, got {f['axis']!r}")
        gap = f["gap"]
        _need(isinstance(gap, list) and len(gap) == 2 and all(isinstance(g, int) for g in gap) and 0 < gap[0] <= gap[1],
              path, f"experiment.folds.gap must be [first, last] slice of the gap (0 < first <= last), got {gap!r}")
    if f["kind"] == "patients":
        _need(isinstance(f["k"], int) and f["k"] >= 2, path, f"experiment.folds.k must be an integer >= 2, got {f['k']!r}")
    _need(isinstance(f["exclude_margin_voxels"], int) and f["exclude_margin_voxels"] >= 0, path,
          "experiment.folds.exclude_margin_voxels must be an integer >= 0")
    seeds = e["seeds"]
    _need(seeds is None or (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)
                            and len(set(seeds)) == len(seeds)), path,
          f"experiment.seeds must be a list of distinct integers or null, got {seeds!r}")
    conventions = e["size_conventions"]
    _need(isinstance(conventions, list) and conventions and all(c in SIZE_CONVENTIONS for c in conventions), path,
          f"experiment.size_conventions must list some of {', '.join(SIZE_CONVENTIONS)}, got {conventions!r}")
    try:
        check_bins_mm(e["bins_mm"])
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"{path}: experiment.bins_mm: {exc}") from None
    names = set(e["arms"] or {})
    for pair in e["comparisons"]:
        _need(isinstance(pair, list) and len(pair) == 2 and set(pair) <= names, path,
              f"experiment.comparisons entry {pair!r} must name two arms of experiment.arms")
    for role, name in e["claim"].items():
        _need(name is None or name in names, path, f"experiment.claim.{role} {name!r} is not an arm of experiment.arms")


def _validate_source(source: dict, name: str, organ: str, path: str, check_files: bool, real_data=None) -> None:
    preset = source.get("label_preset")
    _need(preset in LABEL_PRESETS, path, f"{name}.label_preset {preset!r} unknown; choose one of {', '.join(LABEL_PRESETS)}")
    if source.get("organ_labels") is None:
        _need(organ in LABEL_PRESETS[preset], path,
              f"{name}.label_preset {preset!r} has no {organ} label (label preset mismatch); "
              f"give {name}.organ_labels or another preset")
    if source.get("dataset") and check_files:
        _need_path(source["dataset"], path, f"{name}.dataset", hint="missing dataset path", real_data=real_data)
    cases = source.get("cases") or []
    _need(isinstance(cases, list), path, f"{name}.cases must be a list of {{ct, labels}} or {{ct, organ, tumor}} entries")
    for i, case in enumerate(cases):
        _need(isinstance(case, dict) and "ct" in case and ("labels" in case or "organ" in case), path,
              f"{name}.cases[{i}] needs 'ct' and 'labels' (a label map) or 'organ' (+ optional 'tumor' masks)")
        if check_files:
            for key in ("ct", "labels", "organ"):
                if case.get(key):
                    _need_path(case[key], path, f"{name}.cases[{i}].{key}", real_data=real_data)
            for t in case.get("tumor") or []:
                _need_path(t, path, f"{name}.cases[{i}].tumor", real_data=real_data)


def load_config(path: str | Path | None, overrides: Iterable[str] = (), *, check_files: bool = True,
                data: Mapping | None = None, real_data: str | Path | None = None) -> dict:
    """Read a YAML config (or use ``data``), apply ``--set`` overrides, resolve paths, validate.

    Parameters
    ----------
    path : str or Path, optional
        YAML file. Relative paths inside it are relative to its folder.
    overrides : iterable of str
        ``key.sub=value`` strings; values are parsed as YAML.
    check_files : bool
        Also check that every named data path exists.
    data : mapping, optional
        A config given as a dict instead of a file (paths then relative to the current folder).
    real_data : str or Path, optional
        The folder ``${REAL}`` stands for (``--real-data``); default $TUMORSYN_REAL_DATA, else
        ../shared/data/real beside the checkout.

    Returns
    -------
    dict
        The full, resolved config (every default filled in).
    """
    name, data, base_dir = read_config(path, data)
    config = merge_overrides(DEFAULTS, data, "", name)
    config = apply_overrides(config, overrides, path=name)
    _resolve_paths(config, base_dir, real_data)
    return validate_config(config, path=name, check_files=check_files, real_data=real_data)


def dump_config(config: dict, path: str | Path) -> Path:
    """Write the resolved config as YAML."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
