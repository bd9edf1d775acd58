"""Apply tumour specs to scans: the one deterministic path every pipeline shares.

``tumorsyn generate``, the MONAI transforms, segmentation training and the benchmarks all write
tumours through :func:`apply_batch` (or its one-scan form :func:`apply_specs`), which returns one
:class:`TumorResult` per tumour: its box, the HU it wrote there, its visible label and the voxels
it changed. :func:`paste` writes those results back into an image of any dtype, and
:func:`synthesize` is the public "scan in, scan and tumour mask out" function built on them.

>>> import numpy as np, tumorsyn
>>> ct = np.full((60, 60, 40), -1000.0, np.float32)
>>> organ = np.zeros(ct.shape, bool); organ[10:50, 10:50, 5:35] = True
>>> ct[organ] = 60.0 + np.random.default_rng(0).normal(0, 10, organ.sum())
>>> spec = tumorsyn.sample_spec(organ, (1.0, 1.0, 1.5), organ="liver", size_mm=(8, 12), ct_hu=ct, rng=0)
>>> out, tumor = tumorsyn.synthesize(ct, organ, (1.0, 1.0, 1.5), spec)
>>> 8 <= tumorsyn.lesion_size.equivalent_diameter_mm(tumor, (1.0, 1.0, 1.5)) <= 12
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tumorsyn.errors import ConfigError
from tumorsyn.generators import get_generator
from tumorsyn.spec import TumorSpec, check_scan

__all__ = ["TumorResult", "Applied", "apply_specs", "apply_batch", "paste", "paste_labels", "synthesize",
           "render_label"]


@dataclass
class TumorResult:
    """What one tumour wrote: its box, the box's new HU, its visible label and the voxels it touched.

    Attributes
    ----------
    spec : TumorSpec
    slices : tuple of slice
        The tumour's box in the scan (canonical voxel indices).
    ct_box : ndarray of float32, shape of the box
        The box's HU after the tumour; equal to the input outside ``changed_box``.
    label_box : ndarray of bool, shape of the box
        Where the tumour is visible (necrotic core included).
    changed_box : ndarray of bool, shape of the box
        The voxels the generator rewrote (the blend zone included).
    """

    spec: TumorSpec
    slices: tuple[slice, ...]
    ct_box: np.ndarray
    label_box: np.ndarray
    changed_box: np.ndarray


@dataclass
class Applied:
    """One scan's tumours, applied in order.

    ``ct`` (float32 HU with every tumour) is made on first use, so a caller that needs only the
    per-tumour results (a benchmark, a paste into its own image) pays nothing that grows with
    the scan.
    """

    source: np.ndarray                      # the input scan as float32 HU (not modified)
    tumors: list[TumorResult] = field(default_factory=list)
    _ct: np.ndarray | None = field(default=None, repr=False)

    @property
    def ct(self) -> np.ndarray:
        """The scan with every tumour, float32 HU, shape (X, Y, Z)."""
        if self._ct is None:
            self._ct = paste(np.array(self.source, dtype=np.float32, copy=True), self.tumors)
        return self._ct

    def tumor_mask(self) -> np.ndarray:
        """uint8 (X, Y, Z): 1 where any tumour is visible, else 0."""
        return paste_labels(np.zeros(self.source.shape, dtype=np.uint8), self.tumors, 1)

    def written_mask(self) -> np.ndarray:
        """bool (X, Y, Z): voxels whose HU differs from the input (inside the tumours' changed voxels).

        A voxel a generator rewrote to its own value is not counted, so writing only these
        voxels back into a file leaves every other stored value untouched.
        """
        written = np.zeros(self.source.shape, dtype=bool)
        for one in self.tumors:
            written[one.slices] |= one.changed_box
        ct = self.ct
        for one in self.tumors:  # only the boxes are compared, not the whole scan
            written[one.slices] &= ct[one.slices] != self.source[one.slices]
        return written


def render_label(spec: TumorSpec, organ_mask: np.ndarray, *, device: str = "auto", ct_hu: np.ndarray | None = None):
    """The tumour's visible label in its box, without writing a CT: ``(slices, rendering)``.

    Placement uses it to measure a candidate tumour. With ``ct_hu`` the generator gets the box's
    HU (``ct_box``), which generators whose shape depends on the scan use (the cellular automaton
    grows through the tissue's HU) and the others ignore.
    """
    generator = get_generator(spec.method, device=device)
    slices = generator.box(spec)
    origin = tuple(s.start for s in slices)
    return slices, generator.render(spec, organ_mask[slices], origin, ct_box=None if ct_hu is None else ct_hu[slices])


def paste(image: np.ndarray, tumors: Sequence[TumorResult]) -> np.ndarray:
    """Write each tumour's changed voxels into ``image`` (in place, in order) and return it.

    Only the voxels a tumour touched are rewritten: every other voxel keeps its exact input
    value. Values are cast to ``image``'s dtype; integer images are rounded and clipped to their
    type's range (float32 images take the HU as they are).
    """
    for one in tumors:
        changed = one.changed_box
        values = one.ct_box[changed]
        if np.issubdtype(image.dtype, np.integer):
            info = np.iinfo(image.dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        image[one.slices][changed] = values.astype(image.dtype)
    return image


def paste_labels(labels: np.ndarray, tumors: Sequence[TumorResult], value: int) -> np.ndarray:
    """Set ``labels`` to ``value`` (in place) wherever a tumour is visible, and return it."""
    for one in tumors:
        labels[one.slices][one.label_box] = value
    return labels


def _overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))


def _batch_groups(specs: Sequence[TumorSpec], device) -> list[list[TumorSpec]]:
    """Consecutive specs that may be applied together: one batch key, boxes that do not touch.

    Tumours whose boxes are disjoint do not see each other, so applying them together equals
    applying them in order; a spec whose box meets an earlier one of its group starts a new group.
    """
    groups: list[list[TumorSpec]] = []
    boxes: list[tuple[slice, ...]] = []
    key = None
    for one in specs:
        generator = get_generator(one.method, device=device)
        this_key = generator.batch_key(one)
        box = generator.box(one)
        if groups and this_key is not None and this_key == key and not any(_overlap(box, b) for b in boxes):
            groups[-1].append(one)
            boxes.append(box)
        else:
            groups.append([one])
            boxes, key = [box], this_key
    return groups


def _apply_groups(tasks: Sequence[tuple], device) -> list[list[TumorResult]]:
    """Apply one group of specs per scan; groups of all scans that share a batch key in one generator call.

    ``tasks`` holds ``(ct, organ_mask, spacing_mm, specs)``; every spec of a task is applied to the
    same ``ct`` (a group's boxes do not touch). Groups without a key go one spec at a time.
    """
    results: list[list[TumorResult] | None] = [None] * len(tasks)
    buckets: dict = {}
    for t, (ct, organ_mask, spacing_mm, specs) in enumerate(tasks):
        generator = get_generator(specs[0].method, device=device)
        jobs = []
        for one in specs:
            check_scan(one, ct, organ_mask, spacing_mm)
            if one.method != specs[0].method:
                raise ConfigError(f"a batch holds one method, got {specs[0].method!r} and {one.method!r}")
            generator.validate(one)
            slices = generator.box(one)
            jobs.append((slices, (ct[slices], organ_mask[slices], one, tuple(s.start for s in slices))))
        key = generator.batch_key(specs[0])
        if key is not None and all(generator.batch_key(one) == key for one in specs):
            buckets.setdefault((specs[0].method, key), (generator, []))[1].append((t, jobs))
        else:
            results[t] = [TumorResult(job[2], slices, *generator.apply(*job)) for slices, job in jobs]
    for generator, members in buckets.values():
        flat = [job for _, jobs in members for _, job in jobs]
        outputs = iter(generator.apply_batch(flat) if len(flat) > 1 else [generator.apply(*flat[0])])
        for t, jobs in members:
            results[t] = [TumorResult(job[2], slices, *next(outputs)) for slices, job in jobs]
    return results


def apply_batch(scans: Sequence[tuple], *, device: str = "auto") -> list[Applied]:
    """Apply the specs of several scans, batching tumours across scans where the generator can.

    Parameters
    ----------
    scans : sequence of (ct, organ_mask, spacing_mm, specs)
        Per scan: HU array (X, Y, Z) (not modified), bool organ mask on its grid, voxel size in
        mm, and the specs to write in order (possibly none).
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU path run; every device gives the same result.

    Returns
    -------
    list of Applied
        One per scan, in order, with one :class:`TumorResult` per spec.

    Notes
    -----
    Each scan's specs are split into groups of consecutive specs with one batch key whose boxes
    do not touch. Round ``r`` applies the ``r``-th group of every scan; groups of one batch key
    (one diffusion model and step count) go to the generator in a single
    :meth:`~tumorsyn.generators.base.Generator.apply_batch` call, i.e. one GPU batch for a whole
    training batch. Later groups see the tumours of earlier ones, exactly as when the specs are
    applied one after another.
    """
    applied, groups = [], []
    for ct, organ_mask, _, specs in scans:
        # Generators read float32 HU (a float32 scan is used as it is, without a copy).
        applied.append(Applied(source=np.asarray(ct, dtype=np.float32)))
        groups.append(_batch_groups(list(specs), device) if len(specs) else [])
    masks = [np.asarray(organ_mask, dtype=bool) for _, organ_mask, _, _ in scans]
    for r in range(max((len(g) for g in groups), default=0)):
        members = [i for i, g in enumerate(groups) if r < len(g)]
        # Round 0 reads the input itself; later rounds read the scan with the earlier tumours.
        tasks = [(applied[i].source if r == 0 else applied[i].ct, masks[i], scans[i][2], groups[i][r]) for i in members]
        for i, results in zip(members, _apply_groups(tasks, device)):
            applied[i].tumors.extend(results)
            if applied[i]._ct is not None:
                paste(applied[i]._ct, results)
    return applied


def apply_specs(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, specs: TumorSpec | Sequence[TumorSpec], *,
                device: str = "auto") -> Applied:
    """:func:`apply_batch` for one scan: write ``specs`` (in order) and return the per-tumour results.

    Only the tumours' boxes are computed: the cost grows with the tumours, not with the scan,
    until ``Applied.ct`` is asked for.
    """
    specs = [specs] if isinstance(specs, TumorSpec) else list(specs)
    return apply_batch([(ct, organ_mask, spacing_mm, specs)], device=device)[0]


def synthesize(ct: np.ndarray, organ_mask: np.ndarray, spacing_mm, spec: TumorSpec | Sequence[TumorSpec], *,
               device: str = "auto"):
    """Write the tumour(s) described by ``spec`` into a copy of ``ct``; a pure function.

    Parameters
    ----------
    ct : ndarray of float, shape (X, Y, Z)
        Scan in HU, canonical RAS+.
    organ_mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
        Voxel size in mm; must match the spec's.
    spec : TumorSpec or sequence of TumorSpec
        One tumour, or several applied in order.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'} or torch.device
        Where generators with a GPU kernel run; every device gives the same result.

    Returns
    -------
    ct_out : ndarray of float32, shape (X, Y, Z)
        The scan with the tumour(s), as float32 HU (the in-memory contract); voxels outside the
        tumours' blend zones equal ``ct`` cast to float32. To keep a file's own bytes, re-encode
        only the changed voxels (see :func:`tumorsyn.io.write_ct_like` and
        :meth:`Applied.written_mask`).
    tumor : ndarray of uint8, shape (X, Y, Z)
        1 where the tumour is visible (necrotic core included), else 0.
    """
    applied = apply_specs(ct, organ_mask, spacing_mm, spec, device=device)
    return applied.ct, applied.tumor_mask()
