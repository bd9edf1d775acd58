"""``tumorsyn reader-study build / add-reader / serve / analyze``: blinded real-vs-synthetic reading."""
from __future__ import annotations

import argparse
import sys

from tumorsyn.cli.common import non_negative_float, non_negative_int, positive_float

DESCRIPTION = """\
Run a blinded reader study: can radiologists tell synthetic tumours from real ones?
  build       crop real and synthetic lesions to one field of view and grid (HU images; the page sets the
              window), balance them by organ and size bin, shuffle with a recorded seed; the answer key is written
              apart (STUDY/key/) and never served
  add-reader  issue a sign-in token for a reader (or --admin for the progress page)
  serve       the rating web app on your machine (ratings in STUDY/ratings.sqlite)
  analyze     accuracy, sensitivity, specificity, ROC AUC (DeLong interval), exact Clopper-Pearson 95 % intervals,
              binomial test, Cohen's or Fleiss' kappa, 'not visible' answers apart, splits by organ and size
              bin, reading behaviour; report.json, report.md, PNG plots"""

EXAMPLES = """\
examples:
  tumorsyn generate --example --organ liver --size-mm 5-20 --per-scan 10 --out synth/
  tumorsyn reader-study build --real real_cases.csv --synthetic synth/ --out study/ --per-organ 10 --seed 1
  tumorsyn reader-study add-reader study/ --name "reader 1"
  tumorsyn reader-study add-reader study/ --name admin --admin
  tumorsyn reader-study serve study/ --port 8765
  tumorsyn reader-study analyze study/ --out report/ --csv

real_cases.csv has a header ct,mask[,organ,label] and one row per CT + tumour mask (paths relative to the CSV).
See docs/reader_study.md for the whole protocol."""


def _fraction(text: str) -> float:
    """A tolerance: a finite number >= 0 (0.4 = 40 %)."""
    return non_negative_float(text, meaning="a fraction: 0.4 = 40 %")


def _fov(text: str) -> float | None:
    """``--fov-mm``: a positive number of mm, or ``whole`` (the whole axial slice) -> None."""
    return None if text.strip().lower() == "whole" else positive_float(text)


def _window(text: str) -> tuple[float, float]:
    """``W400/L40`` or ``400,40`` -> (width, level) in HU."""
    cleaned = text.upper().replace("W", "").replace("L", "").replace("/", ",")
    try:
        width, level = (float(v) for v in cleaned.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window like W400/L40") from None
    if width <= 0:
        raise argparse.ArgumentTypeError(f"window width in {text!r} must be > 0 HU")
    return width, level


def _views(text: str) -> tuple[str, ...]:
    views = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in views if v not in ("axial", "coronal", "sagittal")]
    if bad or not views:
        raise argparse.ArgumentTypeError(f"{text!r}: views are axial, coronal, sagittal (comma-separated)")
    return ("axial",) + tuple(v for v in ("coronal", "sagittal") if v in views)


