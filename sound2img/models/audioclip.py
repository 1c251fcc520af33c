"""AudioCLIP (Guzhov et al., 2022) from its public checkpoints (``AudioCLIP-Partial-Training.pt``,
``AudioCLIP-Full-Training.pt``): the ESResNeXt-FBSP audio head, and the CLIP RN50 image and
text towers that share its file.

The file is the whole model's state dict (no wrapper): ``audio.*`` is the audio head, the
other keys are OpenAI CLIP RN50's (plus ``logit_scale_ai``/``logit_scale_at``). The audio
head takes int16-range samples at 44.1 kHz (what AudioCLIP's datasets feed) and computes its
own spectrogram with a trainable frequency-B-spline DFT (``fbsp``), so the spectrogram is part
of the encoder here; the ``audioclip`` front end only resamples and scales (README,
"Choosing a sound encoder"). BatchNorm runs in eval mode (AudioCLIP's demo forgets ``eval()``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.audio_encoder import AudioEncoder, build_audio_encoder
from sound2img.models.state_dict import freeze, load_state_dict_strict, read_torch_file, unwrap_state_dict

# The AudioCLIP constructor's audio settings that the tensors do not record.
HOP_LENGTH = 561
LOG10_EPS = 1e-18
INT16_MIN, INT16_MAX = -32768.0, 32767
FULL_SPACE = "audioclip/full"  # the Full file's towers were trained too: their own space
PARTIAL_SPACE = "openai/RN50"  # the Partial file froze vanilla CLIP RN50
_AUDIO_PREFIX = "audio."
_SCALE_KEYS = ("logit_scale_ai", "logit_scale_at")


class LinearFBSP(nn.Module):
    """AudioCLIP's trainable DFT: bin ``k`` has weights
    ``sqrt(fb_k) · |sinc(fb_k t / m_k)|^m_k e^{iπ m_k [sinc<0]} · e^{-i fc_k t}`` over
    ``t = π·linspace(-1, 1, n_fft) + 1e-8``, divided by ``sqrt(n_fft)`` (``normalized``).
    With m = 0, fb = 1, fc = 0…K-1 it is the plain DFT."""

    def __init__(self, out_features: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(out_features))
        self.fb = nn.Parameter(torch.ones(out_features))
        self.fc = nn.Parameter(torch.arange(out_features, dtype=torch.float32))
        # AudioCLIP builds it with bias=False as an empty parameter, which its files keep
        self.bias = nn.Parameter(torch.empty(0))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def weights(self, n_in: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``[2, K, n_in]`` (real, imaginary) DFT weights; cached while the parameters
        are frozen (inference), recomputed when they may change."""
        key = (n_in, dtype, device, self.m._version, self.fb._version, self.fc._version)
        if self._cache is not None and self._cache[0] == key and not torch.is_grad_enabled():
            return self._cache[1]
        eps = 1e-8
        t = math.pi * torch.linspace(-1.0, 1.0, n_in, dtype=dtype, device=device)[None, :] + eps
        m, fb, fc = (p.to(dtype)[:, None] for p in (self.m, self.fb, self.fc))
        sinc_arg = fb * t / (m + eps)
        win = torch.where(sinc_arg == 0, torch.ones_like(sinc_arg), torch.sin(sinc_arg) / sinc_arg)
        # complex power (win + 0i)^(m + 0i): magnitude |win|^m, phase m·π where win < 0
        magnitude = (win * win) ** (0.5 * m)
        phase = m * torch.atan2(torch.zeros_like(win), win)
        win_re, win_im = magnitude * torch.cos(phase), magnitude * torch.sin(phase)
        cos, sin = torch.cos(fc * t), -torch.sin(fc * t)
        scale = fb.sqrt() / n_in**0.5
        w = torch.stack((scale * (win_re * cos - win_im * sin), scale * (win_re * sin + win_im * cos)))
        if not torch.is_grad_enabled():
            self._cache = (key, w)
        return w


