"""``tumorsyn evaluate``: per-lesion, per-patient and Dice figures of predictions on real tumours.

A thin layer over :mod:`tumorsyn.metrics`: parse, pair the files, evaluate, write the report.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from functools import partial

from tumorsyn.cli.common import bin_edges_mm, int_list, non_negative_float, positive_int, progress
from tumorsyn.errors import ConfigError

__all__ = ["register", "run"]

EXAMPLES = """examples:
  tumorsyn evaluate --pred preds/ --ref labelsTs/ --labels decathlon --out report_real/
  tumorsyn evaluate --pred probs/ --ref tumours/ --organ-mask livers/ --match iou0.5 \\
      --min-volume-mm3 20 --bins 10,20 --out report_strict/
  tumorsyn evaluate --pred detection_maps/ --ref labels/ --match picai --out report_picai/
  tumorsyn evaluate --pred probs/ --ref tumours/ --size-convention radius --volume-sweep --out report_small/
  tumorsyn evaluate --compare report_real_only/ report_real_synthetic/ --out compare/

Files pair by case id: the file name without .nii/.nii.gz and without trailing _0000, _pred, _seg,
_tumor, _tumour, _label, _labels, _gt, _organ (or give a CSV with the columns case_id,path); a folder
from `segment predict` can be given as it is (its <id>_organ files are not read as tumours, and are
the organ masks for --organ-mask). A prediction stored
as floating point with values in [0, 1] is a probability map: binary at p >= 0.5, FROC from each
component's maximum probability. With --organ-mask, both masks are cut to the organ first, so predicted
components outside it are not false positives. --match picai reproduces picai_eval (PI-CAI, PANORAMA):
one-to-one matching at IoU >= 0.1 on detection maps (no 0.5 cut), with AP, AUROC and its FROC.
See docs/evaluate.md."""

# Presets with a tumour label; "binary" means any non-zero voxel is tumour.
_PRESETS_WITH_TUMOUR = ("binary", "decathlon", "kits")


def _fp_rates(text: str) -> str | tuple[float, ...]:
    """A named set of FROC operating points, or a list of positive rates."""
    from tumorsyn.metrics.froc import FP_RATE_SETS

    if text in FP_RATE_SETS:
        return text
    try:
        rates = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        rates = ()
    if not rates or not all(0 < r < float("inf") for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r} is neither {' nor '.join(FP_RATE_SETS)} nor a list of "
                                         f"positive rates like 0.5,1,2")
    return rates


def _volume_list(text: str) -> str | tuple[float, ...]:
    if text == "default":
        return text
    try:
        values = tuple(non_negative_float(v) for v in text.split(",") if v.strip())
    except argparse.ArgumentTypeError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of volumes in mm^3 like 10,100,1000")
    return values


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the ``tumorsyn`` parser."""
    parser = subparsers.add_parser(
        "evaluate", help="detection (per lesion, by size) and segmentation figures on real tumours",
        description="Measure how well predicted tumour masks find and outline REAL tumours:\n"
                    "per-lesion sensitivity by size (maximum 3D diameter, mm) with Wilson 95 % intervals,\n"
                    "false positives per scan, per-patient sensitivity and specificity, per-case Dice and\n"
                    "surface Dice (2 mm), and an FROC curve for probability maps. Writes report.json,\n"
                    "report.md, lesions.csv and PNG plots. With --compare, sets two reports side by side\n"
                    "with McNemar's test on the paired lesions.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", metavar="DIR_OR_CSV", help="predicted tumour masks or probability maps (NIfTI folder, file, or case_id,path CSV)")
    parser.add_argument("--ref", metavar="DIR_OR_CSV", help="reference (manual) tumour masks, same forms as --pred")
    parser.add_argument("--organ-mask", metavar="DIR_OR_CSV", help="organ masks: restrict lesions and predictions to the organ")
    parser.add_argument("--organ-label", type=int_list, metavar="K[,K]",
                        help="label value(s) of the organ in --organ-mask files (default: any non-zero)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", choices=_PRESETS_WITH_TUMOUR, default=None, metavar="PRESET",
                        help=f"label preset giving the tumour label(s): {', '.join(_PRESETS_WITH_TUMOUR)} "
                             f"(default binary: any non-zero voxel is tumour)")
    labels.add_argument("--tumor-label", type=int_list, metavar="K[,K]", help="tumour label value(s) in --ref and --pred")
    parser.add_argument("--out", metavar="REPORT_DIR", help="folder for the report (created; files replaced)")
    parser.add_argument("--match", choices=("any", "iou0.5", "dice0.1", "centroid", "picai"), default="any",
                        help="detection criterion (default any overlap; iou0.5: IoU > 0.5 with one predicted component; "
                             "picai: picai_eval's one-to-one matching at IoU >= 0.1 on detection maps, plus AP and AUROC)")
    parser.add_argument("--picai-extract", action="store_true",
                        help="with --match picai: turn softmax maps into detection maps with "
                             "report_guided_annotation.extract_lesion_candidates, as PI-CAI does")
    parser.add_argument("--min-volume-mm3", type=non_negative_float, default=0.0, metavar="V",
                        help="ignore predicted components smaller than V mm^3 (default 0: every component counts)")
    parser.add_argument("--size-convention", choices=("max-diameter", "radius", "diameter"), default="max-diameter",
                        help="size bins: max-diameter (default: maximum 3D diameter <10, 10-20, >20 mm), radius "
                             "(equivalent-sphere radius [0-5), [5-10), [10-15), [15-20), >=20 mm, SyntheticTumors) "
                             "or diameter (equivalent-sphere diameter [0-10) ... >=40 mm)")
    parser.add_argument("--bins", type=bin_edges_mm, default=None, metavar="MM[,MM]",
                        help="size bin edges in mm of the convention's size (default 10,20: <10, 10-20, >20 mm)")
    parser.add_argument("--fp-rates", type=_fp_rates, default="luna16", metavar="NAME|R[,R]",
                        help="false positives per scan at which FROC sensitivity is read: luna16 (default, "
                             "1/8 ... 8), deeplesion (0.5 ... 16) or a list")
    parser.add_argument("--volume-sweep", nargs="?", const="default", type=_volume_list, default=None,
                        metavar="MM3[,MM3]",
                        help="patient level: call a scan positive when its predicted tumour volume >= T mm^3, "
                             "for T in 1 ... 99000 (1-2-5 steps) or the given list")
    parser.add_argument("--surface-tolerance-mm", type=non_negative_float, default=None, metavar="MM",
                        help="surface Dice tolerance in mm (default 2)")
    parser.add_argument("--compare", nargs=2, metavar=("A_REPORT", "B_REPORT"),
                        help="compare two reports (folders or report.json) of the same reference instead of evaluating")
    parser.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), metavar="N",
                        help="processes for evaluating cases (default: CPU count, at most 8)")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--no-checksums", action="store_true", help="skip the SHA-256 of the input files")
    parser.add_argument("--seed", type=int, default=0,
                        help="accepted for uniformity with other commands; evaluation draws nothing at random")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    parser.set_defaults(handler=partial(run, parser=parser))
    return parser


