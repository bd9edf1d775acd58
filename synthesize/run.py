"""Run ``tumorsyn generate`` over many cases: shards, worker processes, resume after any kill."""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from tumorsyn.errors import ConfigError, InputError, TumorsynError, with_context
from tumorsyn.io.datasets import Case
from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside, safe_case_id
from tumorsyn.io.writers import TMP_PREFIX, atomic_path, remove_stale_temp_files
from tumorsyn.io.dicom_out import series_file_name
from synthesize.generate import (LAYOUT_NIFTI_ONLY, SAVE_STEPS_NIFTI_ONLY, GenerateOptions, generate_case,
                                 output_file_names, output_format_of, planned_ids, remove_outputs)
from synthesize.manifest import Manifest, manifest_name, read_records
from synthesize.dataset_out import DATASET_JSON, PLAN_NAME, finish_dataset, remove_dataset_json, write_plan
from tumorsyn.io.dataset_layouts import ORIGINAL_SUFFIX, original_id

__all__ = ["RunSummary", "run_generate", "resolve_shard", "select_shard", "check_run_spares_inputs"]

# Options that change what is written: a run folder must not mix outputs made with different ones.
_RUN_KEYS = ("organ", "method", "size_mm", "count", "per_scan", "seed", "label_preset", "organ_labels",
             "lesion_labels", "label_map", "preview", "allow_smaller", "appearance", "exophytic", "save_steps",
             "output_format", "extra")


@dataclass
class RunSummary:
    """What a run did: outputs written now, outputs found finished, and failed cases."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None
    label_note: str = ""  # how ``--label-preset auto`` was decided, for the closing line
    dataset: Path | None = None  # the dataset.json written (--out-layout nnunet/decathlon)
    dataset_note: str = ""  # why no dataset.json was written


def resolve_shard(shard) -> tuple[int, int] | None:
    """``(I, N)``, ``"auto"`` (RANK/WORLD_SIZE from accelerate/torchrun, or a SLURM array), or None."""
    if shard != "auto":
        return shard
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    return None


def select_shard(cases: list[Case], shard: tuple[int, int] | None) -> list[Case]:
    """Cases of shard I of N: every N-th case of the id-sorted list, starting at I."""
    if shard is None:
        return cases
    index, count = shard
    return sorted(cases, key=lambda c: c.case_id)[index::count]


def _check_run_file(out_dir: Path, options: GenerateOptions) -> None:
    wanted = {k: v for k, v in options.to_dict().items() if k in _RUN_KEYS}
    if options.out_layout is not None:
        wanted["out_layout"] = options.to_dict()["out_layout"]  # absent for the flat layout: run.json as before
    path = out_dir / "run.json"
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except json.JSONDecodeError:
            recorded = None
        if isinstance(recorded, dict):
            recorded.setdefault("output_format", "auto")  # run folders made before --output-format existed
        if recorded != wanted:
            diff = sorted(k for k in {*_RUN_KEYS, *wanted, *(recorded or {})} if (recorded or {}).get(k) != wanted.get(k))
            raise ConfigError(f"this folder holds a run made with other options ({', '.join(diff)}); "
                              "use another --out, or the same options to resume", path=out_dir)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def _finished(out_dir: Path, own_manifest: Manifest) -> set[str]:
    """Outputs with a manifest line and all their files; stale lines of this run's manifest are dropped."""
    done, stale = set(), set()
    for path in out_dir.glob("manifest*.jsonl"):
        for record in read_records(path):
            files = record.get("outputs", {}).values()
            if all((out_dir / name).exists() for name in files):
                done.add(record["output_id"])
            elif path == own_manifest.path:
                stale.add(record["output_id"])
    if stale - done:
        # A file was deleted after its line was written: it is made again, and listed once.
        own_manifest.drop(stale - done)
    return done


