"""Generator behaviour: num_ws from the resolution, truncation, noise modes, batch
independence, gradients reach ws and never the (frozen) weights, the three run-time
formulations agree, the frozen-weight cache follows weight updates, random init."""

from __future__ import annotations

import pytest
import torch

from sound2img.models.stylegan2 import Generator, GeneratorArch, build_generator, channels_for, mix_ws, num_ws_for

from .conftest import small_generator


@pytest.mark.parametrize("res, expected", [(4, 2), (8, 4), (64, 10), (256, 14), (512, 16), (1024, 18)])
def test_num_ws_follows_resolution(res, expected):
    assert num_ws_for(res) == expected
    with torch.device("meta"):
        G = Generator(GeneratorArch(res, 8, 8, 2, channels_for(res, 4096, 16)))
    assert G.num_ws == G.mapping.num_ws == G.synthesis.num_ws == expected


@pytest.mark.parametrize("res", [4, 8, 16])
def test_any_small_resolution_runs(res):
    G = build_generator(res, z_dim=8, w_dim=8, n_mlp=1, channel_base=64, channel_max=8, estimate_w_avg=False)
    img = G(torch.randn(2, 8))
    assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()


def test_bad_resolution_and_shapes_are_refused(small_G):
    with pytest.raises(ValueError, match="4·2\\^k"):
        build_generator(48)
    with pytest.raises(ValueError, match="ws of shape"):
        small_G.synthesis(torch.zeros(1, small_G.num_ws + 1, small_G.w_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        small_G.synthesis(torch.zeros(1, small_G.num_ws, small_G.w_dim), noise_mode="loud")
    with pytest.raises(ValueError, match="z of shape"):
        small_G.mapping(torch.zeros(1, small_G.z_dim + 1))


def test_truncation(small_G):
    G = small_G
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert torch.equal(ws, ws[:, :1].expand_as(ws)), "mapping broadcasts one w to every row"
    assert torch.equal(G.mapping(z, truncation_psi=1.0), ws)
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.w_avg.expand_as(ws))
    psi = 0.7
    assert torch.allclose(G.mapping(z, psi), G.w_avg + psi * (ws - G.w_avg), atol=1e-6)
    cut = G.mapping(z, 0.5, truncation_cutoff=3)
    assert torch.allclose(cut[:, :3], G.mapping(z, 0.5)[:, :3]) and torch.equal(cut[:, 3:], ws[:, 3:])
    assert G.w_avg.shape == (G.w_dim,)


def test_noise_modes(small_G):
    G = small_G
    ws = G.mapping(torch.randn(2, G.z_dim))
    const1, const2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
    assert torch.equal(const1, const2)
    r1, r2 = G.synthesis(ws, "random"), G.synthesis(ws, "random")
    assert (r1 - r2).abs().max() > 1e-3, "random noise must differ per call"
    none = G.synthesis(ws, "none")
    assert (none - const1).abs().max() > 1e-3
    with torch.no_grad():  # with zero strengths, every mode gives the same image
        Z = small_generator()
        for name, p in Z.named_parameters():
            if name.endswith("noise_strength"):
                p.zero_()
    assert torch.allclose(Z.synthesis(ws, "random"), Z.synthesis(ws, "none"))


def set_variant(G, variant):
    G.synthesis.fused_modconv = variant == "fused"
    G.synthesis.channels_last = {"nchw": False, "channels_last": True}.get(variant)  # None: automatic


@pytest.mark.parametrize("variant", ["auto", "nchw", "channels_last", "fused"])
def test_batch_independence(small_G, variant):
    G = small_G
    set_variant(G, variant)
    try:
        ws = G.mapping(torch.randn(4, G.z_dim), 0.7)
        batch = G.synthesis(ws, "const")
        tol = 1e-5 * max(
            1.0, batch.abs().max().item()
        )  # images within 1e-5 relative (3-10x the spread between the reference codebases)
        for i in range(4):
            assert (batch[i] - G.synthesis(ws[i : i + 1], "const")[0]).abs().max() <= tol
    finally:
        set_variant(G, "auto")


def test_formulations_agree_forward_and_backward(small_G):
    G = small_G
    ws0 = G.mapping(torch.randn(3, G.z_dim))
    proj = torch.randn(3, 3, 32, 32)
    results = {}
    for variant in ("nchw", "channels_last", "fused"):
        set_variant(G, variant)
        for batch in (3, 1):  # a batch of one folds the styles into the kernels
            ws = ws0[:batch].clone().requires_grad_(True)
            img = G.synthesis(ws)
            (img * proj[:batch]).sum().backward()
            results[variant, batch] = (img.detach(), ws.grad)
    set_variant(G, "auto")
    img0, g0 = results["nchw", 3]
    for (variant, batch), (img, g) in results.items():
        assert (img - img0[:batch]).abs().max() <= 1e-4 * img0.abs().max(), (variant, batch)
        assert (g - g0[:batch]).abs().max() <= 1e-4 * g0.abs().max(), (variant, batch)


def test_gradients_reach_ws_but_no_parameter(small_G):
    G = small_G
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    ws = G.mapping(torch.randn(2, G.z_dim)).requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert torch.isfinite(ws.grad).all()
    assert all(p.grad is None for p in G.parameters())
    assert (ws.grad.abs().sum(dim=(0, 2)) > 0).all(), "every W+ row must influence the image"


def test_unfrozen_generator_gets_weight_gradients():
    """The frozen fast path must not swallow weight gradients when someone fine-tunes."""
    G = small_generator(seed=4).requires_grad_(True)
    ws = G.mapping(torch.randn(2, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    for name in (
        "synthesis.b8.conv0.weight",
        "synthesis.b16.conv1.weight",
        "synthesis.b8.conv1.bias",
        "synthesis.b16.conv1.noise_strength",
        "synthesis.b4.const",
    ):
        grad = G.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    G2 = small_generator(seed=4).requires_grad_(True)
    G2.synthesis.fused_modconv = True
    G2.synthesis(ws.detach()).square().mean().backward()
    for name in ("synthesis.b8.conv0.weight", "synthesis.b16.conv1.bias"):
        a, b = G.get_parameter(name).grad, G2.get_parameter(name).grad
        assert (a - b).abs().max() <= 1e-4 * a.abs().max(), name


def test_cached_derived_weights_follow_weight_changes():
    G = small_generator(seed=5)
    ws = G.mapping(torch.randn(1, G.z_dim))
    before = G.synthesis(ws)
    other = small_generator(seed=6)
    G.load_state_dict(other.state_dict())
    assert torch.equal(G.synthesis(ws), other.synthesis(ws)), "stale cached weights after load_state_dict"
    assert not torch.equal(G.synthesis(ws), before)
    G64 = G.double()  # a dtype change must not reuse float32 values either
    assert G64.synthesis(ws.double()).dtype == torch.float64


def test_build_generator_is_a_function_of_its_seed():
    a, b, c = (
        build_generator(16, z_dim=8, w_dim=8, n_mlp=2, channel_base=64, channel_max=8, seed=s) for s in (0, 0, 1)
    )
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["synthesis.b8.conv0.weight"], sc["synthesis.b8.conv0.weight"])
    # the reference codebases' init: affine biases 1, conv biases 0, noise strengths 0
    assert torch.equal(sa["synthesis.b8.conv0.affine.bias"], torch.ones(8))
    assert torch.equal(sa["synthesis.b8.conv0.bias"], torch.zeros(8))
    assert sa["synthesis.b8.conv0.noise_strength"] == 0
    assert sa["mapping.fc0.weight"].std() > 10, "mapping weights are stored as N(0,1)/lr_multiplier"
    assert a.info["w_avg_estimated"] and a.w_avg.abs().sum() > 0


def test_mix_ws():
    a, b = torch.zeros(2, 6, 4), torch.ones(2, 6, 4)
    m = mix_ws(a, b, 2)
    assert torch.equal(m[:, :2], a[:, :2]) and torch.equal(m[:, 2:], b[:, 2:])
    with pytest.raises(ValueError):
        mix_ws(a, b, 7)
    with pytest.raises(ValueError):
        mix_ws(a, torch.ones(2, 5, 4), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(small_G):
    G = small_G
    ws = G.mapping(torch.randn(2, G.z_dim))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    Gc = small_generator().to("cuda")
    assert (Gc.synthesis(ws.cuda()).cpu() - G.synthesis(ws)).abs().max() < 1e-4


def test_first_call_computes_like_later_ones():
    """Frozen kernels take the activations' layout on the first call (before anything is
    derived from them), so a fresh generator's first image equals its later ones bit for bit."""
    from .conftest import small_generator

    G = small_generator(seed=11)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)), 0.7)
    first = G.synthesis(ws)
    assert torch.equal(first, G.synthesis(ws))
