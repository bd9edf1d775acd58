"""``tumorsyn segment train / predict / experiment``: segmentation with on-the-fly synthetic tumours."""
from __future__ import annotations

import argparse

from tumorsyn.configfile import REAL_DATA_HELP

DESCRIPTION = """\
Train a tumour segmenter with synthetic tumours written on the fly into healthy scans (and/or real
tumour scans), predict new scans, and run the real-vs-synthetic experiment on held-out REAL tumours.
All settings live in a YAML config (configs/segment/*.yaml); --set key=value overrides one key.
Under `accelerate launch` the same config trains on several GPUs or nodes."""

EXAMPLES = """\
examples:
  tumorsyn segment train configs/segment/demo_cpu.yaml --set train.epochs=1 --out ~/segment_demo_train
  accelerate launch -m tumorsyn segment train configs/segment/msd_task03_liver.yaml --set data.real.dataset=/data/Task03_Liver
  tumorsyn segment predict --model runs/liver/ ct1.nii.gz ct2.nii.gz --organ-mask liver1.nii.gz liver2.nii.gz --out pred/
  tumorsyn segment experiment configs/segment/demo_cpu.yaml --out ~/segment_demo
  tumorsyn segment experiment configs/segment/real_small_tumours_cpu.yaml --out ~/real_small_tumours
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("segment", help="segmentation training with synthetic tumours, inference, experiments",
                                   description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="segment_command", metavar="{train,predict,experiment}")

    train = sub.add_parser("train", help="train a segmentation network (resumes a killed run)",
                           description="Train as CONFIG says; run folder = output_dir (checkpoints, model/, "
                                       "metrics.csv, curves.png, config.yaml, versions.json). Started again, "
                                       "it continues from the last checkpoint.")
    _common(train)
    train.add_argument("--no-resume", action="store_true", help="refuse to continue a run folder that has checkpoints")
    train.set_defaults(handler=_train)

    predict = sub.add_parser("predict", help="sliding-window inference; masks on each input's own grid",
                             description="Predict tumour (and organ) masks. Outputs <id>_tumor.nii.gz (uint8) and "
                                         "<id>_organ.nii.gz on the input's grid, affine and orientation; with "
                                         "--probabilities also probabilities/<id>_pred.nii.gz (tumour probability, "
                                         "float32 in [0, 1]) for FROC with `tumorsyn evaluate`.")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="CT files (.nii/.nii.gz) or DICOM series folders")
    predict.add_argument("--model", required=True, metavar="RUN_DIR", help="training run folder (or its model/ folder)")
    predict.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    predict.add_argument("--organ-mask", nargs="+", metavar="MASK",
                         help="one organ mask per input (non-zero = organ): tumour restricted to it, inference on its "
                              "box only (default: the model's organ channel)")
    predict.add_argument("--probabilities", action="store_true", help="also write tumour probability maps")
    predict.add_argument("--threshold", type=float, default=None,
                         help="tumour probability threshold in (0, 1) (default: the model's, 0.5)")
    predict.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, cuda:1 ...")
    predict.add_argument("--seed", type=int, default=0, help="accepted for uniformity; inference draws nothing at random")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)

    experiment = sub.add_parser("experiment", help="train arms, predict held-out real tumours, evaluate, compare",
                                description="Train every arm of experiment.arms, predict experiment.test scans, run "
                                            "`tumorsyn evaluate` per arm and `--compare` against the first arm; "
                                            "writes report.md with the per-size-bin table in output_dir. With "
                                            "experiment.folds (slabs of one scan, or patient folds) and "
                                            "experiment.seeds it runs the pre-registered design of "
                                            "docs/experiment.md: every arm x seed x fold, each real tumour tested "
                                            "once, design rules checked before training, figures and the "
                                            "published-claim table. Killed, the same command resumes.")
    _common(experiment)
    experiment.add_argument("--workers", type=int, default=1, help="processes for the evaluation (default 1)")
    experiment.set_defaults(handler=_experiment)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _common(parser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="YAML config (see configs/segment/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=2 --set data.workers=0 (repeatable)")
    parser.add_argument("--out", metavar="DIR", help="output folder (overrides output_dir)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (overrides seed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no log lines")
    parser.add_argument("--real-data", metavar="DIR", help=REAL_DATA_HELP)


def _load(args) -> dict:
    from segment.config import load_config

    overrides = list(args.set)
    if args.out:
        overrides.append(f"output_dir={args.out}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    return load_config(args.config, overrides, real_data=args.real_data)


# What ``segment train`` writes in output_dir (segment/train.py), and what ``segment experiment`` adds.
TRAIN_FILES = ("config.yaml", "versions.json", "init_report.json", "steps.csv", "metrics.csv", "curves.png")
TRAIN_FOLDERS = ("checkpoints", "model", "model_last")
EXPERIMENT_FILES = ("report.md", "report.json", "versions.json")
EXPERIMENT_FOLDERS = ("reference", "organ", "arms", "compare")


def _check_spares_inputs(config: dict, config_path: str | None, *, experiment: bool = False) -> None:
    """Before any work: no file the run writes, and no folder it replaces, is the config or a data file it reads."""
    from pathlib import Path

    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, safe_case_id

    from segment.config import SOURCE_KEYS
    from segment.data import source_cases

    run_dir = check_out_folder(config["output_dir"], option="output_dir (--out)")
    sources = [(config["data"][k], f"data.{k}") for k in SOURCE_KEYS]
    if experiment:
        sources.append((config["experiment"]["test"], "experiment.test"))
    inputs = [config_path, config["network"].get("init_checkpoint")]
    for source, name in sources:
        if source.get("dataset") and Path(source["dataset"]).is_file():
            inputs.append(source["dataset"])
        for case in source_cases(source, name):
            # Test case ids name the experiment's reference and prediction files.
            safe_case_id(case.case_id, path=case.ct)
            inputs += case.files
    files, folders = (EXPERIMENT_FILES, EXPERIMENT_FOLDERS) if experiment else (TRAIN_FILES, TRAIN_FOLDERS)
    check_outputs_spare_inputs([run_dir / n for n in files], inputs, folders=[run_dir / n for n in folders],
                               option="output_dir (--out)")


def _train(args) -> int:
    from segment.train import train

    config = _load(args)
    _check_spares_inputs(config, args.config)
    run_dir = train(config, resume=not args.no_resume, quiet=args.quiet)
    if not args.quiet:
        print(f"run folder: {run_dir} (model: {run_dir / 'model'})")
    return 0


def _predict(args) -> int:
    from tumorsyn.errors import ConfigError

    from segment.predict import predict_files

    if args.threshold is not None and not 0 < args.threshold < 1:
        raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")
    written = predict_files(args.model, args.inputs, args.out, organ_masks=args.organ_mask,
                            probabilities=args.probabilities, device=args.device, quiet=args.quiet,
                            threshold=args.threshold)
    if not args.quiet:
        print(f"{len(written)} case(s) written to {args.out}")
    return 0


def _experiment(args) -> int:
    from segment.experiment import run_experiment

    config = _load(args)
    _check_spares_inputs(config, args.config, experiment=True)
    out = run_experiment(config, quiet=args.quiet, workers=args.workers)
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch`, one report on the screen
        print((out / "report.md").read_text())
    return 0
