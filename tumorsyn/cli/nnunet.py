"""``tumorsyn nnunet``: make nnU-Net v2 train with synthetic tumours.

``install-trainer`` places the shim module through which nnU-Net finds ``nnUNetTrainerTumorSyn``
(:mod:`tumorsyn.integrations.nnunet.shim`); ``configure`` writes the synthesis settings beside a
dataset's plans (:mod:`tumorsyn.integrations.nnunet.settings`). See docs/nnunet.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tumorsyn.cli.common import device, int_list, positive_int, range_mm

__all__ = ["register", "run_install", "run_configure"]

EXAMPLES = """examples:
  tumorsyn nnunet install-trainer
  tumorsyn nnunet configure -d 501 --organ liver --prob 0.5 --size-mm 5-20 --method rules
  nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerTumorSyn
  tumorsyn nnunet install-trainer --uninstall

See docs/nnunet.md."""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``nnunet`` subcommand (with ``install-trainer`` and ``configure``) to the ``tumorsyn`` parser."""
    from tumorsyn.organs import ORGANS

    parser = subparsers.add_parser(
        "nnunet", help="train nnU-Net v2 with synthetic tumours written into its patches on the fly",
        description="Train nnU-Net v2 with synthetic tumours written into its training patches on the fly\n"
                    "(trainer nnUNetTrainerTumorSyn).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="nnunet_command", metavar="ACTION")
    install = actions.add_parser(
        "install-trainer", help="place the shim through which nnU-Net finds nnUNetTrainerTumorSyn",
        description="nnU-Net finds trainers only inside its own package: write a small module\n"
                    "nnUNetTrainerTumorSyn.py into nnunetv2/training/nnUNetTrainer/ that imports tumorsyn's\n"
                    "trainer (idempotent; a file of that name tumorsyn did not write is never touched).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    install.add_argument("--uninstall", action="store_true", help="remove the shim instead")
    install.add_argument("--target", metavar="DIR",
                         help="trainer folder to write to (default: the installed nnunetv2's training/nnUNetTrainer)")
    install.set_defaults(handler=run_install)

    configure = actions.add_parser(
        "configure", help="write the synthesis settings (tumorsyn_nnunet.json) beside a dataset's plans",
        description="Write tumorsyn_nnunet.json beside the plans of an nnU-Net dataset\n"
                    "($nnUNet_preprocessed/Dataset<ID>_<NAME>/), or to --out; nnUNetTrainerTumorSyn reads it\n"
                    "(or the file named by $TUMORSYN_NNUNET_CONFIG).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = configure.add_mutually_exclusive_group(required=True)
    where.add_argument("-d", "--dataset", metavar="ID_OR_NAME", help="dataset id (501) or name (Dataset501_Liver)")
    where.add_argument("--out", metavar="FILE", help="write the settings to this file instead")
    configure.add_argument("--organ", choices=ORGANS, required=True, help="host organ of the tumours")
    configure.add_argument("--prob", type=float, default=0.5, help="probability that a patch gets tumours (default 0.5)")
    configure.add_argument("--method", default="rules", help="generator: rules, ca or diffusion (default rules)")
    configure.add_argument("--size-mm", type=range_mm, default=(5.0, 20.0), metavar="LOW-HIGH",
                           help="equivalent-sphere diameter range in mm (default 5-20)")
    configure.add_argument("--count", type=positive_int, default=1, help="tumours per selected patch (default 1)")
    configure.add_argument("--organ-label", type=int_list, metavar="K[,K]",
                           help="organ label value(s) (default: the dataset.json label named like the organ)")
    configure.add_argument("--tumor-label", type=int, metavar="K",
                           help="tumour label value (default: the dataset.json label named tumor/tumour/lesion)")
    configure.add_argument("--channel", type=int, default=0, help="the CT input channel (default 0)")
    configure.add_argument("--device", type=device, default="cpu",
                           help="where GPU-capable generators run (default cpu; see docs/nnunet.md)")
    configure.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                           help="generator option, VALUE as JSON or text (repeatable), e.g. model=/models/liver")
    configure.set_defaults(handler=run_configure)
    parser.set_defaults(handler=lambda args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_install(args) -> int:
    """Handler of ``tumorsyn nnunet install-trainer``."""
    from tumorsyn.integrations.nnunet.shim import TRAINER_NAME, install_trainer, uninstall_trainer

    if args.uninstall:
        path, action = uninstall_trainer(args.target)
        print(f"{action}: {path}" if action == "removed" else f"{action} (no {path})")
    else:
        path, action = install_trainer(args.target)
        print(f"{action}: {path}")
        if action != "already installed":
            print(f"train with: nnUNetv2_train DATASET 3d_fullres FOLD -tr {TRAINER_NAME}")
    return 0


def _option(text: str) -> tuple[str, object]:
    from tumorsyn.errors import ConfigError

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--option {text!r} is not KEY=VALUE")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value  # plain text, e.g. a path


def _dataset_folder(dataset: str) -> Path:
    from tumorsyn.errors import ConfigError, InputError

    root = os.environ.get("nnUNet_preprocessed")
    if not root:
        raise ConfigError("nnUNet_preprocessed is not set; set it, or give --out FILE")
    name = f"Dataset{int(dataset):03d}_*" if dataset.isdigit() else dataset
    hits = sorted(p for p in Path(root).glob(name) if p.is_dir())
    if len(hits) != 1:
        raise InputError(f"{'no' if not hits else 'more than one'} preprocessed dataset {dataset!r} here; plan and "
                         "preprocess it first (nnUNetv2_plan_and_preprocess)", path=root)
    return hits[0]


def _is_settings_file(path: Path) -> bool:
    """Whether ``path`` holds tumorsyn nnU-Net settings (which configure may replace)."""
    from tumorsyn.errors import ConfigError
    from tumorsyn.integrations.nnunet.settings import load_settings

    try:
        load_settings(path)
    except (ConfigError, OSError):
        return False
    return True


def run_configure(args) -> int:
    """Handler of ``tumorsyn nnunet configure``."""
    from tumorsyn.errors import ConfigError, InputError
    from tumorsyn.integrations.nnunet.settings import SETTINGS_FILE, TumorSynSettings
    from tumorsyn.io.writers import atomic_path

    values = {"organ": args.organ, "prob": args.prob, "method": args.method, "size_mm": list(args.size_mm),
              "count": args.count, "channel": args.channel, "device": args.device,
              "options": dict(_option(text) for text in args.option)}
    if args.organ_label:
        values["organ_labels"] = list(args.organ_label)
    if args.tumor_label is not None:
        values["tumor_label"] = args.tumor_label
    folder = None if args.out else _dataset_folder(args.dataset)
    path = Path(args.out) if args.out else folder / SETTINGS_FILE
    settings = TumorSynSettings.from_dict(values, path=path)
    if path.exists() and not _is_settings_file(path):
        # --out onto dataset.json, the plans or any other input: never overwritten.
        raise InputError("exists and is not a tumorsyn settings file; left untouched (write the settings to a new "
                         "file)", path=path)
    from tumorsyn.generators import get_generator
    from tumorsyn.sampling import check_options

    get_generator(settings.method, device=settings.device)
    check_options(settings.method, settings.options)
    dataset_json = (folder / "dataset.json") if folder is not None else None
    if dataset_json is not None and dataset_json.is_file():
        try:
            labels = settings.labels(json.loads(dataset_json.read_text(encoding="utf-8")), path=dataset_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON ({exc})", path=dataset_json) from None
        print(f"organ label(s) {', '.join(map(str, labels[0]))}, tumour label {labels[1]}")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote: {path}")
    return 0
