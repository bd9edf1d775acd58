"""The latent-diffusion generator (``method="diffusion"``) and the interface to its model folders.

``torch``, ``monai`` and ``diffusers`` (the ``diffusion`` extra) are imported only when a model is
loaded or sampled.
"""
from tumorsyn.generators.diffusion.generator import DiffusionGenerator
from tumorsyn.generators.diffusion.model_folder import DiffusionModel, load_model, model_checksum, read_model_config

__all__ = ["DiffusionGenerator", "DiffusionModel", "load_model", "model_checksum", "read_model_config"]
