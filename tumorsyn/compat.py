"""Work-arounds for third-party packages, each in one place.

diffusers imports torchvision in some of its modules (video transformers, image pipelines) whenever
torchvision is installed. The ``nnunet`` extra pulls torchvision in (nnunetv2 -> timm), and the
torchvision wheel from the package index cannot load beside a CPU-only torch build ("operator
torchvision::nms does not exist"), which would break ``from diffusers.training_utils import EMAModel``.
tumorsyn uses no torchvision feature of diffusers (schedulers and EMA only), so it tells diffusers that
torchvision is absent before importing anything from it.
"""
from __future__ import annotations

__all__ = ["prepare_diffusers"]


def prepare_diffusers() -> None:
    """Hide torchvision from diffusers (call before importing from ``diffusers``; idempotent)."""
    import diffusers.utils.import_utils as import_utils

    import_utils._torchvision_available = False
