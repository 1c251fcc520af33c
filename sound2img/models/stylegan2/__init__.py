"""StyleGAN2 generator (pure PyTorch) and readers for the public checkpoints: rosinality
``.pt``, NVlabs stylegan2-ada / stylegan3 ``.pkl`` (restricted unpickler), our safetensors."""

from sound2img.models.stylegan2.checkpoint import convert_generator, detect_format, load_generator, save_generator
from sound2img.models.stylegan2.latents import (
    LATENT_SUFFIXES,
    load_latents,
    load_source_latents,
    mean_source_latents,
    sample_source_latents,
    save_latents,
    seed_to_z,
)
from sound2img.models.stylegan2.networks import (
    NOISE_MODES,
    Generator,
    GeneratorArch,
    build_generator,
    channels_for,
    mix_ws,
    num_ws_for,
)

__all__ = [
    "LATENT_SUFFIXES",
    "NOISE_MODES",
    "Generator",
    "GeneratorArch",
    "build_generator",
    "channels_for",
    "convert_generator",
    "detect_format",
    "load_generator",
    "load_latents",
    "load_source_latents",
    "mean_source_latents",
    "mix_ws",
    "num_ws_for",
    "save_generator",
    "sample_source_latents",
    "save_latents",
    "seed_to_z",
]