def _tumour_labels(args) -> tuple[int, ...] | None:
    if args.tumor_label is not None:
        if not args.tumor_label:
            raise ConfigError("--tumor-label needs at least one label value")
        return tuple(args.tumor_label)
    if args.labels in (None, "binary"):
        return None
    from tumorsyn.io.labels import LABEL_PRESETS

    return tuple(LABEL_PRESETS[args.labels]["lesion"])


def run(args, parser: argparse.ArgumentParser | None = None) -> int:
    """Handler of ``tumorsyn evaluate``; returns the exit code."""
    def usage(message: str) -> None:
        if parser is None:
            raise ConfigError(message)
        parser.error(message)  # exits with code 2

    if args.compare:
        if args.pred or args.ref or args.organ_mask:
            usage("--compare takes two reports; do not give --pred/--ref/--organ-mask with it")
        return _run_compare(args)
    missing = [flag for flag, value in (("--pred", args.pred), ("--ref", args.ref), ("--out", args.out)) if not value]
    if missing:
        usage(f"the following arguments are required: {', '.join(missing)} (or use --compare A_REPORT B_REPORT)")

    from tumorsyn import metrics

    if args.picai_extract and args.match != "picai":
        usage("--picai-extract goes with --match picai")
    if args.match == "picai" and args.min_volume_mm3 > 0:
        usage("--min-volume-mm3 does not go with --match picai: picai_eval counts every candidate")
    from tumorsyn.metrics.froc import FP_RATE_SETS
    from tumorsyn.metrics.summary import VOLUME_SWEEP_MM3

    bins = metrics.size_convention(args.size_convention, args.bins).bins_mm
    fp_name = args.fp_rates if isinstance(args.fp_rates, str) else "custom"
    fp_rates = FP_RATE_SETS[args.fp_rates] if isinstance(args.fp_rates, str) else args.fp_rates
    volumes = VOLUME_SWEEP_MM3 if args.volume_sweep == "default" else args.volume_sweep
    tolerance = metrics.SURFACE_TOLERANCE_MM if args.surface_tolerance_mm is None else args.surface_tolerance_mm
    tumour_labels = _tumour_labels(args)
    organ_labels = tuple(args.organ_label) if args.organ_label else None
    cases = metrics.pair_cases(args.ref, args.pred, args.organ_mask)
    _check_report_spares_inputs(args.out, [args.ref, args.pred, args.organ_mask],
                                [p for c in cases for p in (c.reference, c.prediction, c.organ_mask)],
                                names=REPORT_FILES, plots=not args.no_plots)
    bar = partial(_bar, quiet=args.quiet)
    results = metrics.evaluate_dataset(
        cases, workers=args.workers, progress=bar, match=args.match, min_volume_mm3=args.min_volume_mm3,
        bins_mm=bins, tolerance_mm=tolerance, tumour_labels=tumour_labels, organ_labels=organ_labels,
        checksums=not args.no_checksums, size_convention=args.size_convention, picai_extract=args.picai_extract)
    conv = metrics.conventions(match=args.match, min_volume_mm3=args.min_volume_mm3, bins_mm=bins,
                               tolerance_mm=tolerance, organ_restricted=args.organ_mask is not None,
                               tumour_labels=tumour_labels, organ_labels=organ_labels,
                               size_convention_name=args.size_convention, fp_rates=fp_rates, fp_rates_name=fp_name,
                               volume_thresholds_mm3=volumes, picai_extract=args.picai_extract)
    summary = metrics.summarize(results, bins_mm=bins, size_convention=args.size_convention, fp_rates=fp_rates,
                                volume_thresholds_mm3=volumes)
    report = metrics.build_report(
        results, summary=summary, conventions=conv, versions=metrics.versions(),
        sources={"pred": args.pred, "ref": args.ref, "organ_mask": args.organ_mask},
        command="tumorsyn " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] else None)
    metrics.write_report(args.out, report, plots=not args.no_plots)
    if not args.quiet:
        print(_one_screen(report, args.out))
    return 0


