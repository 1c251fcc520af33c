"""e4e / pSp encoder checkpoints (``e4e_*_encode.pt``, ``psp_ffhq_encode.pt``): the public
``{'state_dict': encoder.* + decoder.*, 'opts', 'latent_avg'}`` files read with
``torch.load(weights_only=True)``, the encoder rebuilt from the file (IR-SE50 body + style
heads, ``Encoder4Editing`` or ``GradualStyleEncoder`` by ``opts['encoder_type']``, style
count from ``opts['stylegan_size']``) and the decoder read as our generator. The format is
summarised in the README's "Edit your own photo" section."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sound2img.errors import CheckpointError
from sound2img.models.arcface import STAGES, BottleneckIRSE
from sound2img.models.state_dict import freeze, load_state_dict_strict, read_torch_file
from sound2img.models.stylegan2.checkpoint import is_e4e_layout

ENCODER_TYPES = ("Encoder4Editing", "GradualStyleEncoder")
COARSE, MIDDLE = 3, 7  # style heads [0,3) read the 16-px map, [3,7) 32 px, the rest 64 px
TAPS = (6, 20, 23)  # body units whose outputs feed the feature pyramid (64, 32, 16 px at 256 input)
INPUT_SIZE = 256  # the encoders were trained on 256x256 inputs (cars: 192x256, see CARS)
CARS = "cars_encode"  # e4e's cars dataset type: 192x256 inputs; its 512-px decoder's content is rows 64..447


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer without activation: the stored weight is
    N(0,1) and scaled by 1/sqrt(fan_in) at run time (lr_mul 1)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class StyleHead(nn.Module):
    """``log2(spatial)`` stride-2 3x3 convs with leaky ReLU (0.01) down to 1x1, then an
    equalised linear: ``feat [B,512,s,s]`` → ``code [B,512]``."""

    def __init__(self, channels: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.channels))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class StyleEncoder(nn.Module):
    """IR-SE50 body + feature pyramid + one style head per W+ row, with the public
    files' module names (``input_layer``, ``body.N``, ``styles.N``, ``latlayer1/2``).

    ``forward(x [B,3,256,256] in [-1,1]) -> codes [B,style_count,512]`` (without
    ``latent_avg``). ``kind='Encoder4Editing'``: head 0 gives w0 for every row and heads
    1.. add their deltas (every delta: the inference stage, which the files do not store);
    ``'GradualStyleEncoder'`` (pSp): each head gives its row directly.
    """

    def __init__(self, kind: str, style_count: int):
        super().__init__()
        if kind not in ENCODER_TYPES:
            raise ValueError(f"unknown encoder type {kind!r}")
        self.kind, self.style_count = kind, int(style_count)
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units, in_ch = [], 64
        for width, n in STAGES[50]:
            for i in range(n):
                units.append(BottleneckIRSE(in_ch, width, 2 if i == 0 else 1))
                in_ch = width
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(
            StyleHead(512, 16 if i < COARSE else 32 if i < MIDDLE else 64) for i in range(self.style_count)
        )
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in TAPS:
                taps[i] = x
        c1, c2, c3 = taps[TAPS[0]], taps[TAPS[1]], taps[TAPS[2]]
        p2 = _upsample_add(c3, self.latlayer1(c2)) if self.style_count > COARSE else None
        p1 = _upsample_add(p2, self.latlayer2(c1)) if self.style_count > MIDDLE else None

        def features(i: int) -> torch.Tensor:
            return c3 if i < COARSE else p2 if i < MIDDLE else p1

        if self.kind == "GradualStyleEncoder":
            return torch.stack([self.styles[i](features(i)) for i in range(self.style_count)], dim=1)
        w0 = self.styles[0](c3)
        rows = [w0] + [w0 + self.styles[i](features(i)) for i in range(1, self.style_count)]
        return torch.stack(rows, dim=1)


@dataclass
class EncoderCheckpoint:
    """What an e4e/pSp file holds, checked: the encoder (frozen), ``latent_avg
    [style_count,512]``, the options and the decoder's rosinality ``g_ema`` state."""

    encoder: StyleEncoder
    latent_avg: torch.Tensor
    opts: dict[str, Any]
    decoder_state: dict[str, torch.Tensor]
    path: str

    @property
    def dataset_type(self) -> str | None:
        """e4e's ``opts['dataset_type']`` (``ffhq_encode``, ``cars_encode``, ...), if stored."""
        value = self.opts.get("dataset_type")
        return value if isinstance(value, str) else None

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the input e4e's transforms make for this encoder:
        192x256 for cars (``CarsEncodeTransforms``), 256x256 otherwise."""
        return (192, 256) if self.dataset_type == CARS else (INPUT_SIZE, INPUT_SIZE)

    @property
    def faces(self) -> bool | None:
        """Trained on aligned faces (``ffhq_encode``); None when the file does not say."""
        return None if self.dataset_type is None else self.dataset_type.startswith("ffhq")

    def content_rows(self, resolution: int) -> tuple[int, int]:
        """Rows ``[top, bottom)`` of the decoder's image that hold the picture: e4e crops
        its cars images to rows 64..447 of 512 (4:3 content between black bars)."""
        return (resolution // 8, resolution - resolution // 8) if self.dataset_type == CARS else (0, resolution)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B,3,h,w] in [-1,1]``, built as e4e's inference transform builds it
        (``align.prepare_encoder_input``; ``(h, w) = input_size``) → ``ws
        [B,style_count,512]`` = encoder(x) + latent_avg, what the public pSp forward feeds
        its decoder."""
        dev = self.latent_avg.device
        return self.encoder(x.to(dev)) + self.latent_avg[None]


