"""The deterministic MONAI transform :class:`TumorSynthesisd`: given specs, written through the core.

It reads an item (image in HU, label map, spacing), hands the specs to
:func:`tumorsyn.apply.apply_batch` and writes the results back in each input's type and dtype.
:class:`~tumorsyn.transforms.monai.RandTumorSynthesisd` builds on it (TorchIO's pattern).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from tumorsyn.apply import apply_batch, paste, paste_labels
from tumorsyn.device import parse_device
from tumorsyn.errors import ConfigError, EmptyOrganError, GridMismatchError
from tumorsyn.generators import get_generator
from tumorsyn.io.labels import (ORGANS, lesion_mask_from_labels, organ_label_values, organ_mask_from_labels,
                                tumor_label_value)
from tumorsyn.placement import PlacementContext, bounding_box, check_hu_span
from tumorsyn.spec import TumorSpec, as_specs
from tumorsyn.transforms._tensors import (item_spacing, like, parse_keys, parse_spacing, parse_tumor_label, spatial,
                                          with_meta)

__all__ = ["TumorSynthesisd", "ItemInputs", "SPECS_KEY", "REASON_KEY"]

SPECS_KEY = "tumor_specs"
"""Item (and ``MetaTensor.meta``) key holding the applied specs: a list of JSON dicts."""
REASON_KEY = "tumor_skip_reason"
"""Item (and ``MetaTensor.meta``) key saying why no tumour was written; ``""`` when one was."""


@dataclass
class ItemInputs:
    """One item's image and label in numpy (X, Y, Z), plus what placement needs."""

    image: np.ndarray          # (X, Y, Z) in the input dtype
    labels: np.ndarray         # (X, Y, Z) integer label values
    spacing_mm: tuple
    organ_mask: np.ndarray | None = None
    reason: str = ""           # why this item cannot take a tumour
    ct_hu: np.ndarray | None = None  # the image as float32 HU, checked (set once placement needs it)


