"""MONAI dictionary transforms that write synthetic tumours on the fly inside a training pipeline.

:class:`RandTumorSynthesisd` is the random transform: in ``randomize()`` it draws "apply or not" and
then the tumour spec(s) from MONAI's own random state ``self.R``, and it applies them
deterministically to the image and the label map ("draw once, apply to every key") through
:class:`TumorSynthesisd`, its deterministic twin (TorchIO's pattern). Both are thin adapters over
the core: :mod:`tumorsyn.sampling` draws, :mod:`tumorsyn.apply` writes.

Place these transforms after ``LoadImaged`` + ``EnsureChannelFirstd`` (and any resampling) and
*before* intensity scaling: the image must be in Hounsfield units.

>>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRanged
>>> from tumorsyn.transforms import RandTumorSynthesisd
>>> pipeline = Compose([
...     LoadImaged(keys=("image", "label")),
...     EnsureChannelFirstd(keys=("image", "label")),
...     RandTumorSynthesisd(keys=("image", "label"), organ="liver", size_mm=(5, 20), prob=0.5),
...     ScaleIntensityRanged(keys="image", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
... ])

This package holds the MONAI adapter and the TorchIO adapter (:mod:`tumorsyn.transforms.torchio`:
``RandomTumor`` and ``Tumor``): ``import tumorsyn`` never imports it, so the core runs without torch and
MONAI. ``fixed.py`` holds the deterministic twin, ``monai.py`` the random transform,
``collate.py`` ``collate_tumor_specs``; ``_tensors.py`` converts between MONAI items and the core's arrays.
The names below are imported on first use, so the TorchIO adapter works without MONAI installed and
``import tumorsyn.transforms`` needs neither library.
"""
from __future__ import annotations

_LAZY = {
    "RandTumorSynthesisd": "tumorsyn.transforms.monai",
    "TumorSynthesisd": "tumorsyn.transforms.fixed",
    "collate_tumor_specs": "tumorsyn.transforms.collate",
    "SPECS_KEY": "tumorsyn.transforms.fixed",
    "REASON_KEY": "tumorsyn.transforms.fixed",
}

__all__ = ["RandTumorSynthesisd", "TumorSynthesisd", "collate_tumor_specs", "SPECS_KEY", "REASON_KEY"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tumorsyn.transforms' has no attribute {name!r}")