def check_run_spares_inputs(cases: list[Case], options: GenerateOptions, out_dir: Path, *, shard=None, specs=None,
                            inputs=()) -> None:
    """Before any work: every output of every case (all shards) lies in ``out_dir`` and touches no input.

    Outputs are the files of each output id, ``run.json``, the manifests and the temporary files
    the run may delete; inputs are every case's CT (a DICOM folder counts whole) and labels, the
    model folder and ``inputs``.
    """
    check_out_folder(out_dir)
    per_scan = 1 if specs else options.per_scan
    outputs = [out_dir / "run.json", out_dir / manifest_name(shard)]
    if options.out_layout is not None:
        outputs += [out_dir / DATASET_JSON, out_dir / PLAN_NAME, out_dir / "manifest.jsonl"]
    series_folders = []  # DICOM series outputs: folders the run replaces whole
    read = [*inputs, options.extra.get("model")]
    owner: dict[str, str] = {}
    layout_owner: dict[str, str] = {}  # dataset file name -> case id
    for case in cases:
        safe_case_id(case.case_id, path=case.ct)
        fmt = output_format_of(case.ct, options.output_format)
        if fmt == "dicom" and options.save_steps:
            raise ConfigError(SAVE_STEPS_NIFTI_ONLY, path=case.ct)
        if fmt == "dicom" and options.out_layout is not None:
            raise ConfigError(LAYOUT_NIFTI_ONLY, path=case.ct)
        read += [case.ct, case.labels]
        for oid in planned_ids(case.case_id, options, per_scan):
            original = options.out_layout is not None and oid == original_id(case.case_id)
            for role, name in output_file_names(oid, options, fmt, original=original).items():
                if options.out_layout is not None and layout_owner.setdefault(name, case.case_id) != case.case_id:
                    # Output ids themselves collide here: case X's copy X_orig and a case named X_orig.
                    raise ConfigError(f"cases {layout_owner[name]} and {case.case_id} would both write {name} (the "
                                      f"unmodified copy of case X is X{ORIGINAL_SUFFIX} with --include-originals, and "
                                      f"K outputs of case X are X_000 ...); give case ids in a CSV case_id column",
                                      path=case.ct)
                if owner.setdefault(name, oid) != oid:
                    raise ConfigError(f"outputs {owner[name]} and {oid} would both be written as {name} (a case id "
                                      f"ending in _ct, _tumor, ... loses that word in file names); give case ids in a "
                                      f"CSV case_id column", path=case.ct)
                path = output_path_inside(out_dir, name)
                (series_folders if fmt == "dicom" and role == "ct" else outputs).append(path)
    # Manifests are rewritten and stale temporary files deleted by name pattern.
    patterns = [(out_dir, "manifest*.jsonl"), (out_dir, f"{TMP_PREFIX}*.part")]
    patterns += [(out_dir / sub, f"{TMP_PREFIX}*.part") for sub in _dataset_folders(options)]
    if out_dir.is_dir():
        outputs += [p for folder, pattern in patterns for p in folder.glob(pattern) if not p.is_dir()]
    # A series folder is replaced whole: no input may lie in it (folders=), and none may be inside
    # it or be it (its slices, listed as outputs, would lie in the input folder).
    outputs += [folder / series_file_name(0) for folder in series_folders]
    check_outputs_spare_inputs(outputs, read, folders=series_folders, patterns=patterns)


def _dataset_folders(options: GenerateOptions) -> tuple[str, ...]:
    """Sub-folders of the run folder that outputs go into (none in the flat layout)."""
    return options.out_layout.subfolders if options.out_layout is not None else ()


def _work(case: Case, options: GenerateOptions, out_dir: str, skip: set[str], name_case: bool = False):
    """Worker entry: records, or the one-line error of a bad case (file first, then the case id if ``name_case``)."""
    try:
        return case.case_id, generate_case(case, options, out_dir, skip=skip), None
    except TumorsynError as exc:
        return case.case_id, [], str(with_context(exc, case_id=case.case_id if name_case else None))


