"""Training data: cases from the config, loaded once (organ crop, resampled), then random patches.

Every scan is read once in the main process: canonical RAS+ HU, cropped to its organ's box plus a
margin (full-resolution scans are large), resampled to ``data.spacing_mm`` and given a target of
0 background / 1 organ / 2 tumour. The random part runs in DataLoader worker processes per item:
synthetic tumours (:class:`tumorsyn.transforms.RandTumorSynthesisd`, on HU, for the sources named in
``synthesis.apply_to``), patch sampling around background/organ/tumour, HU windowing, flips.

Cost: synthesis must not slow training, so nothing per item scales with the scan when it need
not. The scans are padded to the patch size once; each scan's per-class voxel indices (patch
centres) are computed once and only corrected where a synthetic tumour was written; the synthesis
transform keeps each scan's placement facts per worker (``cache_key``); only the tumour's box is
synthesised. Workers prefetch, so this work overlaps the training step.

Reproducibility and resuming: sample ``k`` of a run is a pure function of ``(seed, k)`` — which case
it comes from and every random draw of its transforms — whatever the number of workers or
processes. A run resumed at optimizer step ``s`` restarts the stream at sample ``s × samples per step``.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.transforms import Randomizable

from tumorsyn.errors import ConfigError, EmptyOrganError, GridMismatchError, TumorsynError
from tumorsyn.io.cases import Case, cases_from_entries
from tumorsyn.io.cases import read_case_masks as _read_case_masks
from tumorsyn.io.layouts import discover_cases

__all__ = ["CaseFiles", "source_cases", "load_case_arrays", "resample_array", "build_train_transform",
           "TrainSamples", "make_train_loader", "load_sources", "scale_hu"]

BACKGROUND, ORGAN, TUMOR = 0, 1, 2
SCAN_KEY = "scan_key"              # "<source>:<case id>": names a loaded scan (synthesis cache key)
BASE_INDICES_KEY = "class_indices_base"  # the scan's own per-class voxel indices (before synthesis)
INDICES_KEY = "class_indices"      # per-class voxel indices of this item (after synthesis)


# The one case record of tumorsyn (``source`` is the config key, ``data.real`` ...); the old name stays.
CaseFiles = Case


def source_cases(source: dict, name: str) -> list[Case]:
    """The cases of one config source (``data.real``, ``data.healthy``, ``data.validation``, ``experiment.test``).

    ``dataset`` (any layout of :func:`tumorsyn.io.cases.discover_cases`) and ``cases`` entries
    (``{ct, labels}`` or ``{ct, organ, tumor: [...]}``, optional ``id``) are read by the core's one
    case reader and named by its one rule (:func:`tumorsyn.io.cases.case_ids`).
    """
    preset = source.get("label_preset") or "decathlon"
    organ_labels = tuple(source["organ_labels"]) if source.get("organ_labels") else None
    cases: list[Case] = []
    if source.get("dataset"):
        cases += discover_cases(source["dataset"], label_preset=preset, organ_labels=organ_labels, name=name)
    cases += cases_from_entries(source.get("cases") or [], source=name, label_preset=preset,
                                organ_labels=organ_labels)
    seen = set()
    for case in cases:
        if case.case_id in seen:
            raise ConfigError(f"{name}: case id {case.case_id} appears twice; give each case an 'id'")
        seen.add(case.case_id)
    return cases


def read_case_masks(case: Case, organ: str, scan=None):
    """(scan, organ mask, tumour mask) of a case, canonical (X, Y, Z) bool, checked to share the CT's grid.

    :func:`tumorsyn.io.cases.read_case_masks`, with an empty organ reported as a config problem.
    """
    try:
        return _read_case_masks(case, organ, scan=scan)
    except EmptyOrganError as exc:
        if case.labels is None:
            raise ConfigError(str(exc)) from None
        from tumorsyn.io.labels import label_values
        from tumorsyn.io.scan import load_labels

        present = ", ".join(str(v) for v in np.unique(label_values(load_labels(case.labels)))[:12])
        raise ConfigError(f"{case.labels}: label preset {case.label_preset!r} gives no {organ} voxels "
                          f"(labels present: {present}); label preset mismatch: set label_preset or organ_labels") from None


def resample_array(array: np.ndarray | torch.Tensor, shape: Sequence[int], *, mode: str) -> torch.Tensor:
    """(C, X, Y, Z) array resized to ``shape`` (trilinear for values, nearest for labels), float32 tensor."""
    tensor = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array).float()
    if tuple(tensor.shape[1:]) == tuple(shape):
        return tensor
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return torch.nn.functional.interpolate(tensor[None], size=tuple(int(s) for s in shape), mode=mode, **kwargs)[0]


def target_shape(shape: Sequence[int], spacing_mm: Sequence[float], target_mm: Sequence[float] | None) -> tuple:
    """Grid shape after resampling ``shape`` from ``spacing_mm`` to ``target_mm`` (same extent in mm)."""
    if target_mm is None:
        return tuple(int(s) for s in shape)
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, target_mm))


def organ_box(mask: np.ndarray, spacing_mm: Sequence[float], margin_mm: float) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin_mm`` on every side, clipped to the grid."""
    idx = np.nonzero(mask)
    box = []
    for axis, sp in enumerate(spacing_mm):
        pad = int(math.ceil(margin_mm / sp))
        box.append(slice(max(0, int(idx[axis].min()) - pad), min(mask.shape[axis], int(idx[axis].max()) + 1 + pad)))
    return tuple(box)


