"""tumorsyn: realistic early-stage tumours written into healthy abdominal CT.

The core API follows "sample a spec, then apply it deterministically"::

    import numpy as np, tumorsyn
    spec = tumorsyn.sample_spec(organ_mask, spacing_mm, organ="liver", method="rules",
                                size_mm=(5, 20), ct_hu=ct, rng=np.random.default_rng(0))
    ct_out, tumor = tumorsyn.synthesize(ct, organ_mask, spacing_mm, spec)

Heavy modules are imported on first use, so ``import tumorsyn`` stays fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "TumorSpec": "tumorsyn.spec",
    "sample_spec": "tumorsyn.sampling",
    "sample_specs": "tumorsyn.sampling",
    "synthesize": "tumorsyn.apply",
    "apply_specs": "tumorsyn.apply",
    "PlacementContext": "tumorsyn.placement",
    "get_generator": "tumorsyn.generators",
    "available_generators": "tumorsyn.generators",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tumorsyn' has no attribute {name!r}")
