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

import functools
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
from reader_study.grid import (DEFAULT_PIXEL_TOLERANCE, DEFAULT_SLICE_TOLERANCE, coarsest_grid, describe_spacings,
                               harmonised_block, spacing_compatible, spacing_summary)
from reader_study.hosts import clear_centre_mm, view_half_mm

__all__ = ["build_study", "select_pairs", "STUDY_FORMAT", "KEY_PATH"]

STUDY_FORMAT = "tumorsyn-reader-study/1"
KEY_PATH = Path("key") / "answer_key.json"
DESIGNS = ("single", "2afc")


def select_pairs(lesions: Sequence[Lesion], *, per_organ: int | None, rng: np.random.Generator,
                 bins_mm: Sequence[float] = DEFAULT_BINS_MM, compatible=None) -> list[tuple[Lesion, Lesion]]:
    """Pair real with synthetic lesions of the same organ and size bin, as many as balance allows.

    Within each (organ, size bin) stratum both lists are shuffled and zipped, so each stratum holds as
    many real as synthetic lesions. With ``per_organ`` the pairs of an organ are taken round-robin over
    its size bins (smallest bin first) until ``per_organ`` pairs are chosen, which keeps the size mix
    as even as the data allow. With ``compatible(real, synthetic) -> bool`` (e.g. source scans of like
    resolution) only compatible lesions are paired: the most pairs that allows (a maximum bipartite
    matching, SciPy's Hopcroft-Karp), in the shuffled order of the real ones.

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
        pairs_by_organ[organ].append(list(zip(real, synthetic)) if compatible is None
                                     else _matching(real, synthetic, compatible))
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


def _matching(real: list[Lesion], synthetic: list[Lesion], compatible) -> list[tuple[Lesion, Lesion]]:
    """The most (real, synthetic) pairs with ``compatible(real, synthetic)``, in the order of ``real``."""
    if not real or not synthetic:
        return []
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    allowed = np.array([[compatible(r, s) for s in synthetic] for r in real], dtype=bool)
    if not allowed.any():
        return []
    match = maximum_bipartite_matching(csr_matrix(allowed.astype(np.int8)), perm_type="column")
    return [(real[i], synthetic[j]) for i, j in enumerate(match) if j >= 0]


def _clear_of_host_lesions(lesions: list[Lesion], settings: RenderSettings) -> tuple[list[Lesion], dict]:
    """Synthetic lesions that some view shows without any of their host's own lesions; and the counts."""
    kept, left_out, checked, unchecked = [], 0, 0, 0
    half = view_half_mm(settings)
    for lesion in lesions:
        if lesion.source.kind == "synthetic":
            if lesion.source.host_lesion_labels is None:
                unchecked += 1
            else:
                checked += 1
        if lesion.host_lesions_mm:
            spacing = np.asarray(lesion.spacing_mm, dtype=float)
            centre = np.asarray(lesion.centre_vox) * spacing
            extent = (np.asarray(lesion.grid_shape) - 1) * spacing
            if clear_centre_mm(centre, centre, lesion.max_diameter_mm, extent, half, margin_mm=settings.margin_mm,
                               host_boxes=lesion.host_lesions_mm) is None:
                left_out += 1
                continue
        kept.append(lesion)
    return kept, {"synthetic_checked": checked, "synthetic_not_checked": unchecked, "left_out": left_out,
                  "recentred": 0}