def load_case_arrays(case: Case, *, organ: str, spacing_mm: Sequence[float] | None, margin_mm: float) -> dict:
    """One case ready for training: organ crop, resampled; image in HU, label 0/1/2.

    Returns
    -------
    dict
        ``image`` (MetaTensor (1, X, Y, Z) float32 HU, affine = diag(spacing)), ``label`` (MetaTensor
        (1, X, Y, Z) uint8), ``case_id``, ``source``, ``spacing_mm``.
    """
    from monai.data import MetaTensor

    try:
        scan, organ_mask, tumor = read_case_masks(case, organ)
    except GridMismatchError as exc:
        raise ConfigError(f"case {case.case_id}: {exc}") from None
    box = organ_box(organ_mask | tumor, scan.spacing_mm, margin_mm)
    hu = scan.values()[box]
    label = np.zeros(hu.shape, dtype=np.uint8)
    label[organ_mask[box]] = ORGAN
    label[tumor[box]] = TUMOR
    spacing = tuple(spacing_mm) if spacing_mm is not None else scan.spacing_mm
    shape = target_shape(hu.shape, scan.spacing_mm, spacing_mm)
    image = resample_array(hu[None], shape, mode="trilinear")
    label_t = resample_array(label[None], shape, mode="nearest").to(torch.uint8)
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return {"image": MetaTensor(image, affine=affine), "label": MetaTensor(label_t, affine=affine.clone()),
            "case_id": case.case_id, "source": case.source, "spacing_mm": [float(s) for s in spacing]}


def load_sources(config: dict, names: Sequence[str] = ("real", "healthy")) -> list[dict]:
    """Load every case of the named ``data`` sources; an empty result is a :class:`ConfigError`."""
    items = []
    for name in names:
        for case in source_cases(config["data"][name], name):
            try:
                items.append(load_case_arrays(case, organ=config["organ"], spacing_mm=config["data"]["spacing_mm"],
                                              margin_mm=config["data"]["crop_margin_mm"]))
            except TumorsynError as exc:
                raise type(exc)(f"data.{name} case {case.case_id}: {exc}") from None
    if not items and "validation" not in names:
        raise ConfigError("empty dataset: data.real and data.healthy hold no cases; give a dataset folder or cases")
    return items


