"""Build a blinded study folder: pick balanced cases, render them, write what readers see and the key apart.

Study folder::

    STUDY/study.json             design, seed, render settings, items (opaque ids, shuffled); no answers
    STUDY/items/<id>/<panel>/    axial_NNN.png (+ coronal_000.png, sagittal_000.png); panel a (and b in 2AFC)
    STUDY/key/answer_key.json    truth, organ, size bin, source files of every item; never served
    STUDY/ratings.sqlite         created by `add-reader` / `serve` (readers, assignments, ratings)

The folder is written under a temporary name beside ``out`` and renamed at the end, so a failed build
leaves nothing behind. Every random choice comes from ``seed``: the same inputs and seed give the same
bytes in study.json, the key and every PNG.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

import tumorsyn
from tumorsyn.errors import ConfigError, GridMismatchError, InputError
from tumorsyn.io.guard import check_outputs_spare_inputs
from tumorsyn.metrics.sizes import DEFAULT_BINS_MM, check_bins_mm, size_bin_index, size_bin_labels

from reader_study.cases import Lesion, find_lesions, read_real_sources, read_synthetic_sources
from reader_study.render import (RenderSettings, crop_box_vox, crop_centre_mm, lesion_marks, png_bytes,
                                 render_views)
from reader_study.volume import CTVolume

__all__ = ["build_study", "select_pairs", "STUDY_FORMAT", "KEY_PATH"]

STUDY_FORMAT = "tumorsyn-reader-study/1"
KEY_PATH = Path("key") / "answer_key.json"
DESIGNS = ("single", "2afc")


def select_pairs(lesions: Sequence[Lesion], *, per_organ: int | None, rng: np.random.Generator,
                 bins_mm: Sequence[float] = DEFAULT_BINS_MM) -> list[tuple[Lesion, Lesion]]:
    """Pair real with synthetic lesions of the same organ and size bin, as many as balance allows.

    Within each (organ, size bin) stratum both lists are shuffled and zipped, so each stratum holds as
    many real as synthetic lesions. With ``per_organ`` the pairs of an organ are taken round-robin over
    its size bins (smallest bin first) until ``per_organ`` pairs are chosen, which keeps the size mix
    as even as the data allow.

    Returns
    -------
    list of (real, synthetic)
        Ordered by organ, then draw order; the caller shuffles.
    """
    strata: dict[tuple[str, int], dict[str, list[Lesion]]] = defaultdict(lambda: {"real": [], "synthetic": []})
    for lesion in lesions:
        strata[(lesion.source.organ, size_bin_index(lesion.max_diameter_mm, bins_mm))][lesion.source.kind].append(lesion)
    pairs_by_organ: dict[str, list[list[tuple[Lesion, Lesion]]]] = defaultdict(list)
    for organ, bin_index in sorted(strata):
        group = strata[(organ, bin_index)]
        real = [group["real"][i] for i in rng.permutation(len(group["real"]))]
        synthetic = [group["synthetic"][i] for i in rng.permutation(len(group["synthetic"]))]
        pairs_by_organ[organ].append(list(zip(real, synthetic)))
    chosen = []
    for organ in sorted(pairs_by_organ):
        queues = [list(q) for q in pairs_by_organ[organ] if q]
        limit = per_organ if per_organ is not None else sum(len(q) for q in queues)
        taken = 0
        while taken < limit and any(queues):
            for queue in queues:
                if queue and taken < limit:
                    chosen.append(queue.pop(0))
                    taken += 1
    return chosen


def _tokens(rng: np.random.Generator, count: int) -> list[str]:
    """Opaque 16-hex-digit ids, drawn from the study seed (unique)."""
    tokens: list[str] = []
    seen: set[str] = set()
    while len(tokens) < count:
        token = rng.bytes(8).hex()
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    return tokens


def _lesion_record(lesion: Lesion, bins_mm, labels) -> dict:
    return {
        "kind": lesion.source.kind,
        "organ": lesion.source.organ,
        "max_diameter_mm": lesion.max_diameter_mm,
        "size_bin": labels[size_bin_index(lesion.max_diameter_mm, bins_mm)],
        "ct": str(lesion.source.ct),
        "mask": str(lesion.source.mask),
        "mask_label": lesion.source.label,
        "component": lesion.component,
        "listed_in": lesion.source.origin,
    }


def _check_grid(scan, lesion: Lesion) -> None:
    if tuple(scan.shape) != tuple(lesion.grid_shape) or not np.allclose(
            scan.canonical_affine.ravel(), lesion.grid_affine, atol=0.01):
        raise GridMismatchError(f"tumour mask grid {tuple(lesion.grid_shape)} / affine differ from the CT "
                                f"{scan.path.name} ({scan.shape}); resample the mask onto the CT grid first",
                                path=lesion.source.mask)


def _unique(sources: list) -> list:
    """Drop repeated listings of one mask (the first wins); a mask listed as both real and synthetic is an error."""
    seen: dict[tuple, object] = {}
    for source in sources:
        key = (str(source.ct), str(source.mask), source.label)
        if key in seen and seen[key].kind != source.kind:
            raise InputError(f"listed as both real ({seen[key].origin if seen[key].kind == 'real' else source.origin})"
                             " and synthetic; a case belongs to one class", path=source.mask)
        seen.setdefault(key, source)
    return list(seen.values())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


def build_study(real: str | Path | Sequence[str | Path], synthetic: str | Path | Sequence[str | Path],
                out: str | Path, *, design: str = "single", per_organ: int | None = None, seed: int = 0,
                settings: RenderSettings | None = None, real_organ: str = "liver", min_diameter_mm: float = 3.0,
                bins_mm: Sequence[float] = DEFAULT_BINS_MM, workers: int = 1, quiet: bool = True) -> Path:
    """Build a blinded real-vs-synthetic study folder.

    Parameters
    ----------
    real : path or list of paths
        CSV(s) of ``ct,mask[,organ,label]`` rows, or folder(s) of ``<id>_ct`` / ``<id>_tumor`` pairs.
    synthetic : path or list of paths
        ``tumorsyn generate`` output folder(s) or their ``manifest.jsonl``.
    out : path
        Study folder to create (must not exist, or be empty).
    design : {'single', '2afc'}
        One case at a time rated real/synthetic with confidence 1-5, or pairs (one real, one synthetic
        of the same organ and size bin) where the reader picks the synthetic one.
    per_organ : int, optional
        Real/synthetic pairs per organ (``2 * per_organ`` cases in the single design); default: every
        pair that balance allows.
    seed : int
        Drives case choice, pairing, crop jitter, panel sides, ids and order; recorded.
    settings : RenderSettings, optional
        Field of view, pixel and slice size, window, views (default: 64 mm cube, 0.5 mm pixels, 2 mm slices, W400/L40, axial).
    real_organ : str
        Organ of real cases given as a folder or as CSV rows without ``organ``.
    min_diameter_mm : float
        Lesions smaller than this maximum 3D diameter are ignored (annotation specks).
    bins_mm : sequence of float
        Size-bin edges in mm for balancing and analysis (default 10, 20).
    workers : int
        Processes reading masks and rendering scans (the output does not depend on it).
    quiet : bool
        Hide the progress bar.

    Returns
    -------
    Path
        The study folder.

    Raises
    ------
    InputError, ConfigError
        Bad inputs or options, with a one-line message naming the file; nothing is written.
    """
    from tumorsyn.cli.common import progress

    settings = settings or RenderSettings()
    if design not in DESIGNS:
        raise ConfigError(f"design {design!r} is not one of {', '.join(DESIGNS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")
    if per_organ is not None and per_organ < 1:
        raise ConfigError(f"--per-organ must be at least 1, got {per_organ}")
    try:
        bins_mm = check_bins_mm(bins_mm)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    bin_labels = size_bin_labels(bins_mm)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("study folder already exists and is not empty; choose a new --out folder", path=out)
    if not out.parent.is_dir():
        raise InputError("parent folder does not exist", path=out.parent)

    real = [real] if isinstance(real, (str, Path)) else list(real)
    synthetic = [synthetic] if isinstance(synthetic, (str, Path)) else list(synthetic)
    if not real or not synthetic:
        raise ConfigError("a study needs both --real and --synthetic cases")
    sources = [s for path in real for s in read_real_sources(path, organ=real_organ)]
    sources += [s for path in synthetic for s in read_synthetic_sources(path)]
    sources = _unique(sources)
    tmp = out.parent / f".tumorsyn-tmp-{os.getpid()}-{out.name}"
    # The study folder and its temporary twin are replaced or deleted whole: neither may hold an input.
    check_outputs_spare_inputs([], [*real, *synthetic, *(p for s in sources for p in (s.ct, s.mask))],
                               folders=[out, tmp])

    with progress(total=len(sources), desc="reading masks", unit="mask", quiet=quiet) as bar:
        lesions = find_lesions(sources, min_diameter_mm=min_diameter_mm, progress=bar, workers=workers)
    too_large = [lesion for lesion in lesions if lesion.max_diameter_mm > settings.max_lesion_mm()]
    usable = [lesion for lesion in lesions if lesion.max_diameter_mm <= settings.max_lesion_mm()]

    rng = np.random.default_rng(seed)
    pairs = select_pairs(usable, per_organ=per_organ, rng=rng, bins_mm=bins_mm)
    if not pairs:
        found = defaultdict(int)
        for lesion in usable:
            found[f"{lesion.source.kind} {lesion.source.organ} "
                  f"{bin_labels[size_bin_index(lesion.max_diameter_mm, bins_mm)]}"] += 1
        raise InputError("no organ and size bin holds both real and synthetic lesions that fit the field of view "
                         f"(found: {', '.join(f'{k}: {v}' for k, v in sorted(found.items())) or 'none'}; "
                         f"{len(too_large)} too large); add cases, or widen --fov-mm/--depth-mm or --size-bins-mm")
    if per_organ is not None:
        counts = defaultdict(int)
        for real_lesion, _ in pairs:
            counts[real_lesion.source.organ] += 1
        for organ, count in sorted(counts.items()):
            if count < per_organ and not quiet:
                print(f"reader-study: {organ}: only {count} balanced pair(s) of the {per_organ} asked for",
                      file=sys.stderr)

    # Items: one lesion each (single) or one real + one synthetic (2afc), shuffled; panels get sides.
    if design == "single":
        groups = [[lesion] for pair in pairs for lesion in pair]
    else:
        groups = [[a, b] if rng.random() < 0.5 else [b, a] for a, b in pairs]
    order = rng.permutation(len(groups))
    groups = [groups[i] for i in order]
    ids = _tokens(rng, len(groups))
    # One jitter stream per panel, in item order, so that the crop of one case never depends on another's size.
    jitter_seeds = rng.integers(0, 2**63, size=(len(groups), 2))
    if settings.whole_slice:
        # One in-plane field for every case (the largest scan's), so image size and pixel size tell nothing.
        try:
            settings = settings.with_field(_inplane_extent_mm(lesion) for group in groups for lesion in group)
        except ValueError as exc:
            raise ConfigError(f"--fov-mm whole: {exc}") from None

    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        items, key_items = _render_all(groups, ids, jitter_seeds, settings, tmp, bins_mm, bin_labels, quiet, workers)
        study = {
            "format": STUDY_FORMAT,
            "design": design,
            "seed": int(seed),
            "render": settings.to_dict(),
            "display": settings.display(),
            "size_bins_mm": list(bins_mm),
            "items": items,
            "tool": {"name": "tumorsyn", "version": tumorsyn.__version__},
        }
        strata = defaultdict(lambda: {"available_real": 0, "available_synthetic": 0, "chosen_pairs": 0})
        for lesion in usable:
            strata[f"{lesion.source.organ} {bin_labels[size_bin_index(lesion.max_diameter_mm, bins_mm)]}"][
                f"available_{lesion.source.kind}"] += 1
        for lesion, _ in pairs:
            strata[f"{lesion.source.organ} {bin_labels[size_bin_index(lesion.max_diameter_mm, bins_mm)]}"][
                "chosen_pairs"] += 1
        key = {
            "format": STUDY_FORMAT,
            "design": design,
            "seed": int(seed),
            "positive": "synthetic",
            "size_bins": bin_labels,
            "items": key_items,
            "strata": dict(strata),
            "left_out_too_large": [_lesion_record(lesion, bins_mm, bin_labels) for lesion in too_large],
        }
        _write(tmp / "study.json", _json_bytes(study))
        _write(tmp / KEY_PATH, _json_bytes(key))
        if out.exists():
            out.rmdir()  # an empty folder the user made beforehand
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _inplane_extent_mm(lesion: Lesion) -> float:
    """The in-plane extent (mm) of the lesion's scan, ``max(nx * dx, ny * dy)``, from its canonical grid."""
    affine = np.asarray(lesion.grid_affine, dtype=float).reshape(4, 4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return float(max(lesion.grid_shape[0] * spacing[0], lesion.grid_shape[1] * spacing[1]))


def _render_scan(job) -> dict:
    """Worker: read one CT, render each of its panels into the study folder;
    ``{(item, panel): (offset_mm, lesion_slice, marker)}``."""
    ct_path, panels, settings = job
    volume = CTVolume(ct_path)
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    extent = (np.asarray(volume.shape) - 1) * spacing
    crops = []
    for (i, p), lesion, jitter_seed, folder in panels:
        _check_grid(volume.scan, lesion)
        lesion_mm = np.asarray(lesion.centre_vox) * spacing
        centre = crop_centre_mm(lesion_mm, lesion.max_diameter_mm, extent, settings,
                                np.random.default_rng(jitter_seed))
        crops.append(((i, p), lesion_mm, centre, folder, lesion.max_diameter_mm))
    # Read once the part of the scan that all of its crops need.
    boxes = [crop_box_vox(centre, spacing, volume.shape, settings) for _, _, centre, _, _ in crops]
    volume.load(np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))
    offsets = {}
    for (i, p), lesion_mm, centre, folder, diameter_mm in crops:
        views = render_views(volume, spacing, centre, lesion_mm, settings)
        for view, images in views.items():
            for k, image in enumerate(images):
                _write(folder / f"{view}_{k:03d}.png", png_bytes(image))
        offsets[(i, p)] = ([round(float(v), 3) for v in lesion_mm - centre],
                           *lesion_marks(centre, lesion_mm, diameter_mm, settings))
    return offsets


