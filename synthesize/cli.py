"""``tumorsyn generate``: write tumours into one scan or a whole dataset."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tumorsyn.cli.common import device, int_list, positive_int, range_mm, shard
from tumorsyn.organs import APPEARANCES, LABEL_CONVENTIONS, ORGAN_PRESETS, ORGANS, join_names

# tumorsyn.io.dataset_layouts.OUT_LAYOUTS and DATASET_LABELS, spelled out so that `tumorsyn --help` does not
# import tumorsyn.io (nibabel); a test keeps them equal.
OUT_LAYOUTS = ("flat", "nnunet", "decathlon")
DATASET_LABELS = ("organ-tumor", "tumor")

DESCRIPTION = """\
Write synthetic tumours into healthy CT. For each output it writes <id>_ct.nii.gz (the input CT,
byte-identical outside the tumour's blend zone, same header and orientation), <id>_tumor.nii.gz
(uint8 label of the visible tumour), optionally <id>_label.nii.gz (0 background, 1 organ,
2 tumour) and <id>_preview.png; for a DICOM input, a DICOM series <id>_ct/ and DICOM-SEG objects
<id>_tumor.dcm (<id>_label.dcm) instead of the NIfTI files (see --output-format). It appends one
JSON line to manifest.jsonl with the complete tumour spec (replayable with --from-spec), seeds,
checksums and the measured size.
With --out-layout nnunet (or decathlon) it writes a dataset that nnU-Net v2 (or a Medical Segmentation
Decathlon tool) trains on as it is: DIR/Dataset<ID>_<NAME>/imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz
(0 background, 1 organ, 2 tumour: the synthetic tumours and the scan's own lesions), tumorsTr/<case>.nii.gz (the
synthetic tumour alone) and dataset.json, written last, once every case is finished; that folder is the run
folder (run.json, manifest.jsonl).
A run folder resumes: run the same command again and finished outputs are skipped."""

EXAMPLES = """\
examples:
  tumorsyn generate --example --organ liver --out demo --preview
  tumorsyn generate ct.nii.gz --labels seg.nii.gz --organ kidney --size-mm 10-20 --seed 3 --out out/
  tumorsyn generate dicom_series/ --labels seg.nii.gz --label-preset totalsegmentator --organ liver --out out/
  tumorsyn generate --dataset Task03_Liver/ --organ liver --per-scan 4 --workers 2 --out enriched/
  tumorsyn generate --dataset cases.csv --organ pancreas --shard 0/4 --out enriched_pancreas/   (then --merge)
  tumorsyn generate --dataset Task03_Liver/ --organ liver --out-layout nnunet --dataset-id 501 --dataset-name LiverTumorSyn --include-originals --out $nnUNet_raw
  tumorsyn generate ct.nii.gz --labels seg.nii.gz --from-spec out/manifest.jsonl --spec-id ct --out again/
"""


def _exophytic_rule() -> str:
    """Each organ's exophytic rule from the registry, for the --exophytic help (``%`` doubled for argparse)."""
    rules = [f"{p.exophytic_probability:.0%}% of {name} tumours" for name, p in ORGAN_PRESETS.items()
             if p.exophytic_probability > 0]
    return "; ".join(rules + ["none in other organs"])


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="write tumours into a scan or a dataset", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("input")
    source.add_argument("ct", nargs="?", help="CT scan: .nii/.nii.gz file or a DICOM series folder")
    source.add_argument("--labels", help="label map or binary organ mask on the CT's grid (NIfTI)")
    source.add_argument("--example", action="store_true",
                        help="use the bundled TotalSegmentator example CT (3 mm) and its organ labels")
    source.add_argument("--dataset", metavar="DIR_OR_CSV",
                        help="a decathlon folder (dataset.json), imagesTr/ + labelsTr/, or a CSV of ct,labels rows")
    source.add_argument("--case-id", help="id used in output names for a single scan (default: from the file name)")
    labels = parser.add_argument_group("labels")
    labels.add_argument("--label-preset", default="auto",
                        choices=["auto", *LABEL_CONVENTIONS],
                        help="meaning of the label values (default auto: decided once from the values of all label "
                             "maps, printed and recorded in the manifest; refused where presets that mean different "
                             "things fit, e.g. KiTS 1/2/3 vs TotalSegmentator for the kidney)")
    labels.add_argument("--organ-label", type=int_list, metavar="K[,K]", help="organ label value(s); overrides the preset")
    labels.add_argument("--lesion-label", type=int_list, metavar="K[,K]",
                        help="label value(s) of existing lesions to keep clear of; overrides the preset")
    tumour = parser.add_argument_group("tumours")
    tumour.add_argument("--organ", choices=ORGANS, help="host organ")
    tumour.add_argument("--method", default="rules", help="generator: rules (default), or any registered one")
    tumour.add_argument("--size-mm", type=range_mm, default=(5.0, 20.0), metavar="LOW-HIGH",
                        help="equivalent-sphere diameter range of each written tumour, in mm (default 5-20: early tumours)")
    tumour.add_argument("--count", type=positive_int, default=1, help="tumours per output scan; they never overlap (default 1)")
    tumour.add_argument("--per-scan", type=positive_int, default=1, help="outputs per input scan (default 1)")
    tumour.add_argument("--appearance", choices=[*APPEARANCES, "mix"],
                        help="tumour appearance for the rules generator (default: the organ preset, hypodense)")
    tumour.add_argument("--exophytic", choices=["auto", "yes", "no"], default="auto",
                        help=f"tumours bulging out of the organ (default auto: {_exophytic_rule()})")
    tumour.add_argument("--allow-smaller", action="store_true",
                        help="where the organ cannot hold the requested size, write a smaller tumour instead of failing")
    tumour.add_argument("--model", metavar="MODEL_DIR", help="with --method diffusion: the trained model folder "
                        "(from `tumorsyn train-diffusion`; a mixture's tumours are each drawn by the member their seed "
                        "names); its path and checksum are recorded in each spec")
    tumour.add_argument("--steps", type=positive_int, metavar="N",
                        help="with --method diffusion: sampling steps (default: the model's own)")
    tumour.add_argument("--seed", type=int, default=0, help="master seed; recorded in the manifest (default 0)")
    tumour.add_argument("--from-spec", metavar="JSON", help="replay recorded spec(s): a spec JSON, a manifest record, "
                        "or manifest.jsonl with --spec-id")
    tumour.add_argument("--spec-id", metavar="OUTPUT_ID", help="which manifest line --from-spec replays")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR", help="output folder (created; resumable)")
    output.add_argument("--output-format", choices=["auto", "dicom", "nifti"], default="auto",
                        help="auto (default): as the input; a DICOM series gives a derived DICOM series <id>_ct/ (every "
                             "slice's header kept, new UIDs, marked DERIVED) and DICOM-SEG <id>_tumor.dcm "
                             "(and <id>_label.dcm); nifti: NIfTI files for any input; dicom: refused for NIfTI input")
    output.add_argument("--label-map", action="store_true", help="also write <id>_label.nii.gz (0/1 organ/2 tumour)")
    output.add_argument("--save-steps", type=int_list, metavar="N[,N]",
                        help="with --method ca and --count 1: also write the tumour as grown after these automaton "
                             "steps (<id>_stepNNN_ct/_tumor.nii.gz), e.g. 10,20,40")
    output.add_argument("--preview", action="store_true", help="also write <id>_preview.png")
    output.add_argument("--out-layout", choices=OUT_LAYOUTS, default="flat",
                        help="flat (default): <id>_ct/<id>_tumor files in --out; nnunet: an nnU-Net v2 raw dataset "
                             "--out/Dataset<ID>_<NAME>/ (imagesTr/<case>_0000.nii.gz, labelsTr/, dataset.json); "
                             "decathlon: a Medical Segmentation Decathlon folder --out/Task<ID>_<NAME>/")
    output.add_argument("--dataset-id", type=int, metavar="ID", help="with --out-layout nnunet/decathlon: the "
                        "dataset's number, 1-999 (e.g. 501 gives Dataset501_<NAME>)")
    output.add_argument("--dataset-name", metavar="NAME", help="with --out-layout nnunet/decathlon: the dataset's "
                        "name (letters, digits, '-', and '_' for nnunet)")
    output.add_argument("--dataset-labels", choices=DATASET_LABELS, default="organ-tumor",
                        help="classes of labelsTr/: organ-tumor (default: 0 background, 1 organ, 2 tumour) or tumor "
                             "(0 background, 1 tumour); tumour = the synthetic tumours and the scan's own lesions")
    output.add_argument("--include-originals", action="store_true",
                        help="with --out-layout nnunet/decathlon: also copy every input case unmodified into the "
                             "dataset, as <case>_orig")
    run = parser.add_argument_group("running")
    run.add_argument("--device", type=device, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                     help="where generators with a GPU kernel run (ca, diffusion); every device writes the same bytes "
                          "(default auto)")
    run.add_argument("--workers", type=positive_int, default=1, help="worker processes for datasets (default 1)")
    run.add_argument("--shard", type=shard, metavar="I/N", help="work on shard I of N (0-based), or 'auto' "
                     "(RANK/WORLD_SIZE of accelerate/torchrun, or a SLURM array)")
    run.add_argument("--merge", action="store_true", help="merge the shard manifests in --out into manifest.jsonl and exit; with "
                     "--out-layout nnunet/decathlon (and --dataset-id, --dataset-name), also write dataset.json once "
                     "every case of every shard is finished")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first bad case (default: go on, report at the end)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_command)


