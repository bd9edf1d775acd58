"""Accelerate setup shared by both stages, and the versions recorded in every run."""
from __future__ import annotations

import platform

import numpy as np
import torch

from tumorsyn.errors import ConfigError

from train_diffusion.config import LR_SCHEDULES

__all__ = ["make_accelerator", "versions", "micro_seed", "lr_schedule", "ema_model", "ema_copy"]


def make_accelerator(config: dict):
    """An ``Accelerator`` for one stage: device, mixed precision, (multi-)process setup from the launcher."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    t = config["train"]
    if t["mixed_precision"] == "fp16" and (t["cpu"] or not torch.cuda.is_available()):
        raise ConfigError("train.mixed_precision fp16 needs a CUDA GPU; use bf16 (CPU and recent GPUs) or no")
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    # Two stages (and tests) in one process: clear accelerate's per-process singletons first (the
    # distributed setup itself is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(mixed_precision=t["mixed_precision"], cpu=bool(t["cpu"]))


def lr_schedule(optimizer, name: str, total_steps: int):
    """The stage's learning-rate schedule (diffusers' ``get_scheduler``), stepped once per optimizer step.

    ``constant`` keeps ``lr``; ``cosine`` lowers it along a half cosine to 0 at ``total_steps``, so the last
    weights are not one noisy snapshot of a high learning rate (two runs of a recipe then agree more).
    Register it for checkpointing (``accelerator.register_for_checkpointing``) so a resumed run goes on where it was.
    """
    from tumorsyn.compat import prepare_diffusers

    prepare_diffusers()
    from diffusers.optimization import get_scheduler

    if name not in LR_SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {name!r}; known: {', '.join(LR_SCHEDULES)}")
    return get_scheduler(name, optimizer, num_warmup_steps=0, num_training_steps=int(total_steps))


def ema_model(model, decay: float | None, device):
    """diffusers' ``EMAModel`` of ``model``'s weights on ``device`` (None when ``decay`` is None)."""
    if decay is None:
        return None
    from tumorsyn.compat import prepare_diffusers

    prepare_diffusers()
    from diffusers.training_utils import EMAModel

    ema = EMAModel(model.parameters(), decay=float(decay))
    ema.to(device)
    return ema


def ema_copy(model, ema, build):
    """A copy of ``model`` (made by ``build()``) holding the EMA weights, in eval mode; ``model`` itself without EMA."""
    if ema is None:
        return model
    copy = build().to(next(model.parameters()).device)
    copy.load_state_dict(model.state_dict())
    ema.copy_to(copy.parameters())
    return copy.eval()


def micro_seed(seed: int, stage: int, micro: int, rank: int) -> int:
    """A torch seed from (run seed, stage, micro-step, process): resumed runs draw the same noise."""
    return int(np.random.SeedSequence([int(seed), int(stage), int(micro), int(rank)]).generate_state(1, np.uint64)[0]
               % (2**63 - 1))


def versions() -> dict:
    """Versions of everything that shapes a run's numbers."""
    import accelerate
    import diffusers
    import monai

    import tumorsyn

    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "monai": monai.__version__, "diffusers": diffusers.__version__, "accelerate": accelerate.__version__,
            "numpy": np.__version__, "tumorsyn": tumorsyn.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads()}