def scale_hu(image, hu_window: Sequence[float]):
    """HU -> [0, 1] over ``hu_window`` (clipped): the network's input scaling, shared by training and inference."""
    low, high = float(hu_window[0]), float(hu_window[1])
    return ((image - low) / (high - low)).clamp(0.0, 1.0) if isinstance(image, torch.Tensor) else \
        np.clip((image - low) / (high - low), 0.0, 1.0)


class _SynthesisForSources(Randomizable):
    """Apply ``RandTumorSynthesisd`` to items whose ``source`` is in ``apply_to``; pass the others through.

    The others get the same keys (no specs, reason ``"source <name> not synthesised"``) so that
    every item of a batch collates alike.
    """

    def __init__(self, transform, apply_to: Sequence[str]) -> None:
        self.transform = transform
        self.apply_to = tuple(apply_to)

    def randomize(self, data=None) -> None:  # the wrapped transform draws its own values
        return None

    def set_random_state(self, seed=None, state=None):
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, data):
        if data.get("source") in self.apply_to:
            return self.transform(data)
        return self._passed(data)

    def _passed(self, data) -> dict:
        from tumorsyn.transforms import REASON_KEY, SPECS_KEY

        d = dict(data)
        d[SPECS_KEY] = "[]" if self.transform.specs_as_json else []
        d[REASON_KEY] = f"source {data.get('source')} not synthesised"
        return d

    def apply_items(self, items: Sequence[dict], seeds: Sequence[int]) -> list[dict]:
        """Items of the synthesised sources through ``transform.apply_items`` (one batch), the others passed."""
        chosen = [i for i, item in enumerate(items) if item.get("source") in self.apply_to]
        out = [self._passed(item) for item in items]
        done = self.transform.apply_items([items[i] for i in chosen], seeds=[seeds[i] for i in chosen]) if chosen else []
        for i, item in zip(chosen, done):
            out[i] = item
        return out


def class_indices(label: np.ndarray, num_classes: int = 3) -> list[np.ndarray]:
    """Flat voxel indices of each class 0 .. num_classes-1 in ``label`` (what patch centres are drawn from)."""
    flat = np.asarray(label).reshape(-1)
    return [np.flatnonzero(flat == c) for c in range(num_classes)]


def _synthesised(item: dict) -> bool:
    from tumorsyn.transforms import SPECS_KEY

    specs = item.get(SPECS_KEY)
    return bool(specs) and specs != "[]"