# Every file a report or a comparison may hold (plots included): none may be an input.
REPORT_FILES = ("report.json", "report.md", "lesions.csv", "sensitivity_by_size.png", "froc.png")
COMPARE_FILES = ("compare.json", "compare.md", "compare_sensitivity.png")


def _check_report_spares_inputs(out: str, sources, files, *, names, plots: bool) -> None:
    """Before any work: --out must be a folder, and no report file may be an input (or inside one)."""
    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside

    check_out_folder(out)
    # A source CSV or single file is read too; a source folder is only listed, not read whole.
    inputs = [p for p in (*sources, *files) if p is not None and not os.path.isdir(p)]
    names = [n for n in names if plots or not n.endswith(".png")]
    check_outputs_spare_inputs([output_path_inside(out, n) for n in names], inputs)


def _bar(iterable, total, *, quiet: bool):
    return progress(iterable, total=total, desc="evaluate", unit="case", quiet=quiet)


def _one_screen(report: dict, out: str) -> str:
    """A few lines for the terminal; the full figures are in the report files."""
    s = report["summary"]
    ls = s["lesion_sensitivity"]

    def pct(p: dict) -> str:
        return "n/a" if p["value"] is None else f"{100 * p['value']:.1f} % [{p['k']}/{p['n']}]"

    bins = ", ".join(f"{row['bin']}: {pct(row)}" for row in ls["by_size"])
    seg = s["segmentation"]["dice_per_case"]
    dice = "n/a" if seg["mean"] is None else f"{seg['mean']:.3f}"
    picai = s.get("picai")
    extra = ""
    if picai:
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        extra = f"\npicai: AP {fmt(picai['AP'])}, AUROC {fmt(picai['AUROC'])}, score {fmt(picai['score'])}"
    return (f"{s['n_cases']} scans, {s['n_lesions']} lesions; lesion sensitivity {pct(ls['overall'])} ({bins}); "
            f"FP/scan {s['false_positives']['per_scan']:.2f}; mean Dice {dice}{extra}\n"
            f"report: {os.path.join(out, 'report.md')}")


def _run_compare(args) -> int:
    from tumorsyn import metrics

    a, b = (metrics.load_report(p) for p in args.compare)
    if args.out:
        _check_report_spares_inputs(args.out, [a["_path"], b["_path"]], [], names=COMPARE_FILES,
                                    plots=not args.no_plots)
    comparison = metrics.compare_reports(a, b)
    if args.out:
        metrics.write_comparison(args.out, comparison, plots=not args.no_plots)
    print(metrics.render_comparison(comparison))
    return 0
