"""Write tumours into one scan: load, sample specs, apply them, write outputs, return manifest records."""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import tumorsyn
from tumorsyn.errors import ConfigError, InputError, TumorsynError, with_context
from tumorsyn.io import load_labels, load_scan, write_ct_like, write_mask_like
from tumorsyn.io.checksums import sha256_file
from tumorsyn.io.dataset_layouts import DatasetLayout, original_id
from tumorsyn.io.datasets import Case
from tumorsyn.io.names import output_name
from tumorsyn.io.writers import remove_path
from tumorsyn.io.labels import (choose_label_preset, forbidden_mask_from_labels, format_values, label_values,
                                lesion_mask_from_labels, organ_mask_from_labels)
from tumorsyn.io.scan import check_same_grid
from tumorsyn.lesion_size import equivalent_diameter_mm, max_diameter_mm, volume_ml
from tumorsyn.placement import PlacementContext
from tumorsyn.spec import TumorSpec
from tumorsyn.apply import Applied, TumorResult, apply_specs
from tumorsyn.sampling import sample_specs

__all__ = ["GenerateOptions", "OUTPUT_FORMATS", "generate_case", "output_format_of", "output_ids", "output_files",
           "output_file_names", "planned_ids",
           "resolve_label_preset", "load_spec_file"]

OUTPUT_FORMATS = ("auto", "dicom", "nifti")
SAVE_STEPS_NIFTI_ONLY = ("--save-steps writes its steps as NIfTI only, and this input is a DICOM series; add "
                         "--output-format nifti")
LAYOUT_NIFTI_ONLY = ("--out-layout nnunet and decathlon write NIfTI (.nii.gz) datasets, and this input would be "
                     "written as a DICOM series; use --output-format nifti")


@dataclass
class GenerateOptions:
    """Every option of ``tumorsyn generate`` that changes what is written (recorded in run.json).

    Attributes
    ----------
    organ : str
    method : str
    size_mm : (float, float)
        Range of each tumour's equivalent-sphere diameter in mm.
    count : int
        Tumours per output scan.
    per_scan : int
        Outputs written for each input scan.
    seed : int
        Master seed; each output's own seed derives from (seed, case id, output index).
    label_preset : str
        ``auto``, or a key of :data:`tumorsyn.io.LABEL_PRESETS`.
    organ_labels, lesion_labels : tuple of int, optional
        Explicit label values (override the preset).
    label_map : bool
        Also write ``<id>_label.nii.gz`` (0 background / 1 organ / 2 tumour).
    preview : bool
        Also write ``<id>_preview.png``.
    allow_smaller : bool
        Shrink the size range where the organ cannot hold it, instead of failing.
    appearance : str, optional
        Rules generator appearance (``hypodense`` ... or ``mix``).
    exophytic : bool, optional
        Force or forbid exophytic (kidney) tumours.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'}
        Where generators with a GPU kernel run (not recorded: every device writes the same bytes).
    save_steps : tuple of int, optional
        For ``method="ca"``: also write the tumour as grown after each of these automaton steps.
    output_format : {'auto', 'dicom', 'nifti'}
        ``auto``: as the input (a DICOM series gives a DICOM series and DICOM-SEG objects, a NIfTI
        file gives NIfTI); ``dicom`` needs DICOM inputs; ``nifti`` always writes NIfTI.
    out_layout : DatasetLayout, optional
        Write an nnU-Net v2 or Decathlon dataset (``imagesTr/``, ``labelsTr/`` ...; output files
        named by :meth:`DatasetLayout.file_names`) instead of the flat ``<id>_ct`` / ``<id>_tumor``
        folder (None).
    """

    organ: str
    method: str = "rules"
    size_mm: tuple = (5.0, 20.0)
    count: int = 1
    per_scan: int = 1
    seed: int = 0
    label_preset: str = "auto"
    organ_labels: tuple | None = None
    lesion_labels: tuple | None = None
    label_map: bool = False
    preview: bool = False
    allow_smaller: bool = False
    appearance: str | None = None
    exophytic: bool | None = None
    device: str = "auto"
    save_steps: tuple | None = None
    output_format: str = "auto"
    extra: dict = field(default_factory=dict)
    out_layout: DatasetLayout | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["size_mm"] = list(self.size_mm)
        for key in ("organ_labels", "lesion_labels", "save_steps"):
            data[key] = None if data[key] is None else list(data[key])
        return data


