"""``tumorsyn train-diffusion CONFIG.yaml [--set key=value ...]``: autoencoder + latent diffusion training."""
from __future__ import annotations

import argparse
from pathlib import Path

from tumorsyn.cli.common import device
from tumorsyn.configfile import REAL_DATA_HELP
from tumorsyn.errors import ConfigError

from train_diffusion.config import STAGES

DESCRIPTION = """\
Train the diffusion generator in stages as CONFIG says (configs/diffusion/*.yaml): the
autoencoder (L1 + KL or VQ + patch adversarial loss) on tumour and healthy organ crops resampled to
data.spacing_mm (mm) in the HU window data.hu_window; with refiner.steps > 0, the border refiner (a
full-resolution UNet that redraws the decoded tumour's border at the exact mask); then the latent
diffusion UNet that inpaints a blanked tumour region. Writes <output_dir>/model/ (config.json + *.safetensors) for
`tumorsyn generate --method diffusion --model DIR`, with loss curves (CSV + PNG), preview PNGs and
resumable checkpoints: started again, a run continues from its last checkpoint. With models: K > 1 it
trains K whole models from their own seeds (<output_dir>/member_K/) and model/ is their mixture (each
tumour drawn by one member, named by its seed).
Under `accelerate launch` the same command trains on several GPUs or nodes.
With data.holdout_sources set, the end of a run (or --evaluate, on an existing model folder) measures
the autoencoder's mean absolute HU error inside and outside held-out tumours and the HU statistics and
realism descriptors (contrast in noise units, internal spread, edge sharpness) of tumours inpainted into
them, against the real ones' interquartile range: <output_dir>/heldout/heldout.json + heldout.png. It
then writes early tumours into evaluation.hosts (default: the bundled non-contrast example's liver,
pancreas and kidneys) and measures them against the same range: hosts.json + hosts.png."""