def is_encoder_checkpoint(obj: object) -> bool:
    """True for the ``{'state_dict': {encoder.*, decoder.*}, 'opts', ...}`` layout."""
    return is_e4e_layout(obj, "encoder")


def decoder_state(obj: dict, source: str) -> dict[str, torch.Tensor]:
    """The ``decoder.*`` tensors of an e4e/pSp file without the prefix (a rosinality
    ``g_ema``); ``CheckpointError`` when there are none."""
    g = {k[len("decoder.") :]: v for k, v in obj["state_dict"].items() if str(k).startswith("decoder.")}
    if not g:
        raise CheckpointError(f"{source}: encoder checkpoint without decoder.* tensors")
    return g


def _style_count(opts: dict, state: dict, source: str) -> int:
    size = opts.get("stylegan_size", 1024)  # pixel2style2pixel's files have no stylegan_size: always 1024
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size & (size - 1):
        raise CheckpointError(f"{source}: opts['stylegan_size'] must be a power of two >= 8, got {size!r}")
    count = 2 * int(math.log2(size)) - 2
    heads = sum(1 for k in state if k.startswith("encoder.styles.") and k.endswith(".linear.weight"))
    if heads != count:
        raise CheckpointError(f"{source}: opts['stylegan_size']={size} means {count} style heads, the file has {heads}")
    return count


def load_encoder_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> EncoderCheckpoint:
    """Read an e4e/pSp checkpoint (``weights_only=True``; never executes code). Every
    ``encoder.*`` tensor must fit the rebuilt encoder exactly (strict load, each key and
    shape checked); a mismatch with the opts is a one-line ``CheckpointError``."""
    path = Path(path)
    obj = read_torch_file(path)
    if not is_encoder_checkpoint(obj):
        keys = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path}: not an e4e/pSp checkpoint (expected 'state_dict' with encoder.* keys and 'opts'; found {keys})"
        )
    opts = dict(obj["opts"])
    kind = opts.get("encoder_type", "GradualStyleEncoder")
    if kind not in ENCODER_TYPES:
        raise CheckpointError(f"{path}: opts['encoder_type']={kind!r} is not supported ({', '.join(ENCODER_TYPES)})")
    if opts.get("input_nc", 3) != 3 or opts.get("label_nc", 0) not in (0, None):
        raise CheckpointError(
            f"{path}: a conditional pSp model (input_nc={opts.get('input_nc')}), not an inversion encoder"
        )
    state = {k: v for k, v in obj["state_dict"].items() if str(k).startswith("encoder.")}
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: encoder state holds non-tensors")
    count = _style_count(opts, state, str(path))
    latent_avg = obj.get("latent_avg")
    if (
        not isinstance(latent_avg, torch.Tensor)
        or latent_avg.shape[-1] != 512
        or latent_avg.numel() not in (512, 512 * count)
    ):
        got = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(f"{path}: latent_avg must be [512] or [{count}, 512], got {got}")
    latent_avg = latent_avg.float().reshape(-1, 512).expand(count, 512).contiguous()
    if opts.get("start_from_latent_avg", True) is False:  # trained without the average: add nothing
        latent_avg = torch.zeros_like(latent_avg)
    with torch.device("meta"):
        enc = StyleEncoder(kind, count)
    enc = enc.to_empty(device="cpu")  # no random init of ~700 MB that the file replaces anyway
    load_state_dict_strict(enc, {k[len("encoder.") :]: v for k, v in state.items()}, path)
    enc = freeze(enc.eval()).to(device)
    return EncoderCheckpoint(enc, latent_avg.to(device), opts, decoder_state(obj, str(path)), str(path))