def output_ids(case_id: str, per_scan: int) -> list[str]:
    """Output ids of a case: the case id itself, or ``<case>_NNN`` when several outputs are made."""
    return [case_id] if per_scan == 1 else [f"{case_id}_{k:03d}" for k in range(per_scan)]


def planned_ids(case_id: str, options: GenerateOptions, per_scan: int) -> list[str]:
    """Every output id a case gives: :func:`output_ids`, then its unmodified copy with ``include_originals``."""
    ids = output_ids(case_id, per_scan)
    if options.out_layout is not None and options.out_layout.include_originals:
        ids.append(original_id(case_id))
    return ids


def _require_dicom_writer(ct, option: str) -> None:
    """DICOM output needs pydicom and highdicom (the ``dicom`` extra): refused before any work without them."""
    import importlib.util

    missing = [name for name in ("pydicom", "highdicom") if importlib.util.find_spec(name) is None]
    if missing:
        how = "--output-format dicom" if option == "dicom" else "a DICOM series input (--output-format auto)"
        raise ConfigError(f"{how} writes a DICOM series and DICOM-SEG, which needs {' and '.join(missing)}: "
                          f"pip install 'tumorsyn[dicom]', or give --output-format nifti", path=ct)


def output_format_of(ct: str | Path, option: str) -> str:
    """``dicom`` or ``nifti``: what ``--output-format option`` writes for the input CT ``ct``.

    Raises
    ------
    ConfigError
        ``dicom`` for an input that is not a DICOM series folder (naming the input).
    """
    if option not in OUTPUT_FORMATS:
        raise ConfigError(f"--output-format {option!r}: choose one of {', '.join(OUTPUT_FORMATS)}")
    is_series = Path(ct).is_dir()  # a CT folder is read as one DICOM series (tumorsyn.io.scan)
    if option == "dicom" and not is_series:
        raise ConfigError("--output-format dicom needs a DICOM series folder as input, and this is a NIfTI file "
                          "(no DICOM headers to keep); use --output-format nifti or auto", path=ct)
    fmt = ("dicom" if is_series else "nifti") if option == "auto" else option
    if fmt == "dicom":
        _require_dicom_writer(ct, option)
    return fmt


def output_file_names(output_id: str, options: GenerateOptions, fmt: str = "nifti", *,
                      original: bool = False) -> dict[str, str]:
    """Role -> file name of one output, by :func:`tumorsyn.io.names.output_name` (a DICOM series is a folder
    named without an extension: role ``ct`` with ``fmt="dicom"``); with ``options.out_layout``, the dataset's
    names (paths relative to the dataset folder; an ``original``, the unmodified copy of an input, has
    ``ct`` and ``label`` only)."""
    if options.out_layout is not None:
        return options.out_layout.file_names(output_id, original=original, preview=options.preview)
    dicom = fmt == "dicom"
    names = {"ct": output_name(output_id, "ct", "" if dicom else ".nii.gz"),
             "tumor": output_name(output_id, "tumor", ".dcm" if dicom else ".nii.gz")}
    if options.label_map:
        names["label"] = output_name(output_id, "label", ".dcm" if dicom else ".nii.gz")
    if options.preview:
        names["preview"] = output_name(output_id, "preview", ".png")
    for step in options.save_steps or ():
        for role in ("ct", "tumor"):
            names[f"step{step:03d}_{role}"] = output_name(output_id, f"step{step:03d}_{role}")
    return names


def output_files(output_id: str, options: GenerateOptions, fmt: str = "nifti") -> list[str]:
    """Names of every file one output may write (what ``_write_output`` names; a test keeps them in step).

    With ``fmt="dicom"`` the CT is a series folder, named without an extension.
    """
    return list(output_file_names(output_id, options, fmt).values())