def decide_label_preset(cases: list[Case], options: GenerateOptions, *, organ: str) -> tuple[str, str]:
    """What ``--label-preset auto`` means for this dataset, from the label values of ALL its cases.

    Every shard reads every case, so all shards (and every resume) reach the same answer; label maps
    that cannot be read are left out here and fail in their own case.

    Returns
    -------
    (str, str)
        The preset (``options.label_preset`` itself unless it is ``auto``) and a note for the log.

    Raises
    ------
    ConfigError
        No preset fits, or presets that mean different things fit: one line naming the label map
        (or the folder holding the label maps) and listing the values found and the presets.
    """
    from tumorsyn.io.labels import choose_label_preset, format_values, present_label_values
    from tumorsyn.io.scan import load_labels

    if options.label_preset != "auto":
        return options.label_preset, ""
    values: set[int] = set()
    read = []
    for case in cases:
        try:
            values |= present_label_values(load_labels(case.labels))
        except TumorsynError:
            continue
        read.append(case.labels)
    if not read:
        return "auto", ""
    where = "the label map" if len(read) == 1 else f"{len(read)} label maps"
    path = read[0] if len(read) == 1 else os.path.commonpath([str(Path(p).resolve().parent) for p in read])
    preset = choose_label_preset(values, organ, organ_labels=options.organ_labels, lesion_labels=options.lesion_labels,
                                 where=where, path=path)
    return preset, f"label preset auto -> {preset} (label values {format_values(values)} in {where})"


def _check_manifest_presets(out_dir: Path, preset: str) -> None:
    """A resumed ``auto`` run must not mix outputs made under another preset (the label maps changed)."""
    for path in sorted(out_dir.glob("manifest*.jsonl")):
        for record in read_records(path):
            if record.get("label_preset", preset) != preset:
                raise ConfigError(f"output {record.get('output_id')} in this folder was made with label preset "
                                  f"{record['label_preset']}, but the label maps now read as {preset}; use another "
                                  f"--out, or --label-preset {record['label_preset']}", path=out_dir)


