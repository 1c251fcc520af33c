"""Audio: decoding to mono float32 at a rate (``io``, with librosa 0.8.1's resampler in
``resample``), the batched mel front ends (``frontend``) and the training-view
augmentations (``augment``)."""

from sound2img.audio.augment import AudioAugment, build_augment, random_gain, spec_augment
from sound2img.audio.frontend import MelFrontend, build_frontend, list_frontends
from sound2img.audio.io import AudioInfo, audio_info, load_audio

__all__ = [
    "AudioAugment",
    "AudioInfo",
    "MelFrontend",
    "audio_info",
    "build_augment",
    "build_frontend",
    "list_frontends",
    "load_audio",
    "random_gain",
    "spec_augment",
]