def _without(indices: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Sorted ``indices`` minus the (sorted) values in ``drop``; a binary search, no pass over every voxel."""
    if indices.size == 0 or drop.size == 0:
        return indices
    pos = np.minimum(np.searchsorted(indices, drop), indices.size - 1)
    hit = pos[indices[pos] == drop]
    return np.delete(indices, hit) if hit.size else indices


class _ClassIndicesd:
    """Per-class voxel indices for ``RandCropByLabelClassesd``: the scan's cached ones, corrected after synthesis.

    Counting them from scratch scans the whole volume for every item, and so does filtering every
    cached index by the new label. A synthetic tumour only turns voxels of other classes into tumour,
    so the new tumour indices are read afresh and just those voxels are removed from the other
    classes' (sorted) index lists. Without cached indices in the item they are counted from the label.
    """

    def __init__(self, num_classes: int = 3) -> None:
        self.num_classes = int(num_classes)

    def __call__(self, data):
        d = dict(data)
        label = d["label"]
        flat = (label.as_tensor() if hasattr(label, "as_tensor") else torch.as_tensor(label)).numpy().reshape(-1)
        base = d.pop(BASE_INDICES_KEY, None)
        if base is None:
            d[INDICES_KEY] = class_indices(flat, self.num_classes)
        elif _synthesised(d):
            tumour = np.flatnonzero(flat == TUMOR)
            gained = tumour[~np.isin(tumour, base[TUMOR], assume_unique=True)] if base[TUMOR].size else tumour
            d[INDICES_KEY] = [tumour if c == TUMOR else _without(idx, gained) for c, idx in enumerate(base)]
        else:
            d[INDICES_KEY] = list(base)
        return d


class _ScaleHUd:
    """HU window -> [0, 1] on the image key (the same function inference uses)."""

    def __init__(self, hu_window) -> None:
        self.hu_window = tuple(hu_window)

    def __call__(self, data):
        d = dict(data)
        d["image"] = scale_hu(d["image"], self.hu_window)
        return d


def build_synthesis(config: dict, *, device: str = "auto") -> _SynthesisForSources:
    """``RandTumorSynthesisd`` as the config says, applied to the sources of ``synthesis.apply_to``."""
    from tumorsyn.transforms import RandTumorSynthesisd

    s = config["synthesis"]
    synth = RandTumorSynthesisd(keys=("image", "label"), organ=config["organ"], label_preset="decathlon",
                                tumor_label=TUMOR, method=s["method"], size_mm=s["size_mm"],
                                prob=float(s["prob"]), count=int(s["count"]), specs_as_json=True,
                                cache_key=SCAN_KEY, device=device, **s["options"])
    return _SynthesisForSources(synth, s["apply_to"])


def build_train_transform(config: dict, *, synthesis: bool | None = None, device: str = "cpu"):
    """The random part of the pipeline (runs in DataLoader workers): synthesis, patches, scaling, flips.

    ``synthesis=False`` leaves synthesis out (no synthesis, or synthesis batched in the training
    process by :class:`TrainSamples`). ``device`` is where synthesis runs: keep ``"cpu"`` in
    DataLoader workers (a forked worker cannot use CUDA once the training process has).
    """
    from monai.transforms import Compose, DeleteItemsd, RandCropByLabelClassesd, RandFlipd, SpatialPadd

    d, s = config["data"], config["synthesis"]
    use_synthesis = s["enabled"] if synthesis is None else synthesis
    transforms = []
    if use_synthesis:
        transforms.append(build_synthesis(config, device=device))
    transforms += [
        # A no-op for TrainSamples' items (padded once at load); kept for scans given another way.
        SpatialPadd(keys=("image", "label"), spatial_size=d["roi_size"], mode="constant", value=0),
        _ClassIndicesd(num_classes=3),
        RandCropByLabelClassesd(keys=("image", "label"), label_key="label", spatial_size=d["roi_size"],
                                ratios=[float(r) for r in d["crop_ratios"]], num_classes=3,
                                num_samples=d["samples_per_scan"], indices_key=INDICES_KEY, warn=False),
        DeleteItemsd(keys=INDICES_KEY),
        _ScaleHUd(d["hu_window"]),
    ]
    if d["flip_prob"] > 0:
        transforms += [RandFlipd(keys=("image", "label"), prob=float(d["flip_prob"]), spatial_axis=a) for a in range(3)]
    return Compose(transforms)


class TrainSamples(torch.utils.data.Dataset):
    """Sample ``k`` = a case drawn with the source weights, transformed with randomness seeded by ``(seed, k)``.

    Items carry ``tumor_specs`` (JSON text of the applied specs), ``tumor_skip_reason``, ``case_id``,
    ``source`` and ``worker`` (the DataLoader worker id that made them, -1 in the main process).

    The deterministic per-scan work is done here, once: scans are padded to ``roi_size`` (voxels;
    as the pipeline's own ``SpatialPadd`` would for every item) and each scan's per-class voxel
    indices are kept for the patch sampler.

    With ``synthesis`` (from :func:`build_synthesis`, on the training device) a batch is made by
    ``__getitems__``: the tumours of all its samples are written in one generator call (one GPU
    batch for the diffusion model), then ``transform`` (without synthesis) cuts the patches. Use it
    with ``workers=0``: it runs in the training process, where the model stays loaded.
    """

    def __init__(self, items: Sequence[dict], transform, *, seed: int, weights: dict | None = None,
                 roi_size: Sequence[int] | None = None, synthesis: _SynthesisForSources | None = None) -> None:
        self.synthesis = synthesis
        if not items:
            raise ConfigError("empty dataset: no training cases")
        self.items = [_padded(item, roi_size) for item in items]
        self.indices = [class_indices(item["label"].as_tensor().numpy() if hasattr(item["label"], "as_tensor")
                                      else np.asarray(item["label"])) for item in self.items]
        self.transform = transform
        self.seed = int(seed)
        weights = weights or {}
        raw = np.array([float(weights.get(item["source"], 1.0)) for item in self.items])
        # Each source's weight is shared by its cases: weight 1 and 1 means half the samples from each source.
        counts = {src: sum(1 for it in self.items if it["source"] == src) for src in {it["source"] for it in self.items}}
        raw = raw / np.array([counts[item["source"]] for item in self.items])
        if raw.sum() <= 0:
            raise ConfigError("data.real.weight and data.healthy.weight are both 0 for the loaded cases")
        self.p = raw / raw.sum()

    def __len__(self) -> int:
        return len(self.items)

    def _draw(self, k: int) -> tuple[dict, int]:
        """Sample ``k``'s scan (an item sharing the scan's arrays) and its transform seed."""
        rng = np.random.default_rng([self.seed, int(k)])
        index = int(rng.choice(len(self.items), p=self.p))
        seed = int(rng.integers(0, 2**31 - 1))
        item = {key: self.items[index][key] for key in ("image", "label", "case_id", "source")}
        item[SCAN_KEY] = f"{item['source']}:{item['case_id']}"
        item[BASE_INDICES_KEY] = self.indices[index]
        return item, seed

    def __getitem__(self, k: int):
        if self.synthesis is not None:
            return self.__getitems__([k])[0]
        item, seed = self._draw(k)
        self.transform.set_random_state(seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.transform(item)
        return self._finish(k, out)

    def __getitems__(self, ks: Sequence[int]) -> list:
        """Samples ``ks`` (a DataLoader batch); with ``synthesis`` their tumours are written in one call."""
        if self.synthesis is None:
            return [self[k] for k in ks]
        drawn = [self._draw(k) for k in ks]
        # The synthesis seed is a function of (seed, k) alone: a sample does not depend on its batch.
        synth_seeds = [int(np.random.default_rng([self.seed, int(k), 1]).integers(0, 2**31 - 1)) for k in ks]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = self.synthesis.apply_items([item for item, _ in drawn], seeds=synth_seeds)
            out = []
            for k, item, (_, seed) in zip(ks, items, drawn):
                self.transform.set_random_state(seed=seed)
                out.append(self._finish(k, self.transform(item)))
        return out

    def _finish(self, k: int, out) -> list:
        info = torch.utils.data.get_worker_info()
        out = out if isinstance(out, list) else [out]
        for o in out:
            o["worker"] = -1 if info is None else int(info.id)
            o["sample"] = int(k)
            o.pop("spacing_mm", None)
            o.pop(SCAN_KEY, None)
        return out


def _padded(item: dict, roi_size: Sequence[int] | None) -> dict:
    """``item`` with image and label padded (constant 0) to at least ``roi_size``, as ``SpatialPadd`` does."""
    if roi_size is None or all(n >= r for n, r in zip(item["image"].shape[1:], roi_size)):
        return item
    from monai.transforms import SpatialPadd

    pad = SpatialPadd(keys=("image", "label"), spatial_size=list(roi_size), mode="constant", value=0)
    out = dict(item)
    out.update(pad({"image": item["image"], "label": item["label"]}))
    return out


def make_train_loader(dataset: TrainSamples, *, start: int, stop: int, batch_size: int, workers: int):
    """A DataLoader over samples ``start .. stop-1`` of ``dataset`` (in order), batched with MONAI's collation."""
    from monai.data import list_data_collate

    # One loader serves the whole run (workers and their caches live until the last step); each
    # worker keeps two batches ready, so synthesis overlaps the training step.
    kwargs = {"persistent_workers": False, "prefetch_factor": 2} if workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=range(start, stop), num_workers=workers,
                                       collate_fn=list_data_collate, drop_last=False, **kwargs)
