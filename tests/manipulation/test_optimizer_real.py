"""The optimiser on the project's real (random, tiny) networks: StyleGAN2, CLIP towers
and IR-SE — the paper's objective moves as it should with the actual modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sound2img.manipulation.optimizer import optimize_latents
from sound2img.models.arcface import IdentityLoss, build_arcface
from sound2img.models.clip import build_clip
from sound2img.models.stylegan2 import build_generator, sample_source_latents


@pytest.fixture(scope="module")
def nets():
    G = build_generator(32, z_dim=32, w_dim=32, n_mlp=2, channel_base=256, channel_max=32, seed=0)
    return G, build_clip("tiny", seed=0), IdentityLoss(build_arcface("tiny", seed=0))


def setup(G, clip, n=2):
    ws = sample_source_latents(G, list(range(n)), 0.7)
    g = torch.Generator().manual_seed(5)
    return ws, F.normalize(torch.randn(n, clip.embed_dim, generator=g), dim=-1)


def test_cosine_rises_and_no_parameter_gets_a_gradient(nets):
    G, clip, _ = nets
    ws, tgt = setup(G, clip)
    before = [p.clone() for p in list(G.parameters()) + list(clip.parameters())]
    res = optimize_latents(G, clip.encode_image, ws, tgt, steps=15, lr=0.1, lambda_sim=0.0)
    assert (res.final_cosine > res.initial_cosine + 0.05).all()
    after = list(G.parameters()) + list(clip.parameters())
    assert all(p.grad is None and not p.requires_grad for p in after)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert (res.ws - ws).abs().max() > 0


def test_batched_equals_sequential(nets):
    G, clip, ident = nets
    ws, tgt = setup(G, clip, 2)
    kw = dict(steps=4, lr=0.1, lambda_sim=0.01, lambda_id=0.3, identity=ident)
    batched = optimize_latents(G, clip.encode_image, ws, tgt, **kw)
    for i in range(2):
        alone = optimize_latents(G, clip.encode_image, ws[i : i + 1], tgt[i : i + 1], **kw)
        assert (batched.ws[i] - alone.ws[0]).abs().max() <= 1e-5


def test_identity_term_has_a_gradient_and_holds_identity(nets):
    G, clip, ident = nets
    ws, tgt = setup(G, clip)
    with torch.no_grad():
        src_emb = ident.source_embedding(G.synthesis(ws))
    w = (ws + 0.5 * torch.randn_like(ws)).requires_grad_(True)
    ident(G.synthesis(w), source_emb=src_emb, reduction="none").sum().backward()
    assert w.grad.abs().sum() > 0  # unlike the authors' code (docs/method.md §6)
    assert all(p.grad is None for p in ident.parameters())

    kw = dict(steps=10, lr=0.1, lambda_sim=0.0)
    free = optimize_latents(G, clip.encode_image, ws, tgt, lambda_id=0.0, **kw)
    held = optimize_latents(G, clip.encode_image, ws, tgt, lambda_id=3.0, identity=ident, **kw)
    with torch.no_grad():
        d_free = ident(free.result_img, source_emb=src_emb, reduction="none")
        d_held = ident(held.result_img, source_emb=src_emb, reduction="none")
    assert (d_held < d_free).all()
