"""Training of the latent diffusion tumour generator: data crops, the two stages, the model folder.

``tumorsyn train-diffusion CONFIG.yaml`` (see :mod:`train_diffusion.cli`) or, from Python::

    from train_diffusion.config import load_config
    from train_diffusion.train import train
    model_dir = train(load_config("configs/diffusion/tiny_cpu.yaml", ["output_dir=runs/tiny"]))
"""