def _dataset_layout(args: argparse.Namespace):
    """The :class:`~tumorsyn.io.dataset_layouts.DatasetLayout` of --out-layout nnunet/decathlon, or None (flat).

    Raises
    ------
    ConfigError
        Dataset options with the flat layout, a missing --dataset-id/--dataset-name, or an option
        a dataset cannot hold (--label-map, --save-steps, --output-format dicom).
    """
    from tumorsyn.errors import ConfigError
    from tumorsyn.io.dataset_layouts import DatasetLayout

    if args.out_layout == "flat":
        given = [f"--{name.replace('_', '-')}" for name in ("dataset_id", "dataset_name", "include_originals")
                 if getattr(args, name) not in (None, False)]
        if args.dataset_labels != "organ-tumor":
            given.append("--dataset-labels")
        if given:
            raise ConfigError(f"{', '.join(given)} go with --out-layout nnunet or decathlon (the flat layout writes "
                              f"<id>_ct/<id>_tumor files); add --out-layout nnunet")
        return None
    missing = [option for option, value in (("--dataset-id", args.dataset_id), ("--dataset-name", args.dataset_name))
               if value is None]
    if missing:
        raise ConfigError(f"--out-layout {args.out_layout} needs {' and '.join(missing)} (the dataset folder is "
                          f"{'Dataset' if args.out_layout == 'nnunet' else 'Task'}<ID>_<NAME>, e.g. --dataset-id 501 "
                          f"--dataset-name LiverTumorSyn)")
    if args.merge:
        return DatasetLayout(args.out_layout, args.dataset_id, args.dataset_name)
    if args.label_map:
        raise ConfigError(f"--label-map writes the flat layout's <id>_label.nii.gz; with --out-layout {args.out_layout} "
                          f"the label map is labelsTr/<case>.nii.gz already: drop --label-map")
    if args.save_steps:
        raise ConfigError(f"--save-steps writes the flat layout only; drop it with --out-layout {args.out_layout}")
    if args.output_format == "dicom":
        raise ConfigError(f"--output-format dicom does not go with --out-layout {args.out_layout}: the dataset's "
                          f"files are NIfTI (.nii.gz); leave --output-format out")
    return DatasetLayout(args.out_layout, args.dataset_id, args.dataset_name, labels=args.dataset_labels,
                         include_originals=args.include_originals)


