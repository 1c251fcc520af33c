"""Small frozen stand-ins for the generator, CLIP and an identity network, so the
optimiser's maths can be tested apart from the real models (which other tests use)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ToyGenerator(nn.Module):
    """ws [B,num_ws,w_dim] → img [B,3,res,res] in (-1,1); every layer of W+ matters."""

    def __init__(self, num_ws: int = 14, w_dim: int = 16, z_dim: int = 16, res: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.num_ws, self.w_dim, self.z_dim, self.img_resolution = num_ws, w_dim, z_dim, res
        self.layers = nn.Parameter(torch.randn(num_ws, w_dim, 3 * 8 * 8) / w_dim**0.5)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.map = nn.Linear(z_dim, w_dim)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.eval().requires_grad_(False)

    def mapping(self, z, truncation_psi=1.0):
        w = self.map(z)
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def synthesis(self, ws, noise_mode="const"):
        h = torch.einsum("bld,ldk->bk", ws, self.layers).reshape(-1, 3, 8, 8)
        h = F.interpolate(torch.tanh(h), size=self.img_resolution, mode="nearest")
        return torch.tanh(self.conv(h) + h)


class ToyClip(nn.Module):
    """img [B,3,H,W] → [B,dim] normalised; text → fixed random unit vectors."""

    def __init__(self, dim: int = 32, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.proj = nn.Linear(8 * 4 * 4, dim)
        self.dim = dim
        self.eval().requires_grad_(False)

    def encode_image(self, img):
        h = F.adaptive_avg_pool2d(F.gelu(self.conv(img)), 4).flatten(1)
        return F.normalize(self.proj(h), dim=-1)

    def encode_text(self, prompts):
        out = []
        for p in prompts:
            g = torch.Generator().manual_seed(sum(map(ord, p)))
            out.append(torch.randn(self.dim, generator=g))
        return F.normalize(torch.stack(out), dim=-1)


class ToyIdentity(nn.Module):
    """The ``arcface.IdentityLoss`` protocol on a small conv net: L_ID = 1 − cos(R(img), R(src))."""

    def __init__(self, res: int = 16, seed: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        side = (res - 3) // 2 + 1
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Flatten(), nn.Linear(8 * side * side, 16))
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def source_embedding(self, source_img):
        return F.normalize(self.net(source_img), dim=-1)

    def forward(self, img, source_img=None, *, source_emb=None, reduction="mean"):
        assert reduction == "none" and source_emb is not None
        return 1 - (F.normalize(self.net(img), dim=-1) * source_emb).sum(-1)
