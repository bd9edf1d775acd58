"""Training crops: real tumours (and healthy organ tissue) resampled to the model's spacing.

Each scan is read once; around each selected tumour (measured maximum diameter in
``[min_diameter_mm, max_diameter_mm)``) a crop slightly larger than the model's crop is resampled to
``data.spacing_mm``, mapped to [-1, 1] (``data.intensity``: by the fixed ``data.hu_window``, or
standardised by the parenchyma around it, :mod:`tumorsyn.generators.diffusion.intensity`) and kept
in memory with its tumour mask and the HU window it was mapped with. A batch is a random window of these
crops (jitter) with random flips, drawn from ``(seed, stage, micro-step, process)`` only: a resumed
run sees the same stream as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tumorsyn.errors import ConfigError
from tumorsyn.generators.diffusion.intensity import relative_window_hu, ring_statistics
from tumorsyn.generators.diffusion.sampler import grow_mask, hu_to_unit
from tumorsyn.lesion_size import label_lesions, max_diameter_mm

__all__ = ["CropBank", "HeldoutReference", "cut_to_region", "heldout_scans", "load_crops", "load_holdout",
           "resample_crop"]

_STAGES = {"autoencoder": 1, "ldm": 2, "preview": 3, "refiner": 4}


@dataclass
class CropBank:
    """Crops in [-1, 1] with their tumour masks, each ``crop_size + 2 * jitter`` voxels.

    Attributes
    ----------
    tumor_images, tumor_masks : list of ndarray, shape (X, Y, Z)
        Crops centred on selected tumours (masks: that tumour, dilated by ``mask_dilate_mm``).
    tumor_cores : list of ndarray of bool
        The same tumours undilated (held-out figures are measured inside them).
    tumor_organs, tumor_others : list of ndarray of bool
        Per tumour crop, its organ (with every lesion) and the voxels of the other lesions: the
        context the realism descriptors read (:func:`tumorsyn.metrics.realism.descriptors.lesion_descriptors`).
    grain_images, grain_windows : list
        Held-out sources only: tumour-free crops of the same scans (centres at least
        ``_GRAIN_CLEARANCE_MM`` from any lesion), the grain source of ``grain="host"`` samples in evaluation.
    healthy_images : list of ndarray
        Crops centred on organ voxels (tumour-free scans, and tumour scans away from no lesion in particular).
    tumor_windows, healthy_windows : list of (float, float)
        The HU window each crop was mapped to [-1, 1] with (``unit_to_hu(crop, window)`` gives its
        HU back): ``data.hu_window`` in absolute mode, the crop's own in relative mode.
    tumors : list of dict
        Per tumour: case, organ, measured diameters (mm) — written to the training summary.
    """

    crop_size: tuple
    jitter_vox: tuple
    tumor_images: list = field(default_factory=list)
    tumor_masks: list = field(default_factory=list)
    tumor_cores: list = field(default_factory=list)
    tumor_organs: list = field(default_factory=list)
    tumor_others: list = field(default_factory=list)
    grain_images: list = field(default_factory=list)
    grain_windows: list = field(default_factory=list)
    healthy_images: list = field(default_factory=list)
    tumor_windows: list = field(default_factory=list)
    healthy_windows: list = field(default_factory=list)
    tumors: list = field(default_factory=list)
    cases: list = field(default_factory=list)

    def batch(self, kind: str, size: int, *, seed: int, stage: str, index: int, rank: int = 0, flip: bool = True,
              healthy_fraction: float = 0.0, cores: bool = False):
        """Batch ``index`` of a stage: ``(images, masks)`` as float32 arrays (B, 1, X, Y, Z).

        ``kind`` ``"tumor"`` draws tumour crops only; ``"mixed"`` draws healthy crops with
        probability ``healthy_fraction`` (their masks are empty). With ``cores``, the undilated
        tumour masks come third, cut and flipped alike (the same random draws either way).
        """
        rng = np.random.default_rng([int(seed), _STAGES[stage], int(index), int(rank)])
        images, masks, core_masks = [], [], []
        for _ in range(int(size)):
            healthy = kind == "mixed" and self.healthy_images and rng.random() < healthy_fraction
            if healthy:
                image = self.healthy_images[int(rng.integers(len(self.healthy_images)))]
                mask = core = None
            else:
                k = int(rng.integers(len(self.tumor_images)))
                image, mask = self.tumor_images[k], self.tumor_masks[k]
                core = self.tumor_cores[k] if cores else None  # banks built by hand may hold no cores
            start = [int(rng.integers(0, 2 * j + 1)) for j in self.jitter_vox]
            window = tuple(slice(s, s + n) for s, n in zip(start, self.crop_size))
            img = image[window]
            msk = np.zeros(self.crop_size, np.float32) if mask is None else mask[window].astype(np.float32)
            cor = np.zeros(self.crop_size, np.float32) if core is None else core[window].astype(np.float32)
            if flip:
                for axis in range(3):
                    if rng.random() < 0.5:
                        img, msk, cor = np.flip(img, axis), np.flip(msk, axis), np.flip(cor, axis)
            images.append(np.ascontiguousarray(img, dtype=np.float32))
            masks.append(np.ascontiguousarray(msk, dtype=np.float32))
            core_masks.append(np.ascontiguousarray(cor, dtype=np.float32))
        if cores:
            return np.stack(images)[:, None], np.stack(masks)[:, None], np.stack(core_masks)[:, None]
        return np.stack(images)[:, None], np.stack(masks)[:, None]

    def centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every tumour crop without jitter or flips: ``(images, masks, cores)``, each (N, X, Y, Z)."""
        window = tuple(slice(j, j + n) for j, n in zip(self.jitter_vox, self.crop_size))
        return (np.stack([im[window] for im in self.tumor_images]).astype(np.float32),
                np.stack([m[window] for m in self.tumor_masks]).astype(np.float32),
                np.stack([c[window] for c in self.tumor_cores]))

    def centred_grain(self) -> tuple[np.ndarray, list]:
        """The grain crops without jitter, ``(images (N, X, Y, Z), windows)``; N may be 0."""
        window = tuple(slice(j, j + n) for j, n in zip(self.jitter_vox, self.crop_size))
        if not self.grain_images:
            return np.zeros((0, *self.crop_size), np.float32), []
        return np.stack([im[window] for im in self.grain_images]).astype(np.float32), list(self.grain_windows)

    def centred_context(self) -> tuple[np.ndarray, np.ndarray]:
        """The organ and other-lesion masks of :meth:`centred`'s crops: ``(organs, others)``, each (N, X, Y, Z)."""
        window = tuple(slice(j, j + n) for j, n in zip(self.jitter_vox, self.crop_size))
        return (np.stack([o[window] for o in self.tumor_organs]), np.stack([o[window] for o in self.tumor_others]))


