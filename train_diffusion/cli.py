"""``tumorsyn train-diffusion CONFIG.yaml [--set key=value ...]``: autoencoder + latent diffusion training."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Train the diffusion generator in two stages as CONFIG says (configs/diffusion/*.yaml): the
autoencoder (L1 + KL or VQ + patch adversarial loss) on tumour and healthy organ crops resampled to
data.spacing_mm (mm) in the HU window data.hu_window, then the latent diffusion UNet that inpaints a
blanked tumour region. Writes <output_dir>/model/ (config.json + *.safetensors) for
`tumorsyn generate --method diffusion --model DIR`, with loss curves (CSV + PNG), preview PNGs and
resumable checkpoints: started again, a run continues from its last checkpoint.
Under `accelerate launch` the same command trains on several GPUs or nodes."""

EXAMPLES = """\
examples:
  tumorsyn train-diffusion configs/diffusion/tiny_cpu.yaml --out runs/tiny
  tumorsyn train-diffusion configs/diffusion/ircadb_liver_early.yaml --set autoencoder.steps=200 --set ldm.steps=400
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
    parser.add_argument("--stage", choices=["all", "autoencoder", "ldm"], help="train one stage only (overrides train.stage)")
    parser.add_argument("--no-resume", action="store_true", help="refuse to continue a run folder that has checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no log lines")
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
    config = load_config(args.config, overrides)
    train(config, resume=not args.no_resume, quiet=args.quiet)
    return 0