def _render_all(groups, ids, jitter_seeds, settings, tmp, bins_mm, bin_labels, quiet, workers):
    """Render every panel (each CT read once), write its PNGs; return study items and key items."""
    from tumorsyn.cli.common import progress

    from reader_study.workers import imap_unordered

    panels = ["a", "b"]
    by_scan: dict[str, list] = defaultdict(list)
    for i, group in enumerate(groups):
        for p, lesion in enumerate(group):
            by_scan[str(lesion.source.ct)].append(((i, p), lesion, int(jitter_seeds[i][p]),
                                                   tmp / "items" / ids[i] / panels[p]))
    jobs = [(path, by_scan[path], settings) for path in sorted(by_scan)]
    offsets: dict[tuple[int, int], tuple] = {}
    with progress(total=sum(len(g) for g in groups), desc="rendering cases", unit="case", quiet=quiet) as bar:
        for done in imap_unordered(_render_scan, jobs, workers=workers):
            offsets.update(done)
            bar.update(len(done))
    views = {"axial": settings.n_slices, **{v: 1 for v in settings.views if v != "axial"}}
    items, key_items = [], {}
    for i, group in enumerate(groups):
        item = {"id": ids[i], "panels": panels[:len(group)], "views": views,
                # Per panel: the page opens each stack on its lesion's central slice and draws the marker.
                "lesion_slice": {panels[p]: offsets[(i, p)][1] for p in range(len(group))}}
        if settings.marker != "off":
            item["marker"] = {panels[p]: offsets[(i, p)][2] for p in range(len(group))}
        items.append(item)
        records = []
        for p, lesion in enumerate(group):
            record = _lesion_record(lesion, bins_mm, bin_labels)
            record["lesion_offset_from_crop_centre_mm"] = offsets[(i, p)][0]
            records.append(record)
        if len(group) == 1:
            key_items[ids[i]] = {**records[0], "position": i}
        else:
            synthetic_panel = panels[[r["kind"] for r in records].index("synthetic")]
            key_items[ids[i]] = {"position": i, "synthetic_panel": synthetic_panel, "organ": records[0]["organ"],
                                 "size_bin": records[0]["size_bin"],
                                 "max_diameter_mm": records[[r["kind"] for r in records].index("synthetic")][
                                     "max_diameter_mm"],
                                 "panels": dict(zip(panels, records))}
    return items, key_items