EXAMPLES = """\
examples:
  tumorsyn train-diffusion configs/diffusion/tiny_cpu.yaml --out runs/tiny
  tumorsyn train-diffusion configs/diffusion/liver_early_heldout.yaml --set autoencoder.steps=200 --set ldm.steps=400
  tumorsyn train-diffusion configs/diffusion/liver_early_heldout.yaml --evaluate --samples 8
  tumorsyn train-diffusion configs/diffusion/liver_early_lits_cpu.yaml --seed 1    # three models, seeds 3, 4, 5
  accelerate launch -m tumorsyn train-diffusion configs/diffusion/msd_liver_early.yaml --set train.mixed_precision=bf16
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("train-diffusion", help="train the latent diffusion tumour generator",
                                   description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", metavar="CONFIG.yaml", help="YAML config (see configs/diffusion/ and docs/diffusion.md)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set ldm.steps=100 (repeatable; values are YAML)")
    parser.add_argument("--out", metavar="DIR", help="run folder (overrides output_dir)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (overrides seed); recorded in the model")
    parser.add_argument("--stage", choices=list(STAGES), help="train one stage only (overrides train.stage)")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue a run folder that has checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no log lines")
    parser.add_argument("--real-data", metavar="DIR", help=REAL_DATA_HELP)
    group = parser.add_argument_group("held-out evaluation (no training)")
    group.add_argument("--evaluate", action="store_true",
                       help="measure a trained model on data.holdout_sources instead of training")
    group.add_argument("--on", choices=("heldout", "training"), default="heldout",
                       help="which real tumours --evaluate measures against: heldout (data.holdout_sources, the "
                            "default; writes <output_dir>/heldout/) or training (data.tumor_sources, the model's own "
                            "tumours; writes <output_dir>/training_fit/, no hosts): a model that misses both learnt "
                            "too little, one that misses only the held-out ones meets tumours unlike its own")
    group.add_argument("--model", metavar="DIR", help="model folder to evaluate (default: <output_dir>/model)")
    group.add_argument("--samples", type=int, default=4, metavar="N",
                       help="inpainted samples per held-out tumour (default 4; 0 = autoencoder only)")
    group.add_argument("--steps", type=int, default=None, metavar="N", help="sampling steps (default: the model's)")
    from tumorsyn.generators.diffusion.grain import GRAIN_MODES

    group.add_argument("--grain", choices=GRAIN_MODES, default=None,
                       help="measure samples as the generator's grain option writes them: model (the model's own "
                            "voxels), noise (the model's values plus a tumour-free crop's scanner noise) or host (the "
                            "model's content above 1.5 mm, that crop's grain below); default: the generator's default "
                            "for the model (noise with a border refiner, else model)")
    group.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:1 ... (default auto)")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from train_diffusion.config import load_config
    from train_diffusion.train import train

    overrides = list(args.set)
    if args.out:
        overrides.append(f"output_dir={args.out}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.stage:
        overrides.append(f"train.stage={args.stage}")
    config = load_config(args.config, overrides, real_data=args.real_data)
    check_run_spares_inputs(config, args.config, evaluate=args.evaluate, model=args.model, on=args.on)
    if args.evaluate:
        return _evaluate(config, args)
    if args.model or args.steps is not None or args.on != "heldout":
        raise ConfigError("--model, --steps and --on belong to --evaluate")
    train(config, resume=not args.no_resume, quiet=args.quiet)
    return 0


# What a run writes in output_dir (see train_diffusion/train.py): files replaced, and folders that
# are replaced or pruned whole (checkpoints, the model folder, previews, held-out figures).
RUN_FILES = ("config.yaml", "versions.json", "steps_autoencoder.csv", "steps_ldm.csv", "curves_autoencoder.png",
             "curves_ldm.png")
RUN_FOLDERS = ("autoencoder", "ldm", "previews", "model", "heldout")


def _source_files(config: dict) -> list[Path]:
    """Every file (or DICOM folder) the config's data sources read, dataset listings included."""
    from tumorsyn.io.layouts import discover_cases

    paths: list[Path] = []
    for key in ("tumor_sources", "healthy_sources", "holdout_sources"):
        for src in config["data"][key]:
            if src.get("dataset"):
                root = Path(src["dataset"])
                paths += [root] if root.is_file() else [root / "dataset.json"]
                paths += [p for case in discover_cases(root) for p in case.files]
            else:
                tumors = src.get("tumor") or []
                paths += [Path(p) for p in (src["ct"], src.get("labels"), *([tumors] if isinstance(tumors, str)
                                                                           else tumors)) if p]
    for host in config["evaluation"]["hosts"]:
        if host != "example":
            paths += [Path(host["ct"]), Path(host["labels"])]
    return paths


def check_run_spares_inputs(config: dict, config_path: str | None, *, evaluate: bool = False,
                            model: str | None = None, on: str = "heldout") -> None:
    """Before any work: nothing the run writes in output_dir may be the config file or a data file it reads.

    A run folder's own ``config.yaml`` given as CONFIG is refused too: the run would rewrite it.
    """
    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs

    run_dir = check_out_folder(config["output_dir"], option="output_dir (--out)")
    inputs = [config_path, *_source_files(config)]
    if evaluate:
        from train_diffusion.evaluate import EVALUATION_FOLDERS

        heldout = run_dir / EVALUATION_FOLDERS[on]
        check_outputs_spare_inputs([heldout / n for n in ("heldout.json", "heldout.png", "hosts.json", "hosts.png")],
                                   [*inputs, Path(model) if model else run_dir / "model"], folders=[heldout],
                                   option="output_dir (--out)")
        return
    check_outputs_spare_inputs([run_dir / n for n in RUN_FILES], inputs,
                               folders=[run_dir / n for n in RUN_FOLDERS], option="output_dir (--out)")


def _evaluate(config: dict, args: argparse.Namespace) -> int:
    import sys

    from train_diffusion.evaluate import evaluate_model, summary_line

    if args.samples < 0 or (args.steps is not None and args.steps < 1):
        raise ConfigError("--samples must be >= 0 and --steps >= 1")
    log = (lambda *m: None) if args.quiet else (lambda *m: print(*m, file=sys.stderr, flush=True))
    result = evaluate_model(config, model_dir=args.model, samples=args.samples, steps=args.steps, device=args.device,
                            grain=args.grain, on=args.on, log=log)
    print(summary_line(result))
    return 0