def run_command(args: argparse.Namespace) -> int:
    from tumorsyn.errors import ConfigError, InputError
    from tumorsyn.io.cases import Case, case_ids, example_case, require_label_maps
    from tumorsyn.io.layouts import discover_cases
    from tumorsyn.io.guard import safe_case_id
    from synthesize.generate import GenerateOptions, load_spec_file
    from synthesize.manifest import merge_manifests
    from synthesize.run import run_generate

    layout = _dataset_layout(args)
    run_dir = Path(args.out) / layout.folder_name if layout is not None else Path(args.out)
    if args.merge:
        from synthesize.dataset_out import finish_dataset, layout_of_run

        if layout is not None and not (run_dir / "run.json").is_file():
            raise InputError("no generate run in this dataset folder (no run.json); give --merge the --out and "
                             "--out-layout, --dataset-id, --dataset-name of the shard runs", path=run_dir)
        path = merge_manifests(run_dir)
        print(f"merged into {path}")
        if layout_of_run(run_dir) is not None:
            written, why = finish_dataset(run_dir)
            if written is None:
                raise InputError(why, path=run_dir)
            print(f"dataset complete: {written}")
        return 0
    sources = sum(bool(x) for x in (args.ct, args.example, args.dataset))
    if sources != 1:
        raise ConfigError("give exactly one input: a CT path (with --labels), --example, or --dataset")
    specs = load_spec_file(args.from_spec, args.spec_id) if args.from_spec else None
    if args.save_steps:
        method = specs[0].method if specs else args.method
        if method != "ca" or (len(specs) if specs else args.count) != 1:
            raise ConfigError("--save-steps needs --method ca and one tumour per output (--count 1)")
        if min(args.save_steps) < 1:
            raise ConfigError("--save-steps takes positive step counts, e.g. 10,20,40")
    if args.case_id is not None:
        safe_case_id(args.case_id)
    if specs is None and not args.organ:
        raise ConfigError(f"--organ is required ({join_names(ORGANS)})")
    if args.example:
        case = example_case()
        if args.label_preset == "auto":
            args.label_preset = "totalsegmentator"
        cases = [Case(args.case_id or case.case_id, case.ct, case.labels)]
    elif args.dataset:
        if specs is not None:
            raise ConfigError("--from-spec replays one scan; give a CT and --labels, not --dataset")
        cases = discover_cases(args.dataset)
        require_label_maps(cases, command="tumorsyn generate")
    else:
        if not args.labels:
            raise ConfigError("--labels is required with a CT (a label map or a binary organ mask)")
        # The one naming rule of datasets (tumorsyn.io.cases.case_ids): .../3Dircadb1.7/ct.nii.gz is 3Dircadb1.7.
        cases = [Case(args.case_id or case_ids([args.ct])[0], Path(args.ct), Path(args.labels))]

    options = GenerateOptions(
        organ=specs[0].organ if specs else args.organ, method=specs[0].method if specs else args.method,
        size_mm=tuple(args.size_mm), count=len(specs) if specs else args.count, per_scan=args.per_scan,
        seed=args.seed, label_preset=args.label_preset, organ_labels=args.organ_label, lesion_labels=args.lesion_label,
        label_map=args.label_map, preview=args.preview, allow_smaller=args.allow_smaller, appearance=args.appearance,
        exophytic={"auto": None, "yes": True, "no": False}[args.exophytic], device=args.device,
        save_steps=tuple(sorted(set(args.save_steps))) if args.save_steps else None,
        # A dataset is NIfTI whatever the input (nnU-Net and the Decathlon read .nii.gz).
        output_format="nifti" if layout is not None else args.output_format, out_layout=layout)
    if options.method == "diffusion" and specs is None and not args.model:
        raise ConfigError("--method diffusion needs --model MODEL_DIR (a folder from `tumorsyn train-diffusion`)")
    if args.model or args.steps:
        if options.method != "diffusion" or specs is not None:
            raise ConfigError("--model and --steps go with --method diffusion (a replayed spec names its own model)")
        options.extra = {key: value for key, value in (("model", args.model), ("steps", args.steps)) if value}
    if specs is not None:
        options.extra = {"from_spec": [s.to_dict() for s in specs]}
    else:
        # Once for the run, not once per case: an option the method does not take (--appearance
        # with --method ca) would otherwise be dropped without a word.
        from tumorsyn.sampling import check_options

        check_options(options.method, {**options.extra, "appearance": options.appearance})
    from tumorsyn.generators import get_generator

    get_generator(options.method, device=options.device)  # a GPU that is not there: refused before any case
    # Files read besides each case's CT and labels: the dataset listing and the replayed spec file.
    read = [args.from_spec]
    if args.dataset:
        root = Path(args.dataset)
        read += [root] if root.is_file() else [root / "dataset.json", root / "imagesTr", root / "labelsTr"]
    summary = run_generate(cases, options, run_dir, shard=args.shard, workers=args.workers, quiet=args.quiet,
                           fail_fast=args.fail_fast, specs=specs, inputs=[p for p in read if p and Path(p).exists()])
    if not args.quiet:
        note = f"; {summary.label_note}" if summary.label_note else ""
        print(f"wrote {len(summary.written)} output(s), {len(summary.skipped)} already finished, "
              f"{len(summary.failed)} case(s) failed{note}; manifest: {summary.manifest}", file=sys.stderr)
        if summary.dataset is not None:
            print(f"dataset complete: {summary.dataset}", file=sys.stderr)
    if summary.dataset_note:
        # Said even with --quiet: a dataset without dataset.json is not ready for nnU-Net yet.
        print(f"tumorsyn: {summary.dataset_note}", file=sys.stderr)
    if summary.failed:
        # Failures are always reported: --quiet only hides the progress bar and the summary.
        for error in summary.failed.values():
            print(f"tumorsyn: failed: {error}", file=sys.stderr)
        return 1
    return 0
