"""Wav2CLIP (Wu et al., 2022) from its public checkpoint ``Wav2CLIP.pt``: a ResNet-18 on a
one-channel log-spectrogram, average-pooled to 512, and a two-layer projection into CLIP
ViT-B/32's image space.

The file is a flat dict of the training module's tensors; like Wav2CLIP's own loader we
read the ``audio_encoder.*`` (the ResNet, with its STFT window) and ``audio_transform.*``
(the projection) keys and ignore the rest (``image_transform.*``, the losses' logit scales).
The spectrogram and its standardisation are the ``wav2clip`` front end
(``sound2img.audio.peer_frontends``); the stored window must be the periodic Hann window
that front end uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sound2img.errors import CheckpointError
from sound2img.models.audio_encoder import AudioEncoder, build_audio_encoder
from sound2img.models.state_dict import freeze, load_state_dict_strict

CLIP_SPEC = {"model_name": "ViT-B-32", "pretrained": "openai", "space": "openai/ViT-B-32"}
_PREFIXES = {"audio_encoder.": "encoder.", "audio_transform.": "transform."}


class _Spectrogram(nn.Module):
    """Holds the checkpoint's ``spectrogram.window`` (torchaudio's module in the original);
    the computation is the front end's."""

    def __init__(self, n_fft: int):
        super().__init__()
        self.register_buffer("window", torch.hann_window(n_fft))


class Wav2ClipEncoder(AudioEncoder):
    """``forward(spec [B,1,257,T])`` (the ``wav2clip`` front end's standardised
    log-spectrogram) → ``audio_emb_raw [B,512]``: ResNet (BasicBlock) with a one-channel
    stem, average pool, then Linear–ReLU–Dropout–Linear (dropout inactive: eval mode)."""

    def __init__(
        self, embed_dim: int = 512, layers: tuple[int, ...] = (2, 2, 2, 2), n_fft: int = 512, hidden: int = 512
    ):
        super().__init__(embed_dim)
        from torchvision.models.resnet import BasicBlock, ResNet

        body = ResNet(BasicBlock, list(layers))
        body.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        body.fc = nn.Identity()  # no head in the file: the pooled 512-d feature is the output
        body.spectrogram = _Spectrogram(n_fft)
        self.encoder = body
        self.transform = nn.Module()
        self.transform.sequential = nn.Sequential(
            nn.Linear(512 * BasicBlock.expansion, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, embed_dim)
        )

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec [B,1,F,T]`` → the ResNet's pooled output ``[B,512]`` (before the projection)."""
        self._check_mel(spec)
        return self.encoder(spec)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.transform.sequential(self.features(spec))


def is_wav2clip_state(state: Mapping[str, torch.Tensor]) -> bool:
    return "audio_encoder.conv1.weight" in state


def _blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max((int(m.group(1)) for k in state if (m := pattern.match(k))), default=-1)


def load_wav2clip(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Wav2ClipEncoder:
    """Encoder and projection from a Wav2CLIP state dict, rebuilt from the tensors and
    loaded strictly (frozen, eval mode), carrying ``clip_spec`` (OpenAI ViT-B/32)."""
    wanted = {k: v for k, v in state.items() if k.startswith(tuple(_PREFIXES))}
    for key in (
        "audio_encoder.conv1.weight",
        "audio_encoder.spectrogram.window",
        "audio_transform.sequential.3.weight",
    ):
        if key not in wanted:
            raise CheckpointError(f"{path}: not a Wav2CLIP checkpoint: missing key {key!r}")
    renamed = {}
    for key, value in wanted.items():
        prefix = next(p for p in _PREFIXES if key.startswith(p))
        renamed[_PREFIXES[prefix] + key[len(prefix) :]] = value
    window = wanted["audio_encoder.spectrogram.window"]
    kwargs: dict[str, Any] = {
        "embed_dim": int(wanted["audio_transform.sequential.3.weight"].shape[0]),
        "hidden": int(wanted["audio_transform.sequential.0.weight"].shape[0])
        if "audio_transform.sequential.0.weight" in wanted
        else 512,
        "layers": tuple(_blocks(wanted, f"audio_encoder.layer{i}.") for i in range(1, 5)),
        "n_fft": int(window.shape[0]),
    }
    encoder = build_audio_encoder("wav2clip", **kwargs)
    load_state_dict_strict(encoder, renamed, path)
    hann = torch.hann_window(kwargs["n_fft"], dtype=window.dtype)
    if not torch.allclose(window, hann, rtol=0, atol=1e-6):
        raise CheckpointError(
            f"{path}: key 'audio_encoder.spectrogram.window' is not the periodic Hann window "
            f"of {kwargs['n_fft']} points that the wav2clip front end uses"
        )
    encoder.clip_spec = dict(CLIP_SPEC)
    return freeze(encoder)