def _draw_practice(pool: list[tuple[Lesion, Lesion]], n_pairs: int, lesions: list[Lesion],
                   rng: np.random.Generator) -> list[tuple[Lesion, Lesion]]:
    """``n_pairs`` pairs for practice, preferring scans that give no other case.

    A scan shown with feedback ("this one is real") would tell the answer if another lesion of it
    came back as a scored case, so pairs whose scans hold the fewest other candidates go first;
    ties are broken at random (from the study seed).
    """
    per_scan = defaultdict(int)
    for lesion in lesions:
        per_scan[str(lesion.source.ct)] += 1
    others = [per_scan[str(a.source.ct)] + per_scan[str(b.source.ct)] - 2 for a, b in pool]
    draw = rng.random(len(pool))
    order = sorted(range(len(pool)), key=lambda k: (others[k], draw[k]))
    return [pool[k] for k in order[:n_pairs]]


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
        "source_spacing_mm": [round(float(v), 4) for v in lesion.spacing_mm],
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
                bins_mm: Sequence[float] = DEFAULT_BINS_MM, workers: int = 1, quiet: bool = True,
                harmonise: bool = False, pixel_tolerance: float = DEFAULT_PIXEL_TOLERANCE,
                slice_tolerance: float = DEFAULT_SLICE_TOLERANCE, practice: int = 0) -> Path:
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
        Hide the progress bar and the notes on stderr.
    harmonise : bool
        Resample every chosen case onto the coarsest pixel size and slice spacing among their source
        scans before rendering (:mod:`reader_study.grid`); otherwise real and synthetic cases are
        paired only when their source scans match within the tolerances.
    pixel_tolerance, slice_tolerance : float
        Matching without ``harmonise``: the coarser source pixel (slice spacing) may be at most
        ``1 + tolerance`` times the finer (default 0.4 and 0.5).
    practice : int
        Extra cases shown first with feedback (single design: an even number, half real; 2afc:
        pairs), drawn from cases not used as scored ones; their truth is in study.json, they are not
        in the answer key's items.

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
    if not isinstance(practice, (int, np.integer)) or practice < 0:
        raise ConfigError(f"--practice must be a whole number >= 0, got {practice!r}")
    if design == "single" and practice % 2:
        raise ConfigError(f"--practice must be even in the single design (half real, half synthetic), got {practice}")
    for name, value in (("--pixel-tolerance", pixel_tolerance), ("--slice-tolerance", slice_tolerance)):
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a number >= 0 (a fraction: 0.4 = 40 %), got {value!r}")
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

    usable, hosts = _clear_of_host_lesions(usable, settings)
    rng = np.random.default_rng(seed)
    # The most pairs balance allows, then the most of them whose source scans match (their number
    # depends on no random order: a maximum matching has one size).
    balanced = select_pairs(usable, per_organ=None, rng=np.random.default_rng(0), bins_mm=bins_mm)
    compatible = None if harmonise else functools.partial(spacing_compatible, pixel_tolerance=pixel_tolerance,
                                                          slice_tolerance=slice_tolerance)
    matched = balanced if compatible is None else select_pairs(usable, per_organ=None, rng=np.random.default_rng(0),
                                                               bins_mm=bins_mm, compatible=compatible)
    spacings = {kind: spacing_summary([lesion for lesion in usable if lesion.source.kind == kind])
                for kind in ("real", "synthetic")}
    tolerances = f"{100 * pixel_tolerance:.0f} % (pixel) and {100 * slice_tolerance:.0f} % (slice)"
    if balanced and not matched:
        raise InputError(f"{describe_spacings(spacings['real'], spacings['synthetic'])}: no real/synthetic pair of "
                         f"one organ and size bin matches within {tolerances}; pass --harmonise to resample both to "
                         "the coarser grid, or widen --pixel-tolerance/--slice-tolerance")
    if len(matched) < len(balanced) and not quiet:
        print(f"reader-study: {len(balanced) - len(matched)} of {len(balanced)} real/synthetic pair(s) left out: "
              f"their source scans differ by more than {tolerances} "
              f"({describe_spacings(spacings['real'], spacings['synthetic'])}); --harmonise keeps them",
              file=sys.stderr)
    if hosts["left_out"] and not quiet:
        print(f"reader-study: {hosts['left_out']} synthetic case(s) left out: every view of them would show a lesion "
              "of their host scan", file=sys.stderr)
    if hosts["synthetic_not_checked"] and not quiet:
        print(f"reader-study: note: {hosts['synthetic_not_checked']} synthetic case(s) name no host label map in "
              "their manifest; their hosts were not checked for lesions of their own", file=sys.stderr)
    practice_pairs: list[tuple[Lesion, Lesion]] = []
    n_practice_pairs = practice // 2 if design == "single" else practice
    if n_practice_pairs and balanced:
        if n_practice_pairs >= len(matched):
            raise InputError(f"--practice {practice} needs {n_practice_pairs} real/synthetic pair(s) besides the "
                             f"scored cases, but only {len(matched)} pair(s) can be formed in all; lower --practice")
        practice_pairs = _draw_practice(select_pairs(usable, per_organ=None, rng=rng, bins_mm=bins_mm,
                                                     compatible=compatible), n_practice_pairs, usable, rng)
        taken = {lesion.sort_key for pair in practice_pairs for lesion in pair}
        usable = [lesion for lesion in usable if lesion.sort_key not in taken]
    pairs = select_pairs(usable, per_organ=per_organ, rng=rng, bins_mm=bins_mm, compatible=compatible)
    if not pairs:
        found = defaultdict(int)
        for lesion in usable:
            found[f"{lesion.source.kind} {lesion.source.organ} "
                  f"{bin_labels[size_bin_index(lesion.max_diameter_mm, bins_mm)]}"] += 1
        raise InputError("no organ and size bin holds both real and synthetic lesions that fit the field of view "
                         f"(found: {', '.join(f'{k}: {v}' for k, v in sorted(found.items())) or 'none'}; "
                         f"{len(too_large)} too large"
                         + (f", {hosts['left_out']} synthetic left out as their view would show a host lesion"
                            if hosts["left_out"] else "")
                         + "); add cases, or widen --fov-mm/--depth-mm or --size-bins-mm")
    if per_organ is not None:
        counts = defaultdict(int)
        for real_lesion, _ in pairs:
            counts[real_lesion.source.organ] += 1
        for organ, count in sorted(counts.items()):
            if count < per_organ and not quiet:
                print(f"reader-study: {organ}: only {count} balanced pair(s) of the {per_organ} asked for",
                      file=sys.stderr)

    # Items: one lesion each (single) or one real + one synthetic (2afc), shuffled; panels get sides.
    # Practice items come first, in their own shuffled order; the scored ones follow.
    groups = []
    for chosen in (practice_pairs, pairs):
        if design == "single":
            part = [[lesion] for pair in chosen for lesion in pair]
        else:
            part = [[a, b] if rng.random() < 0.5 else [b, a] for a, b in chosen]
        order = rng.permutation(len(part))
        groups += [part[i] for i in order]
    n_practice = len(groups) - (len(pairs) * (2 if design == "single" else 1))
    practice_scans = {str(lesion.source.ct) for group in groups[:n_practice] for lesion in group}
    shared = sum(str(lesion.source.ct) in practice_scans for group in groups[n_practice:] for lesion in group)
    if shared and not quiet:
        print(f"reader-study: note: {shared} scored case(s) come from scans that practice cases come from too "
              "(no other cases were left for practice)", file=sys.stderr)
    ids = _tokens(rng, len(groups))
    # One jitter stream per panel, in item order, so that the crop of one case never depends on another's size.
    jitter_seeds = rng.integers(0, 2**63, size=(len(groups), 2))
    if settings.whole_slice:
        # One in-plane field for every case (the largest scan's), so image size and pixel size tell nothing.
        try:
            settings = settings.with_field(_inplane_extent_mm(lesion) for group in groups for lesion in group)
        except ValueError as exc:
            raise ConfigError(f"--fov-mm whole: {exc}") from None
    chosen = [lesion for group in groups for lesion in group]
    grid = _grid_record(chosen, harmonise, pixel_tolerance, slice_tolerance)
    target = (grid["pixel_mm"], grid["pixel_mm"], grid["slice_mm"]) if harmonise else None
    hosts["recentred"] = sum(_recentred(lesion, int(jitter_seeds[i][p]), settings) for i, group in enumerate(groups)
                             for p, lesion in enumerate(group))

    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        items, key_items = _render_all(groups, ids, jitter_seeds, settings, tmp, bins_mm, bin_labels, quiet, workers,
                                       target=target)
        practice_key = {}
        for i, item in enumerate(items):
            # Practice items carry their truth for the page's feedback; the answer key's items are the scored ones.
            item["practice"] = i < n_practice
            if i < n_practice:
                record = key_items.pop(item["id"])
                item["truth"] = record["kind"] if design == "single" else record["synthetic_panel"]
                practice_key[item["id"]] = record
        study = {
            "format": STUDY_FORMAT,
            "design": design,
            "seed": int(seed),
            "render": settings.to_dict(),
            "display": settings.display(),
            "grid": grid,
            "practice_items": n_practice,
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
            "practice": practice_key,
            "build": {"grid": grid, "host_lesions": hosts, "pairs_balance_allows": len(balanced),
                      "pairs_resolution_allows": len(matched), "scored_cases_sharing_a_scan_with_practice": shared},
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


def _grid_record(lesions: list[Lesion], harmonise: bool, pixel_tolerance: float, slice_tolerance: float) -> dict:
    """study.json ``grid``: how the source scans' resolutions were matched or harmonised, with the figures."""
    by_kind = {kind: spacing_summary([lesion for lesion in lesions if lesion.source.kind == kind])
               for kind in ("real", "synthetic")}
    if harmonise:
        pixel, slices = coarsest_grid(lesions)
        return {"policy": "harmonised", "pixel_mm": round(pixel, 4), "slice_mm": round(slices, 4), **by_kind,
                "note": "every case resampled to the coarsest source pixel size and slice spacing before rendering"}
    every = spacing_summary(lesions)
    return {"policy": "matched", "pixel_mm": every["pixel_mm"], "slice_mm": every["slice_mm"], **by_kind,
            "pixel_tolerance": pixel_tolerance, "slice_tolerance": slice_tolerance,
            "note": f"each real case paired with a synthetic one whose source pixel size is within "
                    f"{100 * pixel_tolerance:.0f} % and slice spacing within {100 * slice_tolerance:.0f} % of its own"}


def _view_centre(lesion: Lesion, jitter_seed: int, settings: RenderSettings, spacing, extent) -> tuple:
    """(preferred, final) view centre of one panel: lesion + seeded jitter, then moved clear of host lesions."""
    lesion_mm = np.asarray(lesion.centre_vox) * spacing
    preferred = crop_centre_mm(lesion_mm, lesion.max_diameter_mm, extent, settings, np.random.default_rng(jitter_seed))
    if not lesion.host_lesions_mm:
        return preferred, preferred
    final = clear_centre_mm(preferred, lesion_mm, lesion.max_diameter_mm, extent, view_half_mm(settings),
                            margin_mm=settings.margin_mm, host_boxes=lesion.host_lesions_mm)
    if final is None:  # _clear_of_host_lesions left out every lesion without a clear view
        raise RuntimeError(f"no clear view of {lesion.source.origin}; it should have been left out")
    return preferred, final


def _recentred(lesion: Lesion, jitter_seed: int, settings: RenderSettings) -> bool:
    """Whether the panel's view had to move to keep its host's own lesions out."""
    spacing = np.asarray(lesion.spacing_mm, dtype=float)
    preferred, final = _view_centre(lesion, jitter_seed, settings, spacing, (np.asarray(lesion.grid_shape) - 1) * spacing)
    return not np.allclose(preferred, final)


def _inplane_extent_mm(lesion: Lesion) -> float:
    """The in-plane extent (mm) of the lesion's scan, ``max(nx * dx, ny * dy)``, from its canonical grid."""
    affine = np.asarray(lesion.grid_affine, dtype=float).reshape(4, 4)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return float(max(lesion.grid_shape[0] * spacing[0], lesion.grid_shape[1] * spacing[1]))


def _render_scan(job) -> dict:
    """Worker: read one CT, render each of its panels into the study folder;
    ``{(item, panel): (offset_mm, lesion_slice, marker)}``."""
    ct_path, panels, settings, target = job
    volume = CTVolume(ct_path)
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    extent = (np.asarray(volume.shape) - 1) * spacing
    crops = []
    for (i, p), lesion, jitter_seed, folder in panels:
        _check_grid(volume.scan, lesion)
        lesion_mm = np.asarray(lesion.centre_vox) * spacing
        _, centre = _view_centre(lesion, jitter_seed, settings, spacing, extent)
        crops.append(((i, p), lesion_mm, centre, folder, lesion.max_diameter_mm))
    # Read once the part of the scan that all of its crops need.
    boxes = [crop_box_vox(centre, spacing, volume.shape, settings) for _, _, centre, _, _ in crops]
    low, high = np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)
    source, source_spacing, origin = volume, spacing, np.zeros(3)
    if target is not None:
        # --harmonise: smoothing and the coarser sampling need two target voxels more on each side.
        pad = np.ceil(2 * np.asarray(target) / spacing).astype(int) + 2
        low, high = np.clip(low - pad, 0, volume.shape), np.clip(high + pad, 0, volume.shape)
    volume.load(low, high)
    if target is not None:
        source, source_spacing, origin = harmonised_block(volume, spacing, low, high, target)
    offsets = {}
    for (i, p), lesion_mm, centre, folder, diameter_mm in crops:
        views = render_views(source, source_spacing, centre - origin, lesion_mm - origin, settings)
        for view, images in views.items():
            for k, image in enumerate(images):
                _write(folder / f"{view}_{k:03d}.png", png_bytes(image))
        offsets[(i, p)] = ([round(float(v), 3) for v in lesion_mm - centre],
                           *lesion_marks(centre, lesion_mm, diameter_mm, settings))
    return offsets


def _render_all(groups, ids, jitter_seeds, settings, tmp, bins_mm, bin_labels, quiet, workers, *, target=None):
    """Render every panel (each CT read once), write its PNGs; return study items and key items."""
    from tumorsyn.cli.common import progress

    from reader_study.workers import imap_unordered

    panels = ["a", "b"]
    by_scan: dict[str, list] = defaultdict(list)
    for i, group in enumerate(groups):
        for p, lesion in enumerate(group):
            by_scan[str(lesion.source.ct)].append(((i, p), lesion, int(jitter_seeds[i][p]),
                                                   tmp / "items" / ids[i] / panels[p]))
    jobs = [(path, by_scan[path], settings, target) for path in sorted(by_scan)]
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