def resolve_label_preset(preset: str, labels: np.ndarray, *, organ: str, organ_labels=None, lesion_labels=None,
                         path=None) -> str:
    """``auto``: the one preset this label map's values fit (:func:`tumorsyn.io.labels.choose_label_preset`).

    A run over cases decides ``auto`` once from all their label maps (``synthesize/run.py``) and
    passes the answer down, so this per-map decision only serves a direct call with ``auto``.
    Any other preset is returned unchanged.

    Raises
    ------
    ConfigError
        When no preset fits, or presets that mean different things fit (naming ``path``).
    """
    if preset != "auto":
        return preset
    values = np.unique(labels)
    return choose_label_preset(values, organ, organ_labels=organ_labels, lesion_labels=lesion_labels,
                               where="the label map", path=path)


def _check_clear_of_labels(tumor: np.ndarray, forbidden: np.ndarray, labels: np.ndarray, *, preset: str,
                           output_id: str, path) -> None:
    """Refuse an output whose tumour covers an existing lesion, a cyst or another labelled structure."""
    hit = (tumor > 0) & forbidden
    if hit.any():
        raise InputError(f"output {output_id}: a synthetic tumour would cover {int(hit.sum())} voxel(s) labelled "
                         f"{format_values(np.unique(labels[hit]))}, which label preset {preset} (or --lesion-label) "
                         f"marks as a lesion, cyst or another structure; nothing was written for it; check "
                         f"--label-preset, --organ-label and --lesion-label", path=path)