class Attention2d(nn.Module):
    """ESResNet's sigmoid gate: max-pool to the gated map's size, depthwise then pointwise
    conv, BatchNorm, sigmoid."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]):
        super().__init__()
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        self.conv_depth = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels)
        self.conv_point = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(F.adaptive_max_pool2d(x, size)))))


# kernel sizes of att1…att5 (alternating frequency and time gates)
_ATT_KERNELS = ((3, 1), (1, 5), (3, 1), (1, 5), (3, 5))


class ESResNeXtFBSP(AudioEncoder):
    """AudioCLIP's audio head: ``forward(x [B,C,1,S])`` (int16-range samples at 44.1 kHz,
    from the ``audioclip`` front end) → ``audio_emb_raw [B,embed_dim]``. Each of the C
    channels runs through the network alone and their pooled features are summed before
    ``fc`` (AudioCLIP's ``_forward_reduction``; its UrbanSound8K reader feeds two).

    ``spectrogram`` (``x_db [B·C,3,341,frames]``): int16 → [-1, 1] by AudioCLIP's ``scale()``,
    1654-sample Blackman–Harris frames every 561 samples (zero-padded, centred), FBSP DFT
    over 2048 points, bins 0…1022 as 3 bands of 341, ``10·log10`` of the power. Then a
    ResNeXt-50 32x4d with sigmoid attention gates after each stage and after pooling."""

    def __init__(
        self,
        embed_dim: int = 1024,
        layers: tuple[int, ...] = (3, 4, 6, 3),
        groups: int = 32,
        width_per_group: int = 4,
        n_fft: int = 2048,
        win_length: int = 1654,
        hop_length: int = HOP_LENGTH,
        bands: int = 3,
    ):
        super().__init__(embed_dim)
        from torchvision.models.resnet import Bottleneck, ResNet

        body = ResNet(Bottleneck, list(layers), groups=groups, width_per_group=width_per_group)
        self.conv1, self.bn1, self.maxpool = body.conv1, body.bn1, body.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = body.layer1, body.layer2, body.layer3, body.layer4
        widths = (64, 256, 512, 1024, 2048, 2048)
        for i, kernel in enumerate(_ATT_KERNELS, start=1):
            setattr(self, f"att{i}", Attention2d(widths[i - 1], widths[i], kernel))
        self.fc = nn.Linear(2048, embed_dim)
        self.fbsp = LinearFBSP(n_fft // 2 + 1)
        self.register_buffer("window", torch.ones(win_length))
        self.n_fft, self.win_length, self.hop_length, self.bands = int(n_fft), int(win_length), int(hop_length), bands

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B,C,1,S]`` or ``[B,S]`` int16-range → ``x_db [B·C,3,341,frames]`` (one row per
        channel; a channel's trailing dimensions are its samples)."""
        rows = x.shape[0] * (x.shape[1] if x.ndim == 4 else 1)
        wav = x.reshape(rows, -1).to(torch.float32)
        if wav.shape[1] == 0:
            raise UserInputError("AudioCLIP: empty waveform")
        # AudioCLIP's scale(x, -32768, 32767, -1, 1), in float32 and in its order: the model's
        # input is int16-range, and this rounding is part of what it computes.
        wav = ((wav - INT16_MIN) * 2.0) / (INT16_MAX - INT16_MIN) + (-1.0)
        length, hop, win = wav.shape[1], self.hop_length, self.win_length
        frames = 1 if length <= win else 1 + math.ceil((length - win) / hop)
        pad = (frames - 1) * hop + win - length
        wav = F.pad(wav, (pad // 2, pad - pad // 2))
        framed = wav.unfold(-1, win, hop) * self.window  # [B,frames,win]
        left = (self.n_fft - win) // 2
        framed = F.pad(framed, (left, self.n_fft - win - left))
        w = self.fbsp.weights(self.n_fft, framed.dtype, framed.device)
        re, im = framed @ w[0].T, framed @ w[1].T  # [B,frames,K]
        if self.fbsp.bias.numel() == 2 * w.shape[1]:  # a file trained with the bias
            re, im = re + self.fbsp.bias[:, 0], im + self.fbsp.bias[:, 1]
        power = (re * re + im * im).transpose(1, 2)  # [B,K,frames]
        per_band = power.shape[1] // self.bands
        power = power[:, : per_band * self.bands].reshape(power.shape[0], self.bands, per_band, -1)
        power = torch.where(power > 0.0, power, torch.full_like(power, LOG10_EPS))
        return torch.log10(power).mul(10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] < 1:
            raise UserInputError(f"AudioCLIP input must be x [B,C,1,S], got {list(x.shape)}")
        batch, channels = x.shape[:2]
        h = F.relu(self.bn1(self.conv1(self.spectrogram(x))))
        h = self.maxpool(h)
        for i in range(1, 5):
            gate_in = h
            h = getattr(self, f"layer{i}")(h)
            h = h * getattr(self, f"att{i}")(gate_in, h.shape[-2:])
        pooled = F.adaptive_avg_pool2d(h, 1) * self.att5(h, (1, 1))  # [B·C,2048,1,1]
        return self.fc(pooled.reshape(batch, channels, -1).sum(dim=1))


def _blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max((int(m.group(1)) for k in state if (m := pattern.match(k))), default=-1)


def audio_head_kwargs(audio: Mapping[str, torch.Tensor], source: Any) -> dict[str, Any]:
    """Architecture of an ``audio.*``-stripped state dict: block counts, ResNeXt groups,
    embedding width, DFT size and window length, all read from the tensors."""
    need = ("conv1.weight", "layer1.0.conv2.weight", "fc.weight", "fbsp.m", "window")
    for key in need:
        if key not in audio:
            raise CheckpointError(f"{source}: not an AudioCLIP audio head: missing key {_AUDIO_PREFIX + key!r}")
    layers = tuple(_blocks(audio, f"layer{i}.") for i in range(1, 5))
    conv2 = audio["layer1.0.conv2.weight"]  # [width, width/groups, 3, 3]
    groups = int(conv2.shape[0]) // int(conv2.shape[1])
    return {
        "embed_dim": int(audio["fc.weight"].shape[0]),
        "layers": layers,
        "groups": groups,
        "width_per_group": int(conv2.shape[0]) * 64 // (64 * groups),
        "n_fft": 2 * (int(audio["fbsp.m"].shape[0]) - 1),
        "win_length": int(audio["window"].shape[0]),
    }


def is_audioclip_state(state: Mapping[str, torch.Tensor]) -> bool:
    return f"{_AUDIO_PREFIX}fbsp.m" in state and f"{_AUDIO_PREFIX}conv1.weight" in state


def audioclip_space(path: str | os.PathLike) -> str:
    """The CLIP space of a file's audio embeddings: the Partial-Training file kept vanilla
    CLIP RN50 (OpenAI's); any other AudioCLIP file is taken to have trained its towers too,
    so only its own towers fit (the two files have the same layout; the name tells them apart)."""
    return PARTIAL_SPACE if "partial" in Path(path).name.lower() else FULL_SPACE


def split_state(state: Mapping[str, torch.Tensor], source: Any) -> tuple[dict, dict, dict]:
    """AudioCLIP state dict → (audio head, CLIP towers, audio logit scales)."""
    if not is_audioclip_state(state):
        raise CheckpointError(
            f"{source}: not an AudioCLIP checkpoint (no 'audio.fbsp.m' / 'audio.conv1.weight'; "
            f"found e.g. {sorted(state)[:3]})"
        )
    audio = {k[len(_AUDIO_PREFIX) :]: v for k, v in state.items() if k.startswith(_AUDIO_PREFIX)}
    scales = {k: v for k, v in state.items() if k in _SCALE_KEYS}
    towers = {k: v for k, v in state.items() if not k.startswith(_AUDIO_PREFIX) and k not in _SCALE_KEYS}
    return audio, towers, scales


def load_audioclip_audio(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> ESResNeXtFBSP:
    """The audio head of an AudioCLIP state dict, rebuilt from its tensors and loaded
    strictly (frozen, eval mode), carrying ``clip_spec`` (its towers: this file's)."""
    audio, towers, _ = split_state(state, path)
    kwargs = audio_head_kwargs(audio, path)
    encoder = build_audio_encoder("audioclip", **kwargs)
    load_state_dict_strict(encoder, audio, f"{path} (under 'audio.')")
    encoder.clip_spec = (
        towers_spec(path) if towers else {"model_name": "RN50", "pretrained": "openai", "space": PARTIAL_SPACE}
    )
    return freeze(encoder)


def towers_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The ClipTowers spec of the RN50 towers stored in an AudioCLIP file."""
    return {
        "model_name": "RN50",
        "pretrained": str(path),
        "loader": "audioclip",
        "seed": None,
        "tiny": None,
        "quick_gelu": True,
        "space": audioclip_space(path),
    }


def load_audioclip_towers(path: str | os.PathLike, device: str | torch.device = "cpu", *, preprocess: str = "clip"):
    """The CLIP RN50 image and text towers stored in an AudioCLIP file → frozen
    ``ClipTowers`` (open_clip's RN50 with QuickGELU has exactly their keys and shapes),
    loaded strictly. ``encode_image(img [B,3,H,W] in [-1,1]) -> [B,1024]``."""
    import open_clip

    from sound2img.models.clip import ClipTowers

    path = Path(path)
    state = unwrap_state_dict(read_torch_file(path), path)
    _, towers, _ = split_state(state, path)
    with torch.random.fork_rng(devices=[]):
        model = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True)
    load_state_dict_strict(model, towers, path)
    tokenizer = open_clip.get_tokenizer("RN50")
    return ClipTowers(model, tokenizer, towers_spec(path), preprocess=preprocess, weights_file=path).to(device)


def logit_scales(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """AudioCLIP's cosine → logit factors, ``clamp(exp(·), 1, 100)``: ``audio_image``,
    ``audio_text``, ``image_text``. Embeddings themselves need none of them."""
    names = {"audio_image": "logit_scale_ai", "audio_text": "logit_scale_at", "image_text": "logit_scale"}
    return {k: float(state[v].float().exp().clamp(1, 100)) for k, v in names.items() if v in state}
