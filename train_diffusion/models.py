"""The networks of both stages, built from the config as ``{"class", "kwargs"}`` specs.

The same spec is written into the model folder, and :func:`tumorsyn.generators.diffusion.model_folder.build_network`
rebuilds the network from it at sampling time: constructor arguments are the config.
"""
from __future__ import annotations

from tumorsyn.generators.diffusion.model_folder import build_network
from tumorsyn.generators.diffusion.schedulers import training_scheduler

__all__ = ["downsampling", "autoencoder_spec", "unet_spec", "refiner_spec", "build_autoencoder", "build_unet", "build_refiner",
           "build_discriminator", "latent_shape", "noise_scheduler"]


def downsampling(config: dict) -> int:
    """Spatial reduction factor of the autoencoder: 2 per level after the first (KL), 2 per level (VQ)."""
    levels = len(config["autoencoder"]["channels"])
    return 2 ** (levels if config["autoencoder"]["kind"] == "vq" else levels - 1)


def autoencoder_spec(config: dict) -> dict:
    """MONAI ``AutoencoderKL`` or ``VQVAE`` constructor arguments (one image channel in and out)."""
    a = config["autoencoder"]
    if a["kind"] == "vq":
        levels = len(a["channels"])
        return {"class": "VQVAE", "kwargs": {
            "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": list(a["channels"]),
            "num_res_layers": int(a["num_res_blocks"]), "num_res_channels": list(a["channels"]),
            # stride 2, kernel 4, dilation 1, padding 1 per level (output_padding 0 on the way up)
            "downsample_parameters": [[2, 4, 1, 1]] * levels, "upsample_parameters": [[2, 4, 1, 1, 0]] * levels,
            "num_embeddings": int(a["num_embeddings"]), "embedding_dim": int(a["latent_channels"])}}
    return {"class": "AutoencoderKL", "kwargs": {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": list(a["channels"]),
        "num_res_blocks": [int(a["num_res_blocks"])] * len(a["channels"]),
        "attention_levels": [bool(x) for x in a["attention_levels"]], "latent_channels": int(a["latent_channels"]),
        "norm_num_groups": int(a["norm_num_groups"]),
        # Non-local attention at the bottleneck of a 3D autoencoder is the memory peak; off.
        "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False}}


def unet_spec(config: dict) -> dict:
    """MONAI ``DiffusionModelUNet`` arguments: input = noisy latent + blanked-crop latent + mask (2C + 1)."""
    l, c = config["ldm"], int(config["autoencoder"]["latent_channels"])
    return {"class": "DiffusionModelUNet", "kwargs": {
        "spatial_dims": 3, "in_channels": 2 * c + 1, "out_channels": c, "channels": list(l["channels"]),
        "num_res_blocks": int(l["num_res_blocks"]), "attention_levels": [bool(x) for x in l["attention_levels"]],
        "num_head_channels": int(l["num_head_channels"]), "norm_num_groups": int(l["norm_num_groups"])}}


def refiner_spec(config: dict) -> dict:
    """MONAI ``UNet`` arguments of the border refiner: decoded crop + blanked crop + exact mask in, a correction out."""
    channels = [int(c) for c in config["refiner"]["channels"]]
    return {"class": "UNet", "kwargs": {
        "spatial_dims": 3, "in_channels": 3, "out_channels": 1, "channels": channels,
        "strides": [2] * (len(channels) - 1), "num_res_units": 1, "norm": "INSTANCE"}}


def latent_shape(config: dict) -> tuple[int, int, int, int]:
    """(C, X, Y, Z) of a crop's latent."""
    factor = downsampling(config)
    return (int(config["autoencoder"]["latent_channels"]), *(int(n) // factor for n in config["data"]["crop_size"]))


def build_autoencoder(config: dict):
    return build_network(autoencoder_spec(config))


def build_unet(config: dict):
    return build_network(unet_spec(config))


def build_refiner(config: dict):
    return build_network(refiner_spec(config))


def build_discriminator(config: dict):
    """MONAI ``PatchDiscriminator`` for the autoencoder's adversarial loss (instance norm: batches are small)."""
    from monai.networks.nets import PatchDiscriminator

    a = config["autoencoder"]
    return PatchDiscriminator(spatial_dims=3, num_layers_d=int(a["disc_layers"]), channels=int(a["disc_channels"]),
                              in_channels=1, out_channels=1, norm="INSTANCE")


def noise_scheduler(config: dict):
    """The training noise scheduler of ``config["ldm"]`` (diffusers), saved with the model folder."""
    l = config["ldm"]
    return training_scheduler(prediction_type=l["prediction_type"], num_train_timesteps=l["num_train_timesteps"],
                              beta_schedule=l["beta_schedule"])
