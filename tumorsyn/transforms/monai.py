"""The random MONAI transform :class:`RandTumorSynthesisd`: draws specs, then applies them through its twin.

It draws the specs (:func:`tumorsyn.sampling.iter_specs`, from MONAI's own random state) and gives them
to the :class:`~tumorsyn.transforms.fixed.TumorSynthesisd` it holds: the random transform builds on its
deterministic twin, as TorchIO's do.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from tumorsyn.errors import ConfigError, OrganTooSmallError
from tumorsyn.generators import get_generator
from tumorsyn.placement import PlacementContext
from tumorsyn.sampling import check_options, iter_specs, parse_size_bins
from tumorsyn.spec import TumorSpec
from tumorsyn.transforms._tensors import fingerprint
from tumorsyn.transforms.fixed import ItemInputs, TumorSynthesisd

__all__ = ["RandTumorSynthesisd"]


class RandTumorSynthesisd(RandomizableTransform, MapTransform):
    """Write random synthetic tumours into a CT image and its label map (MONAI dictionary transform).

    With probability ``prob`` an item gets ``count`` tumours drawn by :func:`tumorsyn.sample_specs`;
    every random choice comes from the transform's ``self.R`` (MONAI's ``Randomizable`` state), so
    ``set_random_state(seed)`` on the transform or on its ``Compose``, or
    ``monai.utils.set_determinism(seed)`` before building the ``Compose``, reproduces a run. The drawn
    specs are kept in the item, so every tumour can be regenerated with :func:`tumorsyn.synthesize`.

    Parameters
    ----------
    keys : (str, str)
        Image key first, label-map key second.
    organ : {'liver', 'pancreas', 'kidney'}
        Host organ of the tumours.
    organ_labels : iterable of int, optional
        Label values of the organ in the label map; by default ``LABEL_PRESETS[label_preset][organ]``
        (TotalSegmentator: liver 5, pancreas 7, kidney 2 and 3).
    label_preset : str
        Key of :data:`tumorsyn.io.labels.LABEL_PRESETS` (``"totalsegmentator"``, ``"decathlon"``,
        ``"kits"``, ``"binary"``). Its ``"lesion"`` labels mark existing tumours, which new ones avoid.
    tumor_label : int, optional
        Value written into the label map where a tumour is visible. By default the preset's first
        lesion label (decathlon and KiTS: 2), else the item's largest label + 1 (2 for a binary
        organ mask). That default can differ between items of a multi-label dataset: give the value
        explicitly when the label maps do not all hold the same labels.
    method : str
        Generator (``"rules"``, or see :func:`tumorsyn.available_generators`).
    size_mm : float, (float, float) or list of ((float, float), float)
        Equivalent-sphere diameter of each tumour, in millimetres: one range drawn uniformly, or
        weighted size bins ``[((low_mm, high_mm), weight), ...]``; a bin is drawn per tumour, then a
        size in it. Example after DiffTumor's early-tumour mix (80 % small, 10 % medium, 10 % large):
        ``[((5, 10), 0.8), ((10, 20), 0.1), ((20, 40), 0.1)]``. Weights need not sum to 1.
    prob : float
        Probability, in [0, 1], that an item gets tumours.
    count : int
        Tumours per selected item; they never overlap.
    spacing_mm : (float, float, float), optional
        Voxel size (X, Y, Z) in mm. By default it is read from the image's affine (a MONAI
        ``MetaTensor``, or ``data["<image key>_meta_dict"]["affine"]`` / ``["pixdim"]``).
    allow_missing_keys : bool
        When image or label is missing, pass the item through (reason recorded) instead of raising
        ``KeyError``.
    specs_as_json : bool
        Record the specs as one JSON text (of the list of spec dicts) instead of a list of dicts:
        strings pass PyTorch's default collation, so any DataLoader can batch the items.
    **options
        Passed to :func:`tumorsyn.sample_spec` and the generator, e.g. ``appearance="rim"``,
        ``allow_smaller=True``, ``max_tries=50``.
    cache_key : str, optional
        Item key whose value names the scan (e.g. ``"case_id"``), for pipelines that draw many items
        from the same scans held in memory (a dataset of loaded scans, ``CacheDataset``). The per-scan
        work (organ mask, HU check, organ statistics, depth and vessel maps of
        :class:`~tumorsyn.placement.PlacementContext`) is then done once per scan and process and
        reused, with the same result. The value must name the unsynthesised scan: an entry whose
        grid, spacing or sampled voxels differ is rebuilt.
    cache_size : int
        Scans remembered per process (least recently used dropped first) when ``cache_key`` is given.
    device : {'auto', 'cpu', 'cuda', 'cuda:N'}
        Where generators with a GPU path run (the automaton's kernel, the diffusion model); every
        device draws the same specs. In DataLoader worker processes keep ``"cpu"`` (a forked worker
        cannot use CUDA once the training process has); to sample on the training GPU, run
        :meth:`apply_items` in the training process.

    Notes
    -----
    *Input.* Image and label are numpy arrays, torch tensors or ``MetaTensor``s, channel-first with
    one channel, ``(1, X, Y, Z)``, as after ``EnsureChannelFirstd`` (``(X, Y, Z)`` is accepted too).
    The image must be in Hounsfield units: apply this transform **before** intensity scaling or
    normalisation (a ``NotHUError`` is raised otherwise) and after any resampling (the specs hold
    the grid they were drawn for). Outputs keep each input's type, dtype, device and shape; image
    voxels no tumour touches keep their exact input values.

    *Recorded.* ``data["tumor_specs"]`` is the list of applied specs as JSON dicts
    (:meth:`TumorSpec.to_dict`; empty when nothing was written) and ``data["tumor_skip_reason"]``
    says why nothing (or fewer than ``count`` tumours) was written, ``""`` when all were. For ``MetaTensor`` image and label the
    same two entries go into ``.meta``. An item whose organ is absent (``EmptyOrganError``) or too
    small for the requested size (``OrganTooSmallError``) passes through unchanged with the reason
    recorded, so one odd case does not stop a training run; other errors raise.

    *Batching tumours across items.* :meth:`apply_items` transforms a list of items and samples all
    their tumours in one generator call (one GPU batch for ``method="diffusion"``).

    *Collating.* PyTorch's default collation (``monai.data.list_data_collate`` included) cannot
    batch the spec dicts: their ``None`` parameters and lists of different lengths (items with and
    without tumours) make it fail, even for ``batch_size=1``. Build the DataLoader with
    ``collate_fn=collate_tumor_specs``, or pass ``specs_as_json=True``.

    *Randomness.* Per call, ``self.R`` gives one draw for "apply or not" and, when applied, one
    32-bit seed for a ``numpy.random.Generator`` that draws the specs. MONAI's ``DataLoader``
    reseeds its dataset's transforms from torch's global generator, so a DataLoader run repeats
    under ``monai.utils.set_determinism(seed)``. Like every MONAI random
    transform, an instance keeps state between ``randomize`` and the application: do not share one
    instance between threads.

    Examples
    --------
    >>> t = RandTumorSynthesisd(keys=("image", "label"), organ="liver", size_mm=(5, 20), prob=1.0)
    >>> t = t.set_random_state(seed=0)
    >>> # item = t({"image": ct_1xyz, "label": labels_1xyz}); item["tumor_specs"][0]["size_mm"]
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), organ: str = "liver",
                 organ_labels: Iterable[int] | None = None, label_preset: str | None = "totalsegmentator",
                 tumor_label: int | None = None, method: str = "rules", size_mm=(5.0, 20.0), prob: float = 0.5,
                 count: int = 1, spacing_mm: Sequence[float] | None = None, allow_missing_keys: bool = False,
                 specs_as_json: bool = False, cache_key: Hashable | None = None, cache_size: int = 8,
                 device: str = "auto", **options) -> None:
        name = type(self).__name__
        if isinstance(cache_size, bool) or int(cache_size) != cache_size or int(cache_size) < 1:
            raise ConfigError(f"{name}: cache_size must be a positive integer, got {cache_size!r}")
        if not (isinstance(prob, (int, float)) and 0.0 <= float(prob) <= 1.0):
            raise ConfigError(f"{name}: prob must be a probability in [0, 1], got {prob!r}")
        if isinstance(count, bool) or int(count) != count or int(count) < 1:
            raise ConfigError(f"{name}: count must be a positive integer, got {count!r}")
        RandomizableTransform.__init__(self, prob=float(prob))
        # The deterministic twin reads items and writes the drawn specs into them.
        self.twin = TumorSynthesisd(keys, organ=organ, organ_labels=organ_labels, label_preset=label_preset,
                                    tumor_label=tumor_label, spacing_mm=spacing_mm,
                                    allow_missing_keys=allow_missing_keys, specs_as_json=specs_as_json,
                                    device=device, owner=name)
        MapTransform.__init__(self, self.twin.keys, allow_missing_keys)
        self.organ, self.device, self.specs_as_json = organ, self.twin.device, self.twin.specs_as_json
        # Fail now, not in the middle of an epoch: an unknown method, an option it does not take,
        # or a GPU (device="cuda:N") that is not there.
        try:
            get_generator(method, device=self.device)
            check_options(method, options)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        self.method = method
        self.size_mm = size_mm
        parse_size_bins(size_mm)
        self.count = int(count)
        self.options = dict(options)
        self._specs: list[TumorSpec] = []
        self._reason = ""
        self._inputs: ItemInputs | None = None
        self.cache_key = cache_key
        self.cache_size = int(cache_size)
        self._cache: OrderedDict = OrderedDict()  # per process: each DataLoader worker fills its own copy

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # a pickled copy (a new worker) starts empty, not with big arrays
        return state

    def _prepared(self, data: Mapping) -> tuple[ItemInputs, PlacementContext | None]:
        """The item's inputs and a placement context of its scan (``None`` with ``inputs.reason`` set).

        With ``cache_key`` the per-scan part comes from the cache: the returned context is a copy
        with its own ``avoid`` mask, so tumours placed for one item never constrain the next.
        """
        twin = self.twin
        key = data.get(self.cache_key) if self.cache_key is not None else None
        if key is None:
            inputs = twin.read(data)
            return inputs, None if inputs.reason else twin.context(inputs)
        image, labels = twin.views(data)
        spacing = twin.spacing(data)
        stamp = (image.shape, labels.shape, spacing, fingerprint(image), fingerprint(labels))
        entry = self._cache.get(key)
        if entry is None or entry[0] != stamp:
            inputs = twin.read(data)
            context = None if inputs.reason else twin.context(inputs)
            entry = (stamp, inputs.organ_mask, inputs.ct_hu, inputs.reason, context)
            self._cache[key] = entry
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        _, organ_mask, ct_hu, reason, context = entry
        inputs = ItemInputs(image=image, labels=labels, spacing_mm=spacing, organ_mask=organ_mask, reason=reason,
                         ct_hu=ct_hu)
        return inputs, None if context is None else context.with_avoid()

    def randomize(self, data: Mapping) -> None:
        """Draw whether to apply, then the spec(s) for this item, from ``self.R`` only.

        Sets the specs to apply (possibly none) and the reason when there are none. The item is
        read (organ mask, spacing) only when the transform applies.
        """
        super().randomize(None)  # self._do_transform = self.R.rand() < self.prob
        self._specs, self._reason, self._inputs = [], "", None
        if not self._do_transform:
            self._reason = f"not selected (prob={self.prob:g})"
            return
        seed = int(self.R.randint(0, 2**32, dtype=np.uint32))
        inputs, context = self._prepared(data)
        self._inputs = inputs
        if inputs.reason or context is None:
            self._reason = inputs.reason
            return
        specs: list[TumorSpec] = []
        try:
            for spec in iter_specs(inputs.organ_mask, inputs.spacing_mm, count=self.count, organ=self.organ,
                                   size_mm=self.size_mm, rng=np.random.default_rng(seed), context=context,
                                   method=self.method, device=self.device, **self.options):
                specs.append(spec)
        except OrganTooSmallError as exc:
            # One odd case must not stop a training run: keep what fits and say why.
            self._reason = f"organ too small: {exc}" if not specs else \
                f"placed {len(specs)} of {self.count} tumours; organ too small: {exc}"
        self._specs = specs

    def __call__(self, data: Mapping) -> dict:
        """Return a copy of ``data`` with the tumour(s) written in and the specs recorded."""
        return self.apply_items([data])[0]

    def apply_items(self, items: Sequence[Mapping], seeds: Sequence[int] | None = None) -> list[dict]:
        """Transform several items at once, batching their tumours across items.

        Each item is randomized in turn exactly as ``[self(item) for item in items]`` would (with
        ``seeds``, ``set_random_state(seed)`` first, per item), then the tumours of all items are
        written together: generators that batch (``method="diffusion"``) sample every tumour of
        the batch in one call on ``device``. Use it where the model lives on the training GPU,
        e.g. on the list of items a ``DataLoader(..., collate_fn=list)`` yields, before collating;
        the model is loaded once per process and stays on the device.

        Parameters
        ----------
        items : sequence of dict
            Items as the transform takes them one by one.
        seeds : sequence of int, optional
            One random-state seed per item (reproducible per item, whatever the batch).

        Returns
        -------
        list of dict
            The transformed items, in order; equal to transforming them one by one (up to the
            float rounding of a batched network on some devices).
        """
        if seeds is not None and len(seeds) != len(items):
            raise ConfigError(f"{type(self).__name__}.apply_items: {len(seeds)} seeds for {len(items)} items")
        entries = []
        for k, data in enumerate(items):
            if seeds is not None:
                self.set_random_state(seed=int(seeds[k]))
            d = dict(data)
            missing = self.twin.missing_key(d)
            if missing is not None:
                self._specs, self._reason = [], f"missing key {missing!r}"
                entries.append((d, None, [], self._reason))
                continue
            self.randomize(d)
            entries.append((d, self._inputs, list(self._specs), self._reason))
        return self.twin.write(entries)