def run_generate(cases: list[Case], options: GenerateOptions, out_dir: str | Path, *, shard=None, workers: int = 1,
                 quiet: bool = False, fail_fast: bool = False, specs=None, inputs=()) -> RunSummary:
    """Generate every output of ``cases`` into ``out_dir``, skipping outputs already finished.

    Parameters
    ----------
    cases : list of Case
    options : GenerateOptions
    out_dir : str or Path
        Created if needed. Holds the outputs, ``run.json`` and the manifest(s).
    shard : (int, int) or "auto", optional
        Work on shard I of N only (each shard writes its own manifest part).
    workers : int
        Worker processes (1 = in this process).
    quiet : bool
        No progress bar.
    fail_fast : bool
        Stop at the first bad case instead of going on and reporting it at the end.
    specs : list of TumorSpec, optional
        Replay these specs on the single case (``--from-spec``).
    inputs : sequence of path
        Files read besides the cases' CT and labels (dataset CSV, spec file): no output may touch them.
    """
    from tumorsyn.cli.common import progress

    out_dir = Path(out_dir)
    check_run_spares_inputs(cases, options, out_dir, shard=resolve_shard(shard), specs=specs, inputs=inputs)
    # Decided once, before anything is written, for the whole dataset (not per case, not per shard).
    preset, note = decide_label_preset(cases, options, organ=specs[0].organ if specs else options.organ)
    # Folders this run creates (the dataset folder of --out-layout nnunet may sit in a new --out): a run
    # that writes nothing removes them again.
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder ({exc.strerror})", path=out_dir) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError("output folder is not writable", path=out_dir)
    shard = resolve_shard(shard)
    fresh_run = not (out_dir / "run.json").exists()
    _check_run_file(out_dir, options)
    remove_stale_temp_files(out_dir)
    for sub in _dataset_folders(options):
        if (out_dir / sub).is_dir():
            remove_stale_temp_files(out_dir / sub)
    manifest = Manifest(out_dir / manifest_name(shard))
    done = _finished(out_dir, manifest)
    if options.label_preset == "auto" and preset != "auto":
        _check_manifest_presets(out_dir, preset)
    # run.json keeps "auto" (the option given); each manifest record gets the preset decided.
    options = replace(options, label_preset=preset)

    summary = RunSummary(manifest=manifest.path, label_note=note)
    todo = []
    per_scan = 1 if specs else options.per_scan
    for case in select_shard(cases, shard):
        ids = planned_ids(case.case_id, options, per_scan)
        summary.skipped.extend(i for i in ids if i in done)
        if any(i not in done for i in ids):
            todo.append(case)
    total = sum(len([i for i in planned_ids(c.case_id, options, per_scan) if i not in done]) for c in todo)
    if options.out_layout is not None:
        # Every shard plans the whole dataset; dataset.json waits for all of it, and goes away while it changes.
        write_plan(out_dir, [i for case in cases for i in planned_ids(case.case_id, options, per_scan)])
        if todo:
            remove_dataset_json(out_dir)
    bar = progress(total=total, desc="generate", quiet=quiet, unit="scan")

    def collect(case_id: str, records: list[dict], error: str | None) -> None:
        for record in records:
            try:
                manifest.append(record)
            except (InputError, OSError) as exc:
                # Without its line an output does not count: remove its files, say why in one line.
                remove_outputs(out_dir / name for name in record["outputs"].values())
                if isinstance(exc, OSError):
                    raise InputError(f"cannot append to the manifest ({exc.strerror or exc})", path=manifest.path) from None
                raise
            summary.written.append(record["output_id"])
            bar.update(1)
        if error is not None:
            summary.failed[case_id] = error
            if fail_fast or len(cases) == 1:
                # One scan (or --fail-fast): the error is the whole story, as a one-line message.
                raise InputError(error)

    try:
        if workers <= 1 or len(todo) <= 1:
            for case in todo:
                if specs is not None:
                    collect(case.case_id, generate_case(case, options, out_dir, skip=done, specs=specs), None)
                else:
                    collect(*_work(case, options, str(out_dir), done, len(cases) > 1))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_work, case, options, str(out_dir), done, len(cases) > 1) for case in todo]
                for future in as_completed(futures):
                    collect(*future.result())
    except BaseException:
        if not summary.written:
            _undo_empty_run(out_dir, created=created, fresh_run=fresh_run, manifest=manifest.path)
        raise
    finally:
        bar.close()
    if not summary.written and summary.failed:
        _undo_empty_run(out_dir, created=created, fresh_run=fresh_run, manifest=manifest.path)
        return summary
    if shard is not None and shard[1] > 1:
        # A shard with nothing to write still leaves its (empty) manifest: --merge checks every shard ran.
        manifest.path.touch(exist_ok=True)
    if options.out_layout is not None:
        if shard is not None and shard[1] > 1:
            summary.dataset_note = f"{DATASET_JSON} is written by --merge once every shard has run"
        elif summary.failed:
            summary.dataset_note = f"{DATASET_JSON} not written: {len(summary.failed)} case(s) failed"
        else:
            summary.dataset, summary.dataset_note = finish_dataset(out_dir)
    return summary


def _undo_empty_run(out_dir: Path, *, created: list[Path], fresh_run: bool, manifest: Path) -> None:
    """A run that wrote nothing leaves nothing: no run.json, no empty manifest, no new folder."""
    if fresh_run:
        (out_dir / "run.json").unlink(missing_ok=True)
        (out_dir / PLAN_NAME).unlink(missing_ok=True)
        if manifest.exists() and manifest.stat().st_size == 0:
            manifest.unlink()
    if created:
        # Empty dataset folders (imagesTr/ ...) made for outputs that were never finished go too.
        for sub in sorted((p for p in out_dir.iterdir() if p.is_dir()), reverse=True) if out_dir.is_dir() else ():
            try:
                sub.rmdir()
            except OSError:
                pass
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