class TumorSynthesisd(MapTransform):
    """Apply given tumour specs to image and label map: the deterministic twin of :class:`RandTumorSynthesisd`.

    Parameters
    ----------
    keys : (str, str)
        Image key first, label-map key second.
    specs : TumorSpec, dict, JSON str, or a sequence of them, optional
        The tumours to write, in order, e.g. the ``tumor_specs`` a :class:`RandTumorSynthesisd`
        recorded (or their JSON text). ``None`` replays the specs each item carries in
        ``data["tumor_specs"]``.
    organ, organ_labels, label_preset, tumor_label, spacing_mm, allow_missing_keys, specs_as_json, device
        As in :class:`RandTumorSynthesisd`. The organ mask must be the one the specs were drawn on
        (the rules generator cuts the tumour at the organ surface).

    Notes
    -----
    The specs replay only on the grid (shape and spacing) they were drawn for; otherwise
    :class:`~tumorsyn.errors.InputError` says so. Records ``tumor_specs`` and ``tumor_skip_reason``
    like the random transform.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), specs=None, organ: str = "liver",
                 organ_labels: Iterable[int] | None = None, label_preset: str | None = "totalsegmentator",
                 tumor_label: int | None = None, spacing_mm: Sequence[float] | None = None,
                 allow_missing_keys: bool = False, specs_as_json: bool = False, device: str = "auto", *,
                 owner: str | None = None) -> None:
        # ``owner``: the transform named in error messages (the random transform that holds this one).
        self.name = owner or type(self).__name__
        try:
            # Syntax here; whether the GPU exists is asked by the generators that use one.
            self.device = parse_device(device)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        self.specs_as_json = bool(specs_as_json)
        self.image_key, self.label_key = parse_keys(keys, self.name)
        MapTransform.__init__(self, (self.image_key, self.label_key), allow_missing_keys)
        if organ not in ORGANS:
            raise ConfigError(f"{self.name}: unknown organ {organ!r}; choose one of {', '.join(ORGANS)}")
        self.organ = organ
        self.organ_labels = None if organ_labels is None else tuple(int(v) for v in organ_labels)
        self.label_preset = label_preset
        organ_label_values(organ, label_preset, self.organ_labels)  # fail now, not in the middle of an epoch
        self.tumor_label = parse_tumor_label(tumor_label)
        self.spacing_mm = parse_spacing(spacing_mm)
        self.specs = None if specs is None else self._as_specs(specs)
        for method in sorted({spec.method for spec in self.specs or ()}):
            try:
                get_generator(method, device=self.device)  # a GPU that is not there: ConfigError now
            except ConfigError as exc:
                raise ConfigError(f"{self.name}: {exc}") from None

    @staticmethod
    def _as_specs(specs) -> list[TumorSpec]:
        return as_specs(specs)

    # --- reading ----------------------------------------------------------------------------------
    def missing_key(self, data: Mapping) -> Hashable | None:
        """The first missing key; raises KeyError for it unless missing keys are allowed."""
        for key in (self.image_key, self.label_key):
            if key not in data:
                if self.allow_missing_keys:
                    return key
                raise KeyError(f"Key `{key}` of transform `{self.name}` was missing in the data and "
                               "allow_missing_keys==False.")
        return None

    def spacing(self, data: Mapping) -> tuple[float, float, float]:
        """Voxel size in mm: the argument, else the image's affine (MetaTensor or ``<key>_meta_dict``)."""
        return self.spacing_mm if self.spacing_mm is not None else item_spacing(data, self.image_key, self.name)

    def views(self, data: Mapping) -> tuple[np.ndarray, np.ndarray]:
        """The item's image and label map as (X, Y, Z) numpy views."""
        return (spatial(data[self.image_key], self.image_key, self.name),
                spatial(data[self.label_key], self.label_key, self.name))

    def read(self, data: Mapping) -> ItemInputs:
        """The item's arrays, spacing and organ mask (``reason`` set when the organ is absent)."""
        image, labels = self.views(data)
        if image.shape != labels.shape:
            raise GridMismatchError(f"{self.name}: label grid {labels.shape} differs from image grid {image.shape}; "
                                    "resample the label map onto the image first")
        if not np.issubdtype(labels.dtype, np.integer):
            labels = np.rint(labels).astype(np.int64)
        inputs = ItemInputs(image=image, labels=labels, spacing_mm=self.spacing(data))
        try:
            inputs.organ_mask = organ_mask_from_labels(labels, self.organ, preset=self.label_preset,
                                                       organ_labels=self.organ_labels)
        except EmptyOrganError as exc:
            inputs.reason = f"empty organ: {exc}"
        return inputs

    def context(self, inputs: ItemInputs) -> PlacementContext | None:
        """The scan's placement context (it checks the HU); ``None`` (reason set) when its organ is empty."""
        inputs.ct_hu = np.asarray(inputs.image, dtype=np.float32)
        try:
            return PlacementContext(inputs.organ_mask, inputs.spacing_mm, self.organ, ct_hu=inputs.ct_hu,
                                    avoid=self._avoid(inputs.labels))
        except EmptyOrganError as exc:
            inputs.reason = f"empty organ: {exc}"
            return None

    def _hu(self, inputs: ItemInputs) -> np.ndarray:
        """The image as float32 HU, checked by the core's rule where placement has not checked it."""
        if inputs.ct_hu is None:
            inputs.ct_hu = np.asarray(inputs.image, dtype=np.float32)
            check_hu_span(inputs.ct_hu[bounding_box(inputs.organ_mask)], self.organ)
        return inputs.ct_hu

    def _label_value(self, labels: np.ndarray) -> int:
        """The label written for tumour voxels (see the ``tumor_label`` parameter)."""
        return tumor_label_value(labels, label_preset=self.label_preset, organ_labels=self.organ_labels,
                                 tumor_label=self.tumor_label)

    def _avoid(self, labels: np.ndarray) -> np.ndarray:
        """Existing lesions and tumours: new tumours keep clear of them."""
        avoid = lesion_mask_from_labels(labels, preset=self.label_preset)
        return avoid | (labels == self._label_value(labels))

    # --- applying ---------------------------------------------------------------------------------
    def __call__(self, data: Mapping) -> dict:
        return self.apply_items([data])[0]

    def _entry(self, data: Mapping) -> tuple:
        d = dict(data)
        missing = self.missing_key(d)
        if missing is not None:
            return d, None, [], f"missing key {missing!r}"
        specs = self.specs if self.specs is not None else self._as_specs(d.get(SPECS_KEY, []))
        if not specs:
            return d, None, [], "no specs given"
        inputs = self.read(d)
        if inputs.reason:
            return d, None, [], inputs.reason
        return d, inputs, specs, ""

    def apply_items(self, items: Sequence[Mapping]) -> list[dict]:
        """Apply the specs to several items at once, batching their tumours across items (see
        :meth:`RandTumorSynthesisd.apply_items`)."""
        return self.write([self._entry(data) for data in items])

    def write(self, entries: Sequence[tuple]) -> list[dict]:
        """Apply each ``(data, inputs, specs, reason)`` entry's specs and store the results in its item.

        The tumours of all entries go through one :func:`tumorsyn.apply.apply_batch` call, so a
        batching generator (diffusion) samples them in one GPU batch. Outputs keep each input's
        type and dtype; image voxels no tumour touched keep their exact input values.
        """
        active = [i for i, (_, _, specs, _) in enumerate(entries) if specs]
        values = {}
        for i in active:
            data, inputs = entries[i][0], entries[i][1]
            values[i] = self._label_value(inputs.labels)
            original = spatial(data[self.label_key], self.label_key, self.name)
            if np.issubdtype(original.dtype, np.integer) and values[i] > np.iinfo(original.dtype).max:
                raise ConfigError(f"{self.name}: tumour label {values[i]} does not fit the label map's "
                                  f"{original.dtype}; give tumor_label= or cast the labels (CastToTyped)")
        scans = [(self._hu(entries[i][1]), entries[i][1].organ_mask, entries[i][1].spacing_mm, entries[i][2])
                 for i in active]
        outputs = dict(zip(active, apply_batch(scans, device=self.device)))
        results = []
        for i, (data, inputs, specs, reason) in enumerate(entries):
            applied = outputs.get(i)
            if applied is not None:
                # A float32 image is the core's own output; any other dtype takes the changed voxels.
                image = applied.ct if inputs.image.dtype == np.float32 else paste(np.array(inputs.image, copy=True),
                                                                                 applied.tumors)
                labels = spatial(data[self.label_key], self.label_key, self.name)
                labels = paste_labels(np.array(labels, copy=True), applied.tumors, values[i])
                data[self.image_key] = like(image, data[self.image_key])
                data[self.label_key] = like(labels, data[self.label_key])
            results.append(self._record(data, specs, reason))
        return results

    def _record(self, data: dict, specs: Sequence[TumorSpec], reason: str) -> dict:
        """Record the applied specs and the reason in the item (and in its MetaTensors' ``.meta``)."""
        records: list | str = [spec.to_dict() for spec in specs]
        if self.specs_as_json:
            records = json.dumps(records, sort_keys=True)
        data[SPECS_KEY] = records
        data[REASON_KEY] = reason
        for key in (self.image_key, self.label_key):
            if key in data:
                data[key] = with_meta(data[key], {SPECS_KEY: records, REASON_KEY: reason})
        return data
