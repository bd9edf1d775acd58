"""Noise schedules (diffusers) shared by training and sampling, so both read one definition.

The training schedule is saved in the model folder as ``scheduler_config.json``; the sampler named
in the model's config (DDIM, DPM-Solver++, UniPC, or Euler for rectified flow) is built from it.
"""
from __future__ import annotations

import logging

from tumorsyn.compat import prepare_diffusers
from tumorsyn.errors import ConfigError

__all__ = ["training_scheduler", "sampling_scheduler", "is_flow"]


def _quiet_diffusers() -> None:
    prepare_diffusers()
    # from_config warns about keys one scheduler family does not use: expected here, not news.
    logging.getLogger("diffusers.configuration_utils").setLevel(logging.ERROR)


def is_flow(prediction_type: str) -> bool:
    """Rectified flow (velocity ``noise - x0`` along a straight path) rather than DDPM noise."""
    return prediction_type == "flow"


def training_scheduler(*, prediction_type: str, num_train_timesteps: int = 1000, beta_schedule: str = "scaled_linear",
                       beta_start: float = 0.0015, beta_end: float = 0.0195):
    """The training noise schedule.

    Parameters
    ----------
    prediction_type : {'epsilon', 'v_prediction', 'sample', 'flow'}
        What the UNet predicts: the noise, the velocity, the clean latent, or the rectified-flow velocity.
    num_train_timesteps : int
    beta_schedule : {'linear', 'scaled_linear', 'squaredcos_cap_v2'}
        DDPM variance schedule (ignored for flow); ``squaredcos_cap_v2`` is the cosine schedule.
    beta_start, beta_end : float
    """
    _quiet_diffusers()
    if is_flow(prediction_type):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=int(num_train_timesteps), shift=1.0)
    from diffusers import DDPMScheduler

    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ConfigError(f"prediction_type must be epsilon, v_prediction, sample or flow, got {prediction_type!r}")
    return DDPMScheduler(num_train_timesteps=int(num_train_timesteps), beta_schedule=beta_schedule,
                         beta_start=float(beta_start), beta_end=float(beta_end), prediction_type=prediction_type,
                         clip_sample=False)


def sampling_scheduler(name: str, scheduler_config: dict):
    """The sampler ``name`` built from a training schedule's config (diffusers ``from_config``)."""
    _quiet_diffusers()
    import diffusers

    flow = scheduler_config.get("_class_name") == "FlowMatchEulerDiscreteScheduler"
    if flow != (name == "euler"):
        raise ConfigError(f"sampler {name!r} does not fit a {scheduler_config.get('_class_name')} schedule; "
                          "use euler for rectified flow and ddim, dpm_solver or unipc for DDPM schedules")
    if name == "euler":
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(scheduler_config, clip_sample=False, set_alpha_to_one=False)
    if name == "dpm_solver":
        return diffusers.DPMSolverMultistepScheduler.from_config(scheduler_config, algorithm_type="dpmsolver++",
                                                                 solver_order=2)
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler.from_config(scheduler_config)
    raise ConfigError(f"unknown sampler {name!r}; choose ddim, dpm_solver, unipc or euler")
