"""``tumorsyn realism``: descriptors of real and synthetic lesions, compared per organ and size class.

A thin layer over :mod:`tumorsyn.metrics.realism`: find the scans, describe their lesions, compare,
write the report.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from functools import partial

from tumorsyn.cli.common import bin_edges_mm, int_list, positive_int, progress

__all__ = ["register", "run", "OUTPUT_FILES"]

OUTPUT_FILES = ("lesions.csv", "comparison.csv", "report.json", "report.md", "descriptors.png", "gallery.png")

EXAMPLES = """examples:
  tumorsyn realism --real Task03_Liver/ --synthetic runs/liver_rules/ --out realism_rules/
  tumorsyn realism --real real_lesions.csv --synthetic runs/ca/ --synthetic runs/rules/ --organ liver \\
      --bins-mm 10,20 --gallery 12 --out realism_all/

Each --real/--synthetic is a tumorsyn output folder (manifest.jsonl; organ and organ mask taken from it),
a dataset (dataset.json, imagesTr/ + labelsTr/, or a ct,labels CSV; --label-preset auto reads {0,1,2}
label maps as 1 organ, 2 tumour) or a CSV with the columns ct,lesion[,organ_mask][,organ][,case_id].
Lesions are 26-connected components; classes by equivalent diameter (default <20 / >=20 mm).
The AI reader is a cross-validated logistic regression telling real from synthetic lesions (AUC 0.5 =
indistinguishable); size descriptors are left out unless --classifier-size. See docs/realism.md."""


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``realism`` subcommand to the ``tumorsyn`` parser."""
    # Light imports only: every command's parser is built on each `tumorsyn` call.
    from tumorsyn.io.labels import LABEL_PRESETS, ORGANS

    parser = subparsers.add_parser(
        "realism", help="shape and intensity descriptors of real vs synthetic lesions; AI-reader AUC",
        description="Measure how realistic synthetic lesions are: the same descriptors (size, shape, contrast\n"
                    "in noise units, internal spread, edge sharpness, texture, depth, distance to vessels) for\n"
                    "real and synthetic lesions, compared per organ and size class (medians, IQRs, share inside\n"
                    "the real 5-95 % range, KS test) and the cross-validated AUC of a classifier that tries to\n"
                    "tell them apart. Writes lesions.csv, comparison.csv, report.json, report.md,\n"
                    "descriptors.png and gallery.png.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="append", metavar="DIR_OR_CSV", default=None,
                        help="real lesions: dataset, tumorsyn output folder or ct,lesion CSV (repeatable)")
    parser.add_argument("--synthetic", action="append", metavar="DIR_OR_CSV", default=None,
                        help="synthetic lesions, same forms (repeatable)")
    parser.add_argument("--out", metavar="DIR", help="folder for the report (created; its report files replaced)")
    parser.add_argument("--organ", choices=ORGANS, default=None,
                        help="organ of inputs that do not name it (datasets, CSV rows without an organ column)")
    parser.add_argument("--label-preset", choices=("auto", *LABEL_PRESETS), default="auto",
                        help="meaning of dataset label values (default auto: {0,1,2} = organ 1, tumour 2)")
    parser.add_argument("--organ-label", type=int_list, metavar="K[,K]", help="organ label value(s) in dataset label maps")
    parser.add_argument("--lesion-label", type=int_list, metavar="K[,K]", help="lesion label value(s) in dataset label maps")
    parser.add_argument("--bins-mm", type=bin_edges_mm, default=None, metavar="MM[,MM]",
                        help="size class edges, equivalent diameter in mm (default 20: <20 and >=20 mm)")
    parser.add_argument("--min-voxels", type=positive_int, default=3, metavar="N",
                        help="lesions with fewer voxels are listed but not described (default 3)")
    parser.add_argument("--classifier-size", action="store_true",
                        help="let the AI reader use the size descriptors too (default: left out, sizes are chosen by the user)")
    parser.add_argument("--classifier-scanner", action="store_true",
                        help="let the AI reader use the HU-unit intensity descriptors too (default: left out, they "
                             "track the scanner's noise and tell two real collections apart by scanner alone)")
    parser.add_argument("--gallery", type=int, default=8, metavar="N",
                        help="real and N synthetic lesions side by side in gallery.png (default 8; 0: none)")
    parser.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), metavar="N",
                        help="processes reading and describing scans (default: CPU count, at most 8)")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG")
    parser.add_argument("--no-checksums", action="store_true", help="skip the SHA-256 of the input files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifier folds and the gallery draw (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    parser.set_defaults(handler=partial(run, parser=parser))
    return parser


def run(args, parser: argparse.ArgumentParser | None = None) -> int:
    """Handler of ``tumorsyn realism``; returns the exit code."""
    from tumorsyn.errors import ConfigError

    missing = [flag for flag, value in (("--real", args.real), ("--synthetic", args.synthetic), ("--out", args.out))
               if not value]
    if missing:
        message = f"the following arguments are required: {', '.join(missing)}"
        if parser is None:
            raise ConfigError(message)
        parser.error(message)  # exits with code 2
    if args.gallery < 0:
        raise ConfigError(f"--gallery must be >= 0, got {args.gallery}")

    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside
    from tumorsyn.metrics.realism import SIZE_BINS_MM
    from tumorsyn.metrics.realism.compare import compare_descriptors
    from tumorsyn.metrics.realism.report import (build_realism_report, choose_gallery, realism_conventions,
                                                 render_outputs, write_outputs)
    from tumorsyn.metrics.realism.run import collect_sources, describe_sources

    bins = args.bins_mm or SIZE_BINS_MM
    sources = collect_sources(args.real, args.synthetic, organ=args.organ, preset=args.label_preset,
                              organ_labels=args.organ_label, lesion_labels=args.lesion_label)
    # Before any work: --out is a folder and no report file is one of the inputs (or inside one read whole).
    check_out_folder(args.out)
    inputs = [p for s in sources for p in (s.ct, s.lesion_file, s.organ_file)]
    inputs += [p for p in (*args.real, *args.synthetic) if not os.path.isdir(p)]
    check_outputs_spare_inputs([output_path_inside(args.out, n) for n in OUTPUT_FILES], inputs)

    bar = partial(_bar, quiet=args.quiet)
    described = describe_sources(sources, workers=args.workers, progress=bar, min_voxels=args.min_voxels,
                                 bins_mm=bins, thumbnails=args.gallery > 0 and not args.no_plots,
                                 checksums=not args.no_checksums)
    comparison = compare_descriptors(described["real"], described["synthetic"], include_size=args.classifier_size,
                                     include_scanner=args.classifier_scanner, seed=args.seed)
    conv = realism_conventions(bins_mm=bins, min_voxels=args.min_voxels, comparison_settings=comparison["settings"])
    command = ("tumorsyn " + " ".join(shlex.quote(a) for a in sys.argv[1:])) if sys.argv[1:2] == ["realism"] else None
    report = build_realism_report(described, comparison, conventions=conv, command=command,
                                  sources={"real": args.real, "synthetic": args.synthetic, "organ": args.organ,
                                           "label_preset": args.label_preset})
    report["conventions"]["gallery"] = {"per_cohort": args.gallery, "seed": args.seed,
                                        "view": "axial slice of largest lesion area, W400/L40, FOV max(30 mm, 2 x extent)"}
    files = render_outputs(report, gallery_real=choose_gallery(described["real"], args.gallery, seed=args.seed),
                           gallery_synthetic=choose_gallery(described["synthetic"], args.gallery, seed=args.seed),
                           plots=not args.no_plots)
    write_outputs(args.out, files)
    if not args.quiet:
        print(_one_screen(report, args.out))
    return 0


def _bar(iterable, total, *, quiet: bool):
    return progress(iterable, total=total, desc="realism", unit="scan", quiet=quiet)


def _one_screen(report: dict, out: str) -> str:
    """A few lines for the terminal; the full figures are in the report files."""
    lines = []
    for group in report["comparison"]["groups"]:
        reader = group["ai_reader"]
        auc = ("n/a" if reader["auc"] is None
               else f"{reader['auc']:.3f} [{reader['ci95'][0]:.3f}-{reader['ci95'][1]:.3f}]")
        lines.append(f"{group['organ']} {group['size_class']}: {group['n_real']} real, {group['n_synthetic']} "
                     f"synthetic lesions; AI-reader AUC {auc}")
    lines.append(f"report: {os.path.join(out, 'report.md')}")
    return "\n".join(lines)