def resample_crop(volume: np.ndarray, center_vox, spacing_mm, *, size, out_spacing_mm, order: int = 1,
                  cval: float | None = None) -> np.ndarray:
    """A crop of ``size`` voxels at ``out_spacing_mm`` centred on ``center_vox`` (trilinear or nearest).

    Voxel ``j`` lies ``(j - (n - 1) / 2) * out_spacing_mm`` mm from the centre; beyond the scan the
    edge value is repeated (or ``cval`` when given).
    """
    axes = [(np.arange(n) - 0.5 * (n - 1)) * so / si + c
            for n, so, si, c in zip(size, out_spacing_mm, spacing_mm, center_vox)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"))
    mode = "nearest" if cval is None else "constant"
    return ndimage.map_coordinates(volume, coords, order=order, mode=mode, cval=0.0 if cval is None else cval)


def _cases(source: dict) -> list:
    """The cases of one source: its dataset (any layout tumorsyn reads), or its one ``ct`` entry."""
    from tumorsyn.io.cases import cases_from_entries
    from tumorsyn.io.layouts import discover_cases

    if source.get("dataset"):
        return discover_cases(source["dataset"], label_preset=source.get("label_preset") or "decathlon",
                              organ_labels=source.get("organ_labels"), tumor_labels=source.get("tumor_labels"))
    # Here "organ" names the organ, not a mask file; the ids follow tumorsyn's one rule (3D-IRCADb's
    # <patient>/ct.nii.gz is named by its folder).
    return cases_from_entries([source], organ_mask_key=None)


def _slab(shape, axis: int, start: int, stop: int) -> tuple[slice, ...]:
    """Slices ``start:stop`` along ``axis``, everything along the other axes."""
    return tuple(slice(start, stop) if a == axis else slice(0, n) for a, n in enumerate(shape))


def cut_to_region(hu: np.ndarray, organ_mask: np.ndarray, tumor: np.ndarray, region: dict, *, path, where: str):
    """The arrays cut to ``region`` (``{axis, first, last}``, inclusive slices) and the tumours the cut crosses.

    A tumour (26-connected) crossing the region's border continues in the slice next to the region, so
    the region plus one slice each side is labelled: a component reaching those outer slices is cut.

    Returns
    -------
    hu, organ_mask, tumor : ndarray
        The region only (the cut tumours' inner parts stay in ``tumor``: no healthy crop centres there).
    cut : ndarray of bool
        The inner voxels of tumours crossing the border (their crops are not used).
    count : int
        How many tumours cross the border.

    Raises
    ------
    ConfigError
        The region is not inside the scan (naming the file).
    """
    axis, first, last = int(region["axis"]), int(region["first"]), int(region["last"])
    n = hu.shape[axis]
    if last >= n:
        raise ConfigError(f"{where} slices {first}-{last} along axis {axis} lie outside the scan's slices 0-{n - 1}",
                          path=path)
    lo, hi = max(first - 1, 0), min(last + 2, n)
    components, _ = label_lesions(tumor[_slab(tumor.shape, axis, lo, hi)])
    inner = _slab(components.shape, axis, first - lo, last + 1 - lo)
    outer = np.ones(components.shape[axis], dtype=bool)
    outer[first - lo:last + 1 - lo] = False
    crossing = np.unique(np.compress(outer, components, axis=axis))
    crossing = crossing[crossing > 0]
    inside = components[inner]
    crossing = np.intersect1d(crossing, np.unique(inside))
    box = _slab(hu.shape, axis, first, last + 1)
    return hu[box], organ_mask[box], tumor[box], np.isin(inside, crossing), int(len(crossing))


def _read_case(case, organ: str, margin_mm: float, *, lesions: bool, region: dict | None = None, where: str = ""):
    """Canonical HU, organ mask, tumour mask, spacing, cut-tumour mask (or None) and cut count of one case,
    cut to ``region`` (when given) and then to the organ's box plus a margin."""
    from tumorsyn.io.cases import read_case_masks

    scan, organ_mask, tumor = read_case_masks(case, organ, lesions=lesions)
    hu = scan.values()
    cut, n_cut = None, 0
    if region is not None:
        # Cut first, before anything reads the scan for crops: no crop can hold a voxel outside the region.
        hu, organ_mask, tumor, cut, n_cut = cut_to_region(hu, organ_mask, tumor, region, path=case.ct,
                                                          where=where)
    # Only the organ's box (plus a margin) is kept: a full-resolution scan is 30+ MB per array.
    found = np.argwhere(organ_mask | tumor)
    if len(found) == 0:
        inside = f" inside {where}" if region is not None else ""
        raise ConfigError(f"no {organ} voxels in the labels{inside} (preset {case.label_preset}); set organ_labels for "
                          "this source", path=case.labels or case.ct)
    spacing = np.asarray(scan.spacing_mm)
    margin = np.ceil(float(margin_mm) / spacing).astype(int)
    lo = np.maximum(found.min(0) - margin, 0)
    hi = np.minimum(found.max(0) + margin + 1, hu.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    return hu[box], organ_mask[box], tumor[box], scan.spacing_mm, (None if cut is None else cut[box]), n_cut


def load_holdout(config: dict, *, log=lambda *a: None) -> CropBank:
    """The tumour crops of ``data.holdout_sources`` (no healthy crops): what ``--evaluate`` measures.

    Raises
    ------
    ConfigError
        When the config has no held-out source, or none of its tumours passes the size selection.
    """
    if not config["data"]["holdout_sources"]:
        raise ConfigError("data.holdout_sources is empty: list scans whose tumours are kept out of training")
    return load_crops(config, log=log, roles=("holdout_sources",), evaluation=True)


def load_training_tumours(config: dict, *, log=lambda *a: None) -> CropBank:
    """The tumour crops of ``data.tumor_sources``, read as :func:`load_holdout` reads held-out ones.

    What ``--evaluate --on training`` measures: a model against the tumours it learnt from. Beside the
    held-out figures this tells a model that missed its own tumours from one whose held-out tumours
    differ from them.
    """
    return load_crops(config, log=log, roles=("tumor_sources",), evaluation=True)


def load_crops(config: dict, *, log=lambda *a: None, need_tumors: bool = True,
               roles: tuple = ("tumor_sources", "healthy_sources"), evaluation: bool = False) -> CropBank:
    """Read every source of the config (``roles``: which source lists) into a :class:`CropBank`.

    With ``evaluation``, each scan gives tumour-free grain crops (the scanner grain evaluation writes
    under ``grain="host"`` / ``"noise"`` samples) instead of healthy training crops.

    Raises
    ------
    ConfigError
        When no tumour passes the size selection.
    TumorsynError
        A bad scan, naming the file.
    """
    d = config["data"]
    size = tuple(int(n) for n in d["crop_size"])
    spacing = tuple(float(s) for s in d["spacing_mm"])
    jitter = tuple(int(round(float(d["jitter_mm"]) / s)) for s in spacing)
    big = tuple(n + 2 * j for n, j in zip(size, jitter))
    intensity = _Intensity(d, size, jitter)
    dilate_mm = float(d["mask_dilate_mm"])
    lo_mm, hi_mm = float(d["min_diameter_mm"]), d["max_diameter_mm"]
    bank = CropBank(crop_size=size, jitter_vox=jitter)
    rng = np.random.default_rng([int(config["seed"]), 99])
    for role in roles:
        with_tumors = role in ("tumor_sources", "holdout_sources")
        for i, src in enumerate(d[role]):
            organ = src["organ"]
            region = src.get("region")
            for case in _cases(src):
                case_id = case.case_id
                hu, organ_mask, tumor, scan_spacing, cut, n_cut = _read_case(
                    case, organ, d["crop_margin_mm"], lesions=with_tumors, region=region,
                    where=f"data.{role}[{i}].region")
                tissue = organ_mask & ~tumor
                bank.cases.append({"case": case_id, "ct": str(case.ct), "role": role, "organ": organ,
                                   "organ_median_hu": round(float(np.median(hu[tissue])), 1) if tissue.any() else None})
                if region is not None:
                    bank.cases[-1].update(region=dict(region), tumours_cut_by_region=n_cut)
                    log(f"{case_id}: {n_cut} tumour(s) cut by the region border, not used")
                intensity.host(hu, organ_mask, tumor)
                if with_tumors:
                    _add_tumors(bank, hu, tumor, scan_spacing, case_id, organ, size=big, spacing=spacing,
                                intensity=intensity, dilate_mm=dilate_mm, lo_mm=lo_mm, hi_mm=hi_mm, cut=cut,
                                organ_mask=organ_mask)
                if evaluation:
                    _add_grain(bank, hu, organ_mask, tumor, scan_spacing, size=big, spacing=spacing,
                               intensity=intensity, rng=np.random.default_rng([int(config["seed"]), 98, i]))
                # Evaluation reads tumour crops only; a training source may set its own healthy_crops.
                healthy = 0 if evaluation else int(src.get("healthy_crops", d["healthy_crops_per_case"]))
                images, windows = _organ_crops(hu, np.argwhere(organ_mask & ~tumor), healthy, rng, scan_spacing,
                                               size=big, spacing=spacing, intensity=intensity)
                bank.healthy_images += images
                bank.healthy_windows += windows
                log(f"{case_id}: {sum(t['case'] == case_id for t in bank.tumors)} tumour crop(s)")
    if need_tumors and not bank.tumor_images:
        size_text = f"{lo_mm:g}-{hi_mm:g} mm" if hi_mm is not None else f">= {lo_mm:g} mm"
        raise ConfigError(f"no tumour of {size_text} (measured maximum diameter) in data.{roles[0]}; "
                          "widen data.min_diameter_mm / data.max_diameter_mm or add scans")
    return bank


def _shell_noise(hu, components, k, tumor, organ_mask, scan_spacing) -> float | None:
    """The tumour's shell noise at the reference voxel on its scan's own grid (``tumorsyn realism``'s unit), or None."""
    from tumorsyn.metrics.realism.descriptors import shell_noise_ref_hu

    one = components == k
    organ = one if organ_mask is None else organ_mask
    noise = shell_noise_ref_hu(hu, one, organ, scan_spacing, other_lesions=tumor & ~one)
    return round(noise, 3) if np.isfinite(noise) and noise > 0 else None


def spread_per_noise(bank: CropBank, window_sd) -> float | None:
    """Median over the tumour crops of (the crop's ring spread / the tumour's shell noise), or None.

    The shell noise is ``tumorsyn realism``'s ``shell_noise_ref_hu``, read on the scan's own grid: the
    unit contrast is measured in. A relative model learns contrast in units of the ring spread it was
    normalised by; this ratio lets sampling turn the shell noise around the tumour it writes into the
    spread that model means (:mod:`tumorsyn.generators.diffusion.intensity`), so the written tumour is as
    conspicuous in that unit as the training tumours, on any grid.
    """
    lo, hi = float(window_sd[0]), float(window_sd[1])
    ratios = [((w[1] - w[0]) / (hi - lo)) / t["shell_noise_ref_hu"] for t, w in zip(bank.tumors, bank.tumor_windows)
              if t.get("shell_noise_ref_hu")]
    return round(float(np.median(ratios)), 4) if ratios else None


_GRAIN_CROPS_PER_CASE = 4
_GRAIN_CLEARANCE_MM = 15.0  # grain crops are centred this far from any lesion (nearer where none is)


def _add_grain(bank: CropBank, hu, organ_mask, tumor, scan_spacing, *, size, spacing, intensity: "_Intensity",
               rng) -> None:
    """Tumour-free crops of a held-out scan: the scanner grain that evaluation puts under ``grain="host"`` samples."""
    parenchyma = organ_mask & ~tumor
    clear = parenchyma & (ndimage.distance_transform_edt(~tumor, sampling=scan_spacing) >= _GRAIN_CLEARANCE_MM)
    images, windows = _organ_crops(hu, np.argwhere(clear if clear.any() else parenchyma), _GRAIN_CROPS_PER_CASE, rng,
                                   scan_spacing, size=size, spacing=spacing, intensity=intensity)
    bank.grain_images += images
    bank.grain_windows += windows


def _organ_crops(hu, centres: np.ndarray, count: int, rng, scan_spacing, *, size, spacing,
                 intensity: "_Intensity") -> tuple[list, list]:
    """``count`` crops (in [-1, 1]) centred on voxels drawn from ``centres``, and their HU windows."""
    images, windows = [], []
    for _ in range(count if len(centres) else 0):
        center = centres[int(rng.integers(len(centres)))]
        crop = resample_crop(hu, center, scan_spacing, size=size, out_spacing_mm=spacing)
        window = intensity.window(crop, center, scan_spacing, spacing, grown=None)
        images.append(hu_to_unit(crop, window))
        windows.append(window)
    return images, windows


def tumour_used(one: np.ndarray, box, scan_spacing, cut, lo_mm: float, hi_mm) -> float | None:
    """The maximum diameter (mm) of a tumour (``one``: its mask in ``box``) that a source uses, or None when
    it crosses the region's border (its crop would show a truncated tumour) or lies outside the size range."""
    if cut is not None and cut[box][one].any():
        return None
    diameter = max_diameter_mm(one, scan_spacing)
    if diameter < lo_mm or (hi_mm is not None and diameter >= float(hi_mm)):
        return None
    return float(diameter)


def _heldout_regions(config: dict):
    """Each held-out scan cut to its region: ``(source, case, hu, organ mask, tumour mask, spacing, cut mask)``."""
    d = config["data"]
    for i, src in enumerate(d["holdout_sources"]):
        for case in _cases(src):
            hu, organ_mask, tumor, spacing, cut, _ = _read_case(case, src["organ"], d["crop_margin_mm"], lesions=True,
                                                                region=src.get("region"),
                                                                where=f"data.holdout_sources[{i}].region")
            yield src, case, hu, organ_mask, tumor, spacing, cut


def holdout_native_rows(config: dict, spacing_mm=None) -> list[dict]:
    """Realism descriptor rows of the held-out tumours that :func:`load_holdout` crops, read on their own scan's
    grid (not resampled): the reference of tumours written into other scans, each on its own grid.

    With ``spacing_mm``, each held-out scan is first averaged onto voxels of that size where they are
    larger than its own (:func:`area_resample`): what the same real tumours read on a coarser host's
    grid (a 3 mm scan's voxels hold a tumour's border in one partial-volume layer).
    """
    from tumorsyn.metrics.realism.descriptors import describe_case

    d = config["data"]
    rows = []
    for src, case, hu, organ_mask, tumor, spacing, cut in _heldout_regions(config):
        components, count = label_lesions(tumor)
        boxes = ndimage.find_objects(components)
        keep = [k for k in range(1, count + 1)
                if tumour_used(components[boxes[k - 1]] == k, boxes[k - 1], spacing, cut,
                               float(d["min_diameter_mm"]), d["max_diameter_mm"]) is not None]
        if spacing_mm is not None:
            hu, organ_mask, components, spacing = area_resample(hu, organ_mask, components, spacing, spacing_mm)
        described = describe_case(hu, components, organ_mask, spacing, organ=src["organ"], labelled=True,
                                  case_id=case.case_id)
        rows += [r for r in described if r["lesion_id"] in keep and r["described"]]
    return rows


def heldout_scans(config: dict) -> list[dict]:
    """The held-out region of each ``data.holdout_sources`` scan, as a host to write tumours into.

    Each entry: ``case_id``, ``hu`` (float32), ``organ`` and ``tumour`` (bool; the organ without its real
    tumours, and those tumours), ``spacing_mm`` and ``organ_name``; cut to the region and the organ's box
    plus ``data.crop_margin_mm``, exactly as :func:`holdout_native_rows` reads the reference tumours. Only
    voxels of the held-out region are in it, so a model never trained on them writes into a scan region it
    has not seen, on that scan's own grid and contrast phase.
    """
    return [{"case_id": case.case_id, "hu": np.asarray(hu, np.float32), "organ": organ_mask & ~tumor, "tumour": tumor,
             "spacing_mm": tuple(float(s) for s in spacing), "organ_name": src["organ"]}
            for src, case, hu, organ_mask, tumor, spacing, _ in _heldout_regions(config)]


class HeldoutReference:
    """The held-out real tumours' :data:`~train_diffusion.figures.REPORTED` figures, the reference of tumours
    written into other scans: on their own scans' grid (``native``), and, called with a host's spacing,
    averaged onto that host's voxels (read once per spacing). :meth:`rows_on_grid` gives their whole
    descriptor rows.
    """

    def __init__(self, config: dict) -> None:
        self.config = config
        self.native = self._figures(holdout_native_rows(config))
        self.on_grid: dict = {}
        self._rows: dict = {}

    @staticmethod
    def _figures(rows: list[dict]) -> list[dict]:
        from train_diffusion.figures import REPORTED

        return [{name: float(row[name]) for name in REPORTED} for row in rows]

    def rows_on_grid(self, spacing_mm) -> list[dict]:
        """Every descriptor row (``describe_case``) of the held-out tumours averaged onto ``spacing_mm``."""
        key = tuple(round(float(s), 4) for s in spacing_mm)
        if key not in self._rows:
            self._rows[key] = holdout_native_rows(self.config, spacing_mm=key)
        return self._rows[key]

    def __call__(self, spacing_mm) -> list[dict]:
        key = tuple(round(float(s), 4) for s in spacing_mm)
        if key not in self.on_grid:
            self.on_grid[key] = self._figures(self.rows_on_grid(key))
        return self.on_grid[key]


def area_resample(hu: np.ndarray, organ: np.ndarray, components: np.ndarray, spacing_mm, out_spacing_mm):
    """A scan averaged onto voxels of ``out_spacing_mm`` (mm) where they are larger than its own (partial volume).

    HU: Gaussian of :func:`tumorsyn.partial_volume.partial_volume_sigma`, then trilinear at the
    new voxel centres; masks: the same averaging of each mask, kept at >= 1/2 (each lesion its own id).
    Axes whose voxels are not larger keep their own spacing.

    Returns
    -------
    (hu, organ, components, spacing_mm)
    """
    from tumorsyn.partial_volume import partial_volume_sigma

    out = [max(float(o), float(s)) for o, s in zip(out_spacing_mm, spacing_mm)]
    sigma = partial_volume_sigma(spacing_mm, out)
    shape = [max(1, int(np.floor(n * s / o))) for n, s, o in zip(hu.shape, spacing_mm, out)]
    coords = np.stack(np.meshgrid(*[np.arange(m) * o / s for m, o, s in zip(shape, out, spacing_mm)], indexing="ij"))

    def average(volume):
        return ndimage.map_coordinates(ndimage.gaussian_filter(np.asarray(volume, np.float32), sigma), coords, order=1,
                                       mode="nearest")

    lesions = np.zeros(shape, components.dtype)
    for k in range(1, int(components.max()) + 1):
        lesions[(average(components == k) >= 0.5) & (lesions == 0)] = k
    return average(hu), (average(organ) >= 0.5) | (lesions > 0), lesions, tuple(out)


def _add_tumors(bank: CropBank, hu, tumor, scan_spacing, case_id, organ, *, size, spacing, intensity: "_Intensity",
                dilate_mm, lo_mm, hi_mm, cut=None, organ_mask=None) -> None:
    components, count = label_lesions(tumor)
    whole_organ = (tumor if organ_mask is None else organ_mask | tumor).astype(np.float32)
    boxes = ndimage.find_objects(components)
    for k in range(1, count + 1):
        box = boxes[k - 1]
        one = components[box] == k
        diameter = tumour_used(one, box, scan_spacing, cut, lo_mm, hi_mm)
        if diameter is None:
            continue
        center = [c + s.start for c, s in zip(ndimage.center_of_mass(one), box)]
        image = resample_crop(hu, center, scan_spacing, size=size, out_spacing_mm=spacing)
        mask = resample_crop((components == k).astype(np.float32), center, scan_spacing, size=size,
                             out_spacing_mm=spacing, order=1, cval=0.0) >= 0.5
        if not mask.any():
            continue  # thinner than one model voxel
        core = mask
        organ_crop = resample_crop(whole_organ, center, scan_spacing, size=size, out_spacing_mm=spacing, cval=0.0) >= 0.5
        lesions_crop = resample_crop(tumor.astype(np.float32), center, scan_spacing, size=size, out_spacing_mm=spacing,
                                     cval=0.0) >= 0.5
        mask = grow_mask(mask, spacing, dilate_mm)
        window = intensity.window(image, center, scan_spacing, spacing, grown=mask)
        bank.tumor_images.append(hu_to_unit(image, window))
        bank.tumor_windows.append(window)
        bank.tumor_masks.append(mask)
        bank.tumor_cores.append(core)
        bank.tumor_organs.append(organ_crop | core)
        bank.tumor_others.append(lesions_crop & ~grow_mask(core, spacing, dilate_mm + 1.0))
        bank.tumors.append({"case": case_id, "organ": organ, "max_diameter_mm": round(float(diameter), 2),
                            "voxels_at_model_spacing": int(mask.sum()),
                            "shell_noise_ref_hu": _shell_noise(hu, components, k, tumor, organ_mask, scan_spacing)})


class _Intensity:
    """The HU window of each training crop (``data.intensity``), measured as sampling measures the host.

    Absolute: ``data.hu_window``. Relative: the median and spread of the organ ring in the centred
    crop (the ``crop_size`` window a sampled crop covers), outside the crop's grown tumour mask and
    every labelled lesion; where that ring is too small, the scan's organ-wide statistics
    (:func:`tumorsyn.placement.organ_statistics`, what a spec records as ``organ_mean_hu`` /
    ``organ_std_hu`` when sampling) — see :func:`tumorsyn.generators.diffusion.intensity.ring_statistics`.
    """

    def __init__(self, data: dict, size, jitter) -> None:
        self.relative = data["intensity"] == "relative"
        self.hu_window = tuple(float(v) for v in data["hu_window"])
        self.window_sd = tuple(float(v) for v in data["relative_window_sd"])
        self.centre = tuple(slice(j, j + n) for j, n in zip(jitter, size))
        self.scan = None

    def host(self, hu: np.ndarray, organ_mask: np.ndarray, tumor: np.ndarray) -> None:
        """The scan the next crops come from: its organ (without lesions) and organ-wide statistics."""
        if not self.relative:
            return
        from tumorsyn.placement import organ_statistics

        parenchyma = organ_mask & ~tumor
        fallback = organ_statistics(hu, parenchyma) if parenchyma.any() else (0.0, 0.0)
        self.scan = (parenchyma.astype(np.float32), tumor.astype(np.float32), fallback)

    def window(self, crop_hu: np.ndarray, center, scan_spacing, spacing, *, grown) -> tuple[float, float]:
        if not self.relative:
            return self.hu_window
        parenchyma, tumor, fallback = self.scan
        size = crop_hu.shape
        organ = resample_crop(parenchyma, center, scan_spacing, size=size, out_spacing_mm=spacing, cval=0.0) >= 0.5
        exclude = resample_crop(tumor, center, scan_spacing, size=size, out_spacing_mm=spacing, cval=0.0) >= 0.5
        if grown is not None:
            exclude |= grown
        median, spread, _ = ring_statistics(crop_hu[self.centre], organ[self.centre], exclude[self.centre],
                                            fallback=fallback)
        return relative_window_hu(median, spread, self.window_sd)
