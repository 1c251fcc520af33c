"""The latent optimiser on small frozen stand-ins: the objective moves the way docs/method.md §2
says, only the latent changes, batches equal their members run alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sound2img.manipulation.optimizer import lr_ramp, optimize_latents

from .stand_ins import ToyClip, ToyGenerator, ToyIdentity


@pytest.fixture(scope="module")
def nets():
    return ToyGenerator(num_ws=14), ToyClip()


def sources(G, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return G.mapping(torch.randn(n, G.z_dim, generator=g).to(G.w_avg.dtype), 0.7).clone()


def targets(clip, n, seed=3):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, clip.dim, generator=g), dim=-1)


# StyleCLIP's ramp (docs/method.md §4), evaluated by hand:
#   lr(t)/lr0 = min(1, t/0.05) · (0.5 − 0.5·cos(π·min(1, (1 − t)/0.25)))
# with cos(π/5) = (1 + √5)/4 = 0.80901699…, cos(2π/5) = (√5 − 1)/4 = 0.30901699…,
# cos(3π/4) = −√2/2 = −0.70710678…:
#   t = 0.01   → 0.2 · 1                                   = 0.2
#   t = 0.025  → 0.5 · 1                                   = 0.5
#   t = 0.8    → 1 · (0.5 + 0.5·cos(π/5))  = (5 + √5)/8    = 0.904508497187474
#   t = 0.8125 → 1 · (0.5 + √2/4)                          = 0.853553390593274
#   t = 0.9    → 1 · (0.5 − 0.5·cos(2π/5)) = (5 − √5)/8    = 0.345491502812526
#   t = 0.95   → 1 · (0.5 − 0.5·cos(π/5))  = (3 − √5)/8    = 0.0954915028125263
RAMP_BY_HAND = [
    (0.0, 0.0),
    (0.01, 0.2),
    (0.025, 0.5),
    (0.05, 1.0),
    (0.5, 1.0),
    (0.75, 1.0),
    (0.8, 0.904508497187474),
    (0.8125, 0.853553390593274),
    (0.9, 0.345491502812526),
    (0.95, 0.0954915028125263),
    (1.0, 0.0),
]


@pytest.mark.parametrize("t,expected", RAMP_BY_HAND)
def test_lr_ramp_values(t, expected):
    assert lr_ramp(t) == pytest.approx(expected, abs=1e-12)


def test_the_optimiser_applies_the_ramp(nets, monkeypatch):
    """20 steps at lr0 = 0.1: step k runs at t = k/20, so steps 0, 1, 16, 18, 19 run at
    0, 0.1, 0.1·0.904508497187474, 0.1·0.345491502812526, 0.1·0.0954915028125263."""
    G, clip = nets
    seen = []
    real_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    optimize_latents(G, clip.encode_image, sources(G, 1), targets(clip, 1), steps=20, lr=0.1)
    assert len(seen) == 20
    expected = {0: 0.0, 1: 0.1, 10: 0.1, 16: 0.0904508497187474, 18: 0.0345491502812526, 19: 0.00954915028125263}
    assert {k: seen[k] for k in expected} == pytest.approx(expected, abs=1e-12)


def test_cosine_rises_and_only_the_latent_changes(nets):
    G, clip = nets
    before = {k: v.clone() for k, v in list(G.state_dict().items()) + list(clip.state_dict().items())}
    ws0 = sources(G, 2)
    res = optimize_latents(
        G, clip.encode_image, ws0, targets(clip, 2), steps=40, lr=0.1, lambda_sim=0.0, latent_term="l2"
    )
    cos = 1 - res.losses["d_cos"]  # [steps,B]
    assert (res.final_cosine > cos[0] + 0.05).all()
    assert (cos[-5:].mean(0) > cos[:5].mean(0)).all()
    assert torch.allclose(res.initial_cosine, cos[0])
    assert not torch.equal(res.ws, ws0)  # the latent moved …
    for module in (G, clip):  # … no network parameter got a gradient or changed
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    after = {k: v for k, v in list(G.state_dict().items()) + list(clip.state_dict().items())}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unfrozen_network_is_refused(nets):
    G, clip = nets
    trainable = ToyClip().requires_grad_(True)
    with pytest.raises(ValueError, match="require grad"):
        optimize_latents(G, trainable.encode_image, sources(G, 1), targets(clip, 1), steps=1)


@pytest.mark.parametrize("latent_term", ["l2", "adaptive"])
def test_larger_lambda_sim_stays_closer(nets, latent_term):
    G, clip = nets
    ws0, tgt = sources(G, 2), targets(clip, 2)
    dist = {}
    for lam in (0.0, 0.05, 1.0):
        res = optimize_latents(
            G, clip.encode_image, ws0, tgt, steps=30, lr=0.1, lambda_sim=lam, latent_term=latent_term
        )
        dist[lam] = (res.ws - ws0).pow(2).sum(dim=(1, 2))
        if lam > 0:
            assert (res.losses["sim"][0] == 0).all()  # step 0 is at w = w_s
            assert torch.isfinite(res.losses["sim"]).all() and (res.losses["sim"][-1] > 0).all()
    assert (dist[0.05] < dist[0.0]).all() and (dist[1.0] < dist[0.05]).all()


def test_adaptive_mask_is_per_sample_and_returned(nets):
    G, clip = nets
    res = optimize_latents(
        G, clip.encode_image, sources(G, 2), targets(clip, 2), steps=10, lambda_sim=0.01, latent_term="adaptive"
    )
    assert res.layer_mask.shape == (2, G.num_ws)
    assert (res.layer_mask != 1.0).any() and not torch.equal(res.layer_mask[0], res.layer_mask[1])
    assert (
        optimize_latents(G, clip.encode_image, sources(G, 1), targets(clip, 1), steps=2, latent_term="l2").layer_mask
        is None
    )


@pytest.mark.parametrize("latent_term,lambda_id", [("adaptive", 0.0), ("l2", 0.5)])
def test_batch_equals_sequential(latent_term, lambda_id):
    """In float64 (the layer mask included): a batch of one and a batch of three may take
    other kernels, and Adam amplifies their rounding; in float32 that could reach
    differences no tolerance tells from a coupling between samples (which moves the
    latents by ~0.1)."""
    G, clip = ToyGenerator(num_ws=14).double(), ToyClip().double()
    ws0, tgt = sources(G, 3), targets(clip, 3).double()
    kw = dict(
        steps=25,
        lr=0.1,
        lambda_sim=0.01,
        lambda_id=lambda_id,
        latent_term=latent_term,
        identity=ToyIdentity().double() if lambda_id else None,
    )
    batched = optimize_latents(G, clip.encode_image, ws0, tgt, **kw)
    for i in range(3):
        alone = optimize_latents(G, clip.encode_image, ws0[i : i + 1], tgt[i : i + 1], **kw)
        assert (batched.ws[i] - alone.ws[0]).abs().max() <= 1e-9
        for name in batched.losses:  # recorded in float32
            assert torch.allclose(batched.losses[name][:, i], alone.losses[name][:, 0], atol=1e-6, rtol=0)
        if latent_term == "adaptive":
            assert torch.allclose(batched.layer_mask[i], alone.layer_mask[0], atol=1e-9, rtol=0)


def test_identity_term_has_gradient_and_keeps_identity(nets):
    G, clip = nets
    ws0, tgt = sources(G, 2), targets(clip, 2)
    with torch.no_grad():
        src_img = G.synthesis(ws0)
    ident = ToyIdentity()
    src_emb = ident.source_embedding(src_img)

    def term(img):
        return ident(img, source_emb=src_emb, reduction="none")

    # gradient of L_ID w.r.t. w away from the source is non-zero
    w = (ws0 + 0.3 * torch.randn_like(ws0)).requires_grad_(True)
    term(G.synthesis(w)).sum().backward()
    assert w.grad.abs().sum() > 0 and all(p.grad is None for p in ident.parameters())

    kw = dict(steps=40, lr=0.1, lambda_sim=0.0, latent_term="l2")
    without = optimize_latents(G, clip.encode_image, ws0, tgt, lambda_id=0.0, **kw)
    with_id = optimize_latents(G, clip.encode_image, ws0, tgt, lambda_id=2.0, identity=ident, **kw)
    assert (without.losses["id"] == 0).all()  # not computed at λ_ID = 0
    assert (with_id.losses["id"][-1] > 0).all()
    d_without, d_with = term(without.result_img), term(with_id.result_img)
    assert (d_with < d_without).all()


def test_lambda_id_needs_an_identity_loss(nets):
    G, clip = nets
    with pytest.raises(ValueError, match="identity"):
        optimize_latents(G, clip.encode_image, sources(G, 1), targets(clip, 1), steps=1, lambda_id=0.1)


def test_snapshots_and_determinism(nets):
    G, clip = nets
    ws0, tgt = sources(G, 1), targets(clip, 1)
    a = optimize_latents(G, clip.encode_image, ws0, tgt, steps=12, snapshot_steps=(0, 5, 11))
    b = optimize_latents(G, clip.encode_image, ws0, tgt, steps=12, snapshot_steps=(0, 5, 11))
    assert sorted(a.snapshots) == [0, 5, 11]
    assert a.snapshots[5].shape == (1, 3, G.img_resolution, G.img_resolution)
    assert torch.equal(a.snapshots[0], a.source_img)  # step 0 renders the source
    assert torch.equal(a.ws, b.ws) and torch.equal(a.result_img, b.result_img)
    assert len(a.step_seconds) == 12 and a.losses["total"].shape == (12, 1)
    # one target row is shared by every source of the batch
    shared = optimize_latents(G, clip.encode_image, ws0.expand(2, -1, -1), tgt, steps=3)
    rows = optimize_latents(G, clip.encode_image, ws0.expand(2, -1, -1), tgt.expand(2, -1), steps=3)
    assert torch.equal(shared.ws, rows.ws)


def test_on_step_sees_every_step_and_can_stop(nets):
    from sound2img.manipulation.optimizer import EditStopped

    G, clip = nets
    ws0, tgt = sources(G, 2), targets(clip, 2)
    seen = []

    def watch(done, img, cosine):
        seen.append((done, tuple(img.shape), cosine.clone()))

    res = optimize_latents(G, clip.encode_image, ws0, tgt, steps=4, lr=0.1, on_step=watch)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert seen[0][1] == tuple(res.source_img.shape)
    # the callback's cosine is the one the loss history records for that step
    assert torch.allclose(torch.stack([s[2] for s in seen]), 1 - res.losses["d_cos"], atol=1e-6)

    calls = []
    with pytest.raises(EditStopped) as stopped:
        optimize_latents(
            G,
            clip.encode_image,
            ws0,
            tgt,
            steps=50,
            lr=0.1,
            on_step=lambda done, img, cos: calls.append(done) or done == 2,
        )
    assert calls == [1, 2] and stopped.value.steps_done == 2