def register(subparsers) -> None:
    from tumorsyn.cli.common import positive_int
    from tumorsyn.organs import ORGANS

    parser = subparsers.add_parser("reader-study", help="blinded real-vs-synthetic reader studies: build, serve, analyze",
                                   description=DESCRIPTION, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="reader_study_command", metavar="{build,add-reader,serve,analyze}")

    build = sub.add_parser("build", help="write a blinded, balanced, shuffled study folder",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Crop every lesion to the same field of view (mm), resample to the same pixel "
                                       "and slice size, store HU (the page opens at --window), pair real with "
                                       "synthetic lesions of the same organ and size bin, shuffle with --seed. Writes "
                                       "STUDY/study.json, STUDY/items/ (16-bit HU PNGs without metadata) and "
                                       "STUDY/key/answer_key.json. Same "
                                       "inputs and seed give the same bytes.",
                           epilog="example:\n  tumorsyn reader-study build --real real.csv --synthetic synth/ "
                                  "--out study/ --design single --per-organ 20 --seed 3")
    build.add_argument("--real", required=True, action="append", metavar="CSV_OR_DIR",
                       help="real cases: a CSV with columns ct,mask[,organ,label] or a folder of <id>_ct.nii.gz + "
                            "<id>_tumor.nii.gz pairs (repeatable)")
    build.add_argument("--synthetic", required=True, action="append", metavar="MANIFEST_OR_DIR",
                       help="synthetic cases: a `tumorsyn generate` output folder or its manifest.jsonl (repeatable)")
    build.add_argument("--out", required=True, metavar="STUDY", help="study folder to create (new or empty)")
    build.add_argument("--design", choices=["single", "2afc"], default="single",
                       help="single: each case rated real/synthetic + confidence 1-5; 2afc: pairs, pick the "
                            "synthetic one (default single)")
    build.add_argument("--per-organ", type=positive_int, metavar="N",
                       help="real/synthetic pairs per organ, spread over size bins (default: all that balance allows)")
    build.add_argument("--seed", type=int, default=0, help="seed of every random choice; recorded (default 0)")
    build.add_argument("--real-organ", choices=ORGANS, default="liver",
                       help="organ of real cases without an organ column (default liver)")
    build.add_argument("--fov-mm", type=_fov, default=150.0, metavar="MM|whole",
                       help="side of the square in-plane field of view, mm, or 'whole' for the whole axial slice "
                            "(default 150)")
    build.add_argument("--depth-mm", type=positive_float, default=64.0,
                       help="extent of the axial stack along the body axis, mm (default 64)")
    build.add_argument("--pixel-mm", type=positive_float, default=None,
                       help="in-plane pixel size of every image, mm (default 0.5; 0.8 with --fov-mm whole)")
    build.add_argument("--slice-mm", type=positive_float, default=2.0, help="axial slice distance, mm (default 2)")
    build.add_argument("--window", type=_window, default=(400.0, 40.0), metavar="W400/L40",
                       help="window width/level in HU the page opens with; readers may switch to the abdomen "
                            "(W400/L40) or liver (W150/L90) preset or drag it (default W400/L40)")
    build.add_argument("--marker", choices=["box", "crosshair", "off"], default="box",
                       help="lesion marker drawn by the page: a box around the lesion, a crosshair pointing at "
                            "it, or none (default box)")
    build.add_argument("--views", type=_views, default=("axial",), metavar="axial[,coronal,sagittal]",
                       help="axial stack, plus one coronal and/or sagittal reformat through the lesion")
    build.add_argument("--jitter", type=float, default=0.25, metavar="FRACTION",
                       help="largest lesion offset from the crop centre, as a fraction of the field of view "
                            "(default 0.25)")
    build.add_argument("--min-diameter-mm", type=positive_float, default=3.0,
                       help="ignore mask components smaller than this maximum 3D diameter, mm (default 3)")
    build.add_argument("--size-bins-mm", default="10,20", metavar="E1,E2",
                       help="size-bin edges on the maximum 3D diameter, mm (default 10,20)")
    build.add_argument("--harmonise", "--harmonize", action="store_true",
                       help="resample every case to the coarsest source pixel size and slice spacing among the "
                            "chosen cases before rendering (instead of pairing only cases whose source scans match)")
    build.add_argument("--pixel-tolerance", type=_fraction, default=0.4, metavar="FRACTION",
                       help="without --harmonise: a real and a synthetic case are paired only when the coarser "
                            "source pixel is at most 1 + FRACTION times the finer (default 0.4)")
    build.add_argument("--slice-tolerance", type=_fraction, default=0.5, metavar="FRACTION",
                       help="the same for the source slice spacing along the body axis (default 0.5)")
    build.add_argument("--practice", type=non_negative_int, default=0, metavar="N",
                       help="N practice cases shown first, with feedback, not scored: even in the single design "
                            "(half real), pairs in 2afc; drawn from cases the scored set does not use (default 0)")
    build.add_argument("--workers", type=positive_int, default=1,
                       help="processes reading and rendering scans; the study's bytes do not depend on it (default 1)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(handler=_build)

    reader = sub.add_parser("add-reader", help="issue a reader (or admin) sign-in token",
                            description="Register a reader and print their token (shown once; only its hash is "
                                        "stored). Each reader gets their own case order, drawn from the study seed.")
    reader.add_argument("study", metavar="STUDY", help="study folder")
    reader.add_argument("--name", required=True, help="reader's name or code, unique in the study")
    reader.add_argument("--admin", action="store_true", help="an admin token: sees progress at /admin, rates nothing")
    reader.add_argument("--host", default="127.0.0.1", help="host used in the printed sign-in link")
    reader.add_argument("--port", type=int, default=8765, help="port used in the printed sign-in link")
    reader.set_defaults(handler=_add_reader)

    serve = sub.add_parser("serve", help="run the rating web app (Starlette + uvicorn)",
                           description="Serve the study to readers. Ratings are committed to STUDY/ratings.sqlite "
                                       "before each reply; stop with Ctrl-C and start again at any time. The answer "
                                       "key is never read. Listen on 127.0.0.1 unless readers come over a network you "
                                       "trust (then put it behind HTTPS).")
    serve.add_argument("study", metavar="STUDY", help="study folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.set_defaults(handler=_serve)

    analyze = sub.add_parser("analyze", help="statistics, report.md, report.json and plots",
                             description="Per-reader and pooled accuracy, sensitivity and specificity (positive = "
                                         "synthetic) with exact Clopper-Pearson 95 % intervals, ROC AUC from "
                                         "the confidence scale with a DeLong interval, binomial test against chance, "
                                         "Cohen's (2 readers) or Fleiss' (3+) kappa, 'not visible' answers counted "
                                         "apart, splits by organ and size bin, reading time, slices, window and zoom.")
    analyze.add_argument("study", metavar="STUDY", help="study folder")
    analyze.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder (created)")
    analyze.add_argument("--key", metavar="JSON", help="answer key, if moved out of STUDY/key/")
    analyze.add_argument("--csv", action="store_true", help="also export every rating with its truth to ratings.csv")
    analyze.set_defaults(handler=_analyze)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _build(args) -> int:
    from tumorsyn.errors import ConfigError

    from reader_study.build import build_study
    from reader_study.render import RenderSettings

    try:
        bins = tuple(float(v) for v in args.size_bins_mm.split(",") if v.strip())
        # A whole slice (400-500 mm) at 0.8 mm is about a CT's own 512-pixel matrix.
        pixel_mm = args.pixel_mm if args.pixel_mm is not None else (0.8 if args.fov_mm is None else 0.5)
        settings = RenderSettings(fov_mm=args.fov_mm, depth_mm=args.depth_mm, pixel_mm=pixel_mm,
                                  slice_mm=args.slice_mm, window_hu=args.window[0], level_hu=args.window[1],
                                  views=args.views, jitter_fraction=args.jitter, marker=args.marker)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = build_study(args.real, args.synthetic, args.out, design=args.design, per_organ=args.per_organ,
                      seed=args.seed, settings=settings, real_organ=args.real_organ,
                      min_diameter_mm=args.min_diameter_mm, bins_mm=bins, workers=args.workers, quiet=args.quiet,
                      harmonise=args.harmonise, pixel_tolerance=args.pixel_tolerance,
                      slice_tolerance=args.slice_tolerance, practice=args.practice)
    import json

    study = json.loads((out / "study.json").read_text())
    if not args.quiet:
        scored = len(study["items"]) - study.get("practice_items", 0)
        print(f"study: {out} ({scored} {args.design} items"
              + (f" + {study['practice_items']} practice" if study.get("practice_items") else "")
              + f"); answer key: {out / 'key' / 'answer_key.json'}")
        grid = study["grid"]
        if grid["policy"] == "harmonised":
            print(f"grid: every case resampled to {grid['pixel_mm']:g} mm pixels and {grid['slice_mm']:g} mm slices "
                  "(--harmonise)")
        else:
            print(f"grid: source scans matched within {100 * grid['pixel_tolerance']:.0f} % (pixel) and "
                  f"{100 * grid['slice_tolerance']:.0f} % (slice): pixels {grid['pixel_mm'][0]:g}-"
                  f"{grid['pixel_mm'][1]:g} mm, slices {grid['slice_mm'][0]:g}-{grid['slice_mm'][1]:g} mm")
    return 0


def _add_reader(args) -> int:
    from reader_study.store import add_reader

    token = add_reader(args.study, args.name, admin=args.admin)
    page = "admin" if args.admin else ""
    print(f"token for {args.name}: {token}")
    print(f"sign-in link: http://{args.host}:{args.port}/{page}#token={token}")
    return 0


def _serve(args) -> int:
    import uvicorn

    from reader_study.app import create_app

    app = create_app(args.study)
    print(f"serving {args.study} on http://{args.host}:{args.port}/ (admin: /admin); Ctrl-C stops", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _analyze(args) -> int:
    from pathlib import Path

    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside

    from reader_study.analyze import analyze_study
    from reader_study.build import KEY_PATH

    # Before any work: the report may not replace the study's files or the answer key it reads.
    study = Path(args.study)
    check_out_folder(args.out)
    check_outputs_spare_inputs(
        [output_path_inside(args.out, n) for n in ("report.json", "report.md", "roc.png", "accuracy_by_size.png",
                                                   "ratings.csv")],
        [study / "study.json", study / "ratings.sqlite", args.key or study / KEY_PATH])
    report = analyze_study(args.study, args.out, key=args.key, export_csv=args.csv)
    pooled = report["pooled"]
    acc = pooled["accuracy"]
    line = f"{report['ratings']} ratings by {report['readers']} reader(s)"
    if acc["value"] is not None:
        line += (f": accuracy {100 * acc['value']:.1f} % of {acc['n']} judged (95 % CI {100 * acc['ci95'][0]:.1f}-"
                 f"{100 * acc['ci95'][1]:.1f}), binomial p = {pooled['binomial_p']:.3g}")
    if pooled["not_visible"]:
        line += f", {pooled['not_visible']} 'not visible'"
    if pooled.get("auc") is not None:
        line += f", AUC {pooled['auc']:.3f}"
    print(line)
    print(f"report: {args.out}/report.md")
    return 0