def _output_seed(seed: int, case_id: str, index: int) -> int:
    # Seeds depend on the case and output index only, so shards and workers give the same bytes
    # whatever order they run in.
    sequence = np.random.SeedSequence([int(seed), zlib.crc32(case_id.encode()), int(index)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def load_spec_file(path: str | Path, spec_id: str | None = None) -> list[TumorSpec]:
    """Specs from a spec JSON, a list of specs, a manifest record, or a manifest (``spec_id`` picks a line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read spec file ({exc.strerror})", path=path) from None
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if spec_id is not None:
                records = [r for r in records if r.get("output_id") == spec_id]
            if len(records) != 1:
                raise ConfigError(f"manifest holds {len(records)} matching records; pick one with --spec-id OUTPUT_ID", path=path)
            data = records[0]
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc})", path=path) from None
    if isinstance(data, dict) and "tumors" in data:
        data = [t["spec"] for t in data["tumors"]]
    items = data if isinstance(data, list) else [data]
    try:
        return [TumorSpec.from_dict(item) for item in items]
    except ConfigError as exc:
        raise ConfigError(str(exc), path=path) from None


def _measure(result: TumorResult, organ: np.ndarray, all_tumors: np.ndarray, before: np.ndarray, after: np.ndarray,
             written: np.ndarray, scan) -> dict:
    """Size and HU of one written tumour, as the output files hold it.

    The label is the one written into ``*_tumor`` (the union of the output's labels holds it
    unchanged); HU are the written CT's: ``after`` where ``written``, encoded in the file's type and
    read back, the input elsewhere.
    """
    spec, slices, label = result.spec, result.slices, result.label_box
    spacing = spec.spacing_mm
    organ_rest = organ[slices] & ~all_tumors[slices].astype(bool)
    stored = before[slices].copy()
    changed = written[slices]
    stored[changed] = scan.decode(scan.encode(after[slices][changed]))
    return {
        "equivalent_diameter_mm": round(equivalent_diameter_mm(label, spacing), 3),
        "max_diameter_mm": round(max_diameter_mm(label, spacing), 3),
        "volume_ml": round(volume_ml(label, spacing), 4),
        "mean_hu_tumor": round(float(stored[label].mean()), 2) if label.any() else None,
        "mean_hu_tumor_before": round(float(before[slices][label].mean()), 2) if label.any() else None,
        "mean_hu_organ_nearby": round(float(stored[organ_rest].mean()), 2) if organ_rest.any() else None,
        "center_ras_mm": [round(v, 3) for v in scan.world_mm(spec.center_vox)],
    }


def remove_outputs(paths) -> None:
    """Delete output files and series folders (used when an output cannot be completed)."""
    for path in paths:
        remove_path(path)


def _label_centre(result: TumorResult):
    """Centre of mass of a tumour's label (a grown tumour need not be centred on its seed)."""
    from scipy import ndimage

    if not result.label_box.any():
        return result.spec.center_vox
    local = ndimage.center_of_mass(result.label_box)
    return tuple(s.start + c for s, c in zip(result.slices, local))


def _derivation(output_id: str, organ_name: str, drawn: list[TumorSpec], inputs: dict):
    """What a DICOM output says it is, and the key its UIDs derive from (input checksum, output id, specs).

    Only the specs count, not how they came (sampled from ``--seed`` or replayed with ``--from-spec``),
    so a replay writes the same bytes, as it does for NIfTI.
    """
    from tumorsyn.io.dicom_out import Derivation

    specs = json.dumps([spec.to_dict() for spec in drawn], sort_keys=True)
    seed_text = ("tumour spec seed " if len(drawn) == 1 else "tumour spec seeds ") + ", ".join(
        str(spec.seed) for spec in drawn) + " (the spec is in the run's manifest.jsonl)"
    return Derivation(output_id=output_id, organ=organ_name, method=drawn[0].method, seed_text=seed_text,
                      input_key=inputs["ct_sha256"], uid_key=f"{inputs['ct_sha256']}|{output_id}|{specs}",
                      version=tumorsyn.__version__)


def _write_output(paths: dict, names: dict, output_id: str, options: GenerateOptions, scan, applied: Applied, tumor,
                  organ, organ_name, derivation=None, *, lesions=None, out_dir: Path | None = None) -> list[dict]:
    """Write the files of one output into ``paths`` (filled in as files are added); return tumour records.

    ``names`` maps roles to file names (:func:`output_file_names`), relative to ``out_dir`` (default:
    the CT's folder); with a ``derivation`` the CT is written as a DICOM series and the masks as
    DICOM-SEG objects. With ``options.out_layout`` the label map is the dataset's (``lesions``: the
    scan's own lesions, which stay tumour).
    """
    hu, ct_out = applied.source, applied.ct
    written = applied.written_mask()
    drawn = [one.spec for one in applied.tumors]
    out_dir = paths["ct"].parent if out_dir is None else out_dir
    combined = None
    if options.out_layout is not None:
        combined = options.out_layout.label_array(organ, lesions, tumor)
    elif options.label_map:
        combined = organ.astype(np.uint8)
        combined[tumor > 0] = 2
        if lesions is not None:
            combined[lesions] = 2  # the scan's own lesions are tumour too, never organ
    if derivation is not None:
        from tumorsyn.io.dicom_out import write_seg_like, write_series_like

        # The SEGs reference the new series: it is written first, and they are removed with it on failure.
        series = write_series_like(paths["ct"], scan, ct_out, written, derivation)
        write_seg_like(paths["tumor"], series, scan, tumor > 0, [("synthetic tumour", None)], derivation, role="tumor")
        if combined is not None:
            paths["label"] = out_dir / names["label"]
            write_seg_like(paths["label"], series, scan, combined, [(organ_name, organ_name), ("synthetic tumour", None)],
                           derivation, role="label")
    else:
        # Only voxels whose HU changed are re-encoded: the file keeps every other stored value.
        write_ct_like(paths["ct"], scan, ct_out, written)
        write_mask_like(paths["tumor"], scan, tumor)
        if combined is not None:
            paths["label"] = out_dir / names["label"]
            write_mask_like(paths["label"], scan, combined)
    tumors = [{"spec": one.spec.to_dict(), "measured": _measure(one, organ, tumor, hu, ct_out, written, scan)}
              for one in applied.tumors]
    if options.preview:
        from synthesize.preview import write_preview

        first = tumors[0]["measured"]
        title = (f"{output_id}: {len(drawn)} {organ_name} tumour(s), method {drawn[0].method}; first: "
                 f"{first['equivalent_diameter_mm']:.1f} mm eq. diameter, {first['mean_hu_tumor']} HU vs organ "
                 f"{first['mean_hu_organ_nearby']} HU")
        paths["preview"] = out_dir / names["preview"]
        centre = _label_centre(applied.tumors[0])
        write_preview(paths["preview"], hu, ct_out, tumor > 0, scan.spacing_mm, centre, title=title)
    if options.save_steps:
        from tumorsyn.generators.ca import grow_trajectory

        frames = grow_trajectory(hu, organ, scan.spacing_mm, drawn[0], save_steps=options.save_steps,
                                 device=options.device)
        trajectory = []
        for frame in frames:
            key = f"step{frame.step:03d}"
            paths[f"{key}_ct"] = out_dir / names[f"{key}_ct"]
            write_ct_like(paths[f"{key}_ct"], scan, frame.ct, frame.ct != hu)
            paths[f"{key}_tumor"] = out_dir / names[f"{key}_tumor"]
            write_mask_like(paths[f"{key}_tumor"], scan, frame.tumor)
            trajectory.append({"step": frame.step, "equivalent_diameter_mm": round(frame.diameter_mm, 3)})
        tumors[0]["trajectory"] = trajectory
    return tumors


def generate_case(case: Case, options: GenerateOptions, out_dir: str | Path, *, skip: set[str] = frozenset(),
                  specs: list[TumorSpec] | None = None) -> list[dict]:
    """Write the outputs of one case and return their manifest records (files first, then records).

    Parameters
    ----------
    case : Case
    options : GenerateOptions
    out_dir : str or Path
    skip : set of str
        Output ids already finished (resume).
    specs : list of TumorSpec, optional
        Replay these specs (``--from-spec``) instead of sampling.

    Raises
    ------
    TumorsynError
        One line naming a file first (the case's CT where the failure concerns no other file).
    """
    try:
        return _generate_case(case, options, out_dir, skip=skip, specs=specs)
    except TumorsynError as exc:
        raise with_context(exc, path=case.ct) from None


def _generate_case(case: Case, options: GenerateOptions, out_dir: str | Path, *, skip: set[str],
                   specs: list[TumorSpec] | None) -> list[dict]:
    out_dir = Path(out_dir)
    fmt = output_format_of(case.ct, options.output_format)
    if fmt == "dicom" and options.save_steps:
        raise ConfigError(SAVE_STEPS_NIFTI_ONLY, path=case.ct)
    if fmt == "dicom" and options.out_layout is not None:
        raise ConfigError(LAYOUT_NIFTI_ONLY, path=case.ct)
    scan = load_scan(case.ct)
    labels_scan = load_labels(case.labels)
    check_same_grid(scan, labels_scan)
    labels = label_values(labels_scan)
    organ_name = specs[0].organ if specs else options.organ
    preset = resolve_label_preset(options.label_preset, labels, organ=organ_name, organ_labels=options.organ_labels,
                                  lesion_labels=options.lesion_labels, path=case.labels)
    organ = organ_mask_from_labels(labels, organ_name, preset=preset, organ_labels=options.organ_labels,
                                   path=case.labels)
    lesions = lesion_mask_from_labels(labels, preset=preset, lesion_labels=options.lesion_labels)
    forbidden = forbidden_mask_from_labels(labels, organ, lesions)
    hu = scan.values()
    spacing = scan.spacing_mm
    inputs = {"ct": str(case.ct), "labels": str(case.labels),
              "ct_sha256": sha256_file(case.ct), "labels_sha256": sha256_file(case.labels)}

    context = None
    records = []
    for index, output_id in enumerate(output_ids(case.case_id, 1 if specs else options.per_scan)):
        if output_id in skip:
            continue
        started = time.perf_counter()
        output_seed = None
        if specs is None:
            if context is None:
                context = PlacementContext(organ, spacing, options.organ, ct_hu=hu, avoid=lesions.copy())
            context.avoid = lesions.copy()
            output_seed = _output_seed(options.seed, case.case_id, index)
            extra = dict(options.extra)
            if options.appearance:
                extra["appearance"] = options.appearance
            try:
                drawn = sample_specs(organ, spacing, count=options.count, organ=options.organ, method=options.method,
                                     size_mm=options.size_mm, rng=output_seed, context=context,
                                     allow_smaller=options.allow_smaller, exophytic=options.exophytic,
                                     device=options.device, **extra)
            except InputError as exc:
                raise with_context(exc, path=case.ct) from None
        else:
            drawn = specs
        try:
            applied = apply_specs(hu, organ, spacing, drawn, device=options.device)
            tumor = applied.tumor_mask()
        except InputError as exc:
            raise with_context(exc, path=case.ct) from None
        # Placement keeps clear of lesions, but a replayed spec or an exophytic bulge is not placed
        # here: whatever made it, nothing is written over a lesion, cyst or another structure.
        _check_clear_of_labels(tumor, forbidden, labels, preset=preset, output_id=output_id, path=case.labels)
        names = output_file_names(output_id, options, fmt)
        paths = {"ct": out_dir / names["ct"], "tumor": out_dir / names["tumor"]}
        if options.out_layout is not None:
            _make_parents(out_dir, names)
        derivation = None
        if fmt == "dicom":
            derivation = _derivation(output_id, organ_name, drawn, inputs)
        try:
            tumors = _write_output(paths, names, output_id, options, scan, applied, tumor, organ, organ_name,
                                   derivation, lesions=lesions, out_dir=out_dir)
        except BaseException:
            # An output is whole or absent: remove what this output already wrote.
            remove_outputs(paths.values())
            raise
        records.append(_record(output_id, case, organ_name=organ_name, method=drawn[0].method, preset=preset,
                               seed=options.seed if specs is None else None, output_seed=output_seed,
                               from_spec=specs is not None, fmt=fmt, inputs=inputs, paths=paths, names=names,
                               tumors=tumors, started=started))
    layout = options.out_layout
    if layout is not None and layout.include_originals and original_id(case.case_id) not in skip:
        records.append(_write_original(case, options, out_dir, scan=scan, organ=organ, lesions=lesions,
                                       organ_name=organ_name, preset=preset, fmt=fmt, inputs=inputs))
    return records


def _record(output_id: str, case: Case, *, organ_name: str, method: str | None, preset: str, seed: int | None,
            output_seed: int | None, from_spec: bool, fmt: str, inputs: dict, paths: dict, names: dict,
            tumors: list[dict], started: float) -> dict:
    """The manifest record of one finished output (its files are in ``paths``; roles name them in ``names``)."""
    return {
        "output_id": output_id,
        "case_id": case.case_id,
        "organ": organ_name,
        "method": method,
        "label_preset": preset,
        "seed": seed,
        "output_seed": output_seed,
        "from_spec": from_spec,
        "output_format": fmt,
        "tool": {"name": "tumorsyn", "version": tumorsyn.__version__},
        "input": inputs,
        # Paths relative to the run folder: a file name in the flat layout, imagesTr/... in a dataset.
        "outputs": {k: names[k] for k in paths},
        "outputs_sha256": {k: sha256_file(p) for k, p in paths.items() if k != "preview"},
        "tumors": tumors,
        "seconds": round(time.perf_counter() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _make_parents(out_dir: Path, names: dict) -> None:
    """Create the dataset folders (``imagesTr/`` ...) that an output's files go into."""
    for name in names.values():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)


def _write_original(case: Case, options: GenerateOptions, out_dir: Path, *, scan, organ, lesions, organ_name: str,
                    preset: str, fmt: str, inputs: dict) -> dict:
    """Copy input ``case`` unmodified into the dataset as ``<case>_orig`` (``--include-originals``); its record.

    The CT keeps every stored value and its header (written like a synthetic output, with no voxel
    changed); the label map follows the dataset's classes, the scan's own lesions as tumour.
    """
    started = time.perf_counter()
    output_id = original_id(case.case_id)
    names = output_file_names(output_id, options, fmt, original=True)
    paths = {role: out_dir / name for role, name in names.items()}
    _make_parents(out_dir, names)
    unchanged = np.zeros(organ.shape, dtype=bool)
    try:
        write_ct_like(paths["ct"], scan, scan.values(), unchanged)
        write_mask_like(paths["label"], scan, options.out_layout.label_array(organ, lesions, unchanged))
    except BaseException:
        remove_outputs(paths.values())  # whole or absent, as every output
        raise
    record = _record(output_id, case, organ_name=organ_name, method=None, preset=preset, seed=None, output_seed=None,
                     from_spec=False, fmt=fmt, inputs=inputs, paths=paths, names=names, tumors=[], started=started)
    record["original"] = True
    return record

