"""IR-SE50: key layout and size per docs/formats.md §6, the public file's reader,
the forward pass against a functional re-statement of docs/formats.md §6, StyleCLIP's face crop and
the identity loss's gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.arcface import IRSE, IdentityLoss, build_arcface, face_crop, load_arcface


def spec_key_table(stages=((64, 3), (128, 4), (256, 14), (512, 3)), embed=512) -> dict[str, tuple]:
    """Every state entry with its shape, written from the layout in docs/formats.md §6 (not from our code)."""
    keys: dict[str, tuple] = {}

    def bn(prefix, c, one_d=False):
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    stem = stages[0][0]
    keys["input_layer.0.weight"] = (stem, 3, 3, 3)
    bn("input_layer.1", stem)
    keys["input_layer.2.weight"] = (stem,)
    unit, c_in = 0, stem
    for depth, n in stages:
        for _ in range(n):
            p = f"body.{unit}"
            if c_in != depth:
                keys[f"{p}.shortcut_layer.0.weight"] = (depth, c_in, 1, 1)
                bn(f"{p}.shortcut_layer.1", depth)
            bn(f"{p}.res_layer.0", c_in)
            keys[f"{p}.res_layer.1.weight"] = (depth, c_in, 3, 3)
            keys[f"{p}.res_layer.2.weight"] = (depth,)
            keys[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            bn(f"{p}.res_layer.4", depth)
            keys[f"{p}.res_layer.5.fc1.weight"] = (depth // 16, depth, 1, 1)
            keys[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // 16, 1, 1)
            unit, c_in = unit + 1, depth
    bn("output_layer.0", c_in)
    keys["output_layer.3.weight"] = (embed, c_in * 7 * 7)
    keys["output_layer.3.bias"] = (embed,)
    bn("output_layer.4", embed)
    return keys


def randomise(net: IRSE, seed: int = 0) -> IRSE:
    """Non-trivial BN statistics and PReLU slopes, so that loading mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(".bias") or (name.endswith("weight") and t.ndim == 1):
                t.copy_(t + torch.randn(t.shape, generator=g) * 0.1)
    return net


def reference_forward(sd: dict, x: torch.Tensor, stages) -> torch.Tensor:
    """docs/formats.md §6 re-stated with torch.nn.functional on the state dict (eval-mode BN, eps 1e-5)."""

    def bn(h, p):
        return F.batch_norm(
            h,
            sd[f"{p}.running_mean"],
            sd[f"{p}.running_var"],
            sd[f"{p}.weight"],
            sd[f"{p}.bias"],
            training=False,
            eps=1e-5,
        )

    h = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    h = F.prelu(bn(h, "input_layer.1"), sd["input_layer.2.weight"])
    unit, c_in = 0, stages[0][0]
    for depth, n in stages:
        for i in range(n):
            p, stride = f"body.{unit}", (2 if i == 0 else 1)
            r = bn(h, f"{p}.res_layer.0")
            r = F.prelu(F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1), sd[f"{p}.res_layer.2.weight"])
            r = bn(F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=stride, padding=1), f"{p}.res_layer.4")
            gate = r.mean(dim=(2, 3), keepdim=True)
            gate = torch.sigmoid(
                F.conv2d(F.relu(F.conv2d(gate, sd[f"{p}.res_layer.5.fc1.weight"])), sd[f"{p}.res_layer.5.fc2.weight"])
            )
            r = r * gate
            if c_in == depth:
                s = h[:, :, ::stride, ::stride]
            else:
                s = bn(F.conv2d(h, sd[f"{p}.shortcut_layer.0.weight"], stride=stride), f"{p}.shortcut_layer.1")
            h = r + s
            unit, c_in = unit + 1, depth
    h = bn(h, "output_layer.0").flatten(1)
    h = F.linear(h, sd["output_layer.3.weight"], sd["output_layer.3.bias"])
    h = bn(h, "output_layer.4")
    return h / h.norm(dim=1, keepdim=True)


def test_ir_se50_size_and_key_table_match_the_spec():
    with torch.device("meta"):
        net = IRSE()
    n_params = sum(p.numel() for p in net.parameters())
    assert round(n_params / 1e6, 1) == 43.8
    state = net.state_dict()
    assert len(state) == 397
    assert {k: tuple(v.shape) for k, v in state.items()} == spec_key_table()


def test_tiny_keeps_the_topology():
    net = build_arcface("tiny")
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == spec_key_table(
        ((16, 1), (32, 1), (64, 1), (128, 1))
    )


@pytest.mark.parametrize("depth", ["tiny", pytest.param(50, marks=pytest.mark.slow)])
def test_forward_equals_functional_restatement(depth):
    net = randomise(build_arcface(depth, seed=1))
    x = torch.randn(2, 3, 112, 112)
    ref = reference_forward(net.state_dict(), x, net.stages)
    out = net(x)
    assert out.shape == (2, 512)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize(
    "legacy,drop_nbt",
    [
        (True, True),
        pytest.param(True, False, marks=pytest.mark.slow),
        pytest.param(False, True, marks=pytest.mark.slow),
    ],
)
def test_public_file_layout_loads_every_tensor(tmp_path, legacy, drop_nbt):
    """Full-size IR-SE50 in the public layout: every tensor lands where it was."""
    net = randomise(build_arcface(50, seed=3))
    state = {k: v for k, v in net.state_dict().items() if not (drop_nbt and k.endswith("num_batches_tracked"))}
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_arcface(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.stages == net.stages
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key


@pytest.mark.parametrize("legacy,drop_nbt", [(True, True), (True, False), (False, True)])
def test_loaded_network_gives_identical_outputs(tmp_path, legacy, drop_nbt):
    net = randomise(build_arcface("tiny", seed=4))
    state = {k: v for k, v in net.state_dict().items() if not (drop_nbt and k.endswith("num_batches_tracked"))}
    torch.save(state, tmp_path / "ir_se_tiny.pth", _use_new_zipfile_serialization=not legacy)
    loaded = load_arcface(tmp_path / "ir_se_tiny.pth")
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.identity_embedding(x), net.identity_embedding(x), atol=0, rtol=0)


def test_wrong_shape_and_missing_key_are_named(tmp_path):
    state = build_arcface("tiny").state_dict()
    bad = dict(state, **{"body.2.res_layer.3.weight": torch.zeros(64, 64, 1, 1)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"body\.2\.res_layer\.3\.weight.*\[64, 64, 1, 1\]"):
        load_arcface(tmp_path / "bad.pth")
    missing = {k: v for k, v in state.items() if k != "output_layer.4.running_var"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"output_layer\.4\.running_var"):
        load_arcface(tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an IR-SE state dict"):
        load_arcface(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_arcface(tmp_path / "absent.pth")


def test_face_crop_is_styleclips_crop_at_every_resolution():
    img = torch.randn(2, 3, 1024, 1024)
    # 1024 → 256 is an exact 4×4 box average; then rows 35:223, cols 32:220; then 112
    box = img.reshape(2, 3, 256, 4, 256, 4).mean(dim=(3, 5))
    expect = F.adaptive_avg_pool2d(box[:, :, 35:223, 32:220], 112)
    torch.testing.assert_close(face_crop(img), expect)
    img256 = torch.randn(1, 3, 256, 256)
    torch.testing.assert_close(face_crop(img256), F.adaptive_avg_pool2d(img256[:, :, 35:223, 32:220], 112))
    # below 256 pixels are repeated (nearest upsampling), so the same relative box is cut
    img64 = torch.randn(1, 3, 64, 64)
    up = img64.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    torch.testing.assert_close(face_crop(img64), face_crop(up))
    assert face_crop(torch.randn(1, 3, 384, 512)).shape == (1, 3, 112, 112)
    with pytest.raises(UserInputError):
        face_crop(torch.randn(1, 1, 256, 256))


def test_identity_loss_has_a_gradient_through_the_edit_only():
    net = build_arcface("tiny", seed=0)
    loss_fn = IdentityLoss(net)
    src = torch.rand(2, 3, 64, 64) * 2 - 1
    img = (src + 0.3 * torch.randn_like(src)).requires_grad_(True)
    src_leaf = src.clone().requires_grad_(True)
    per = loss_fn(img, src_leaf, reduction="none")
    assert per.shape == (2,)
    # by hand: 1 − ⟨f(img), f(src)⟩ with normalised embeddings
    with torch.no_grad():
        expect = 1 - (net.identity_embedding(img) * net.identity_embedding(src)).sum(1)
    torch.testing.assert_close(per.detach(), expect)
    per.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert src_leaf.grad is None  # source features are detached
    assert all(p.grad is None for p in net.parameters())
    torch.testing.assert_close(loss_fn(img, src), per.detach().mean())
    torch.testing.assert_close(loss_fn(img, src, reduction="sum"), per.detach().sum())
    emb = loss_fn.source_embedding(src)
    torch.testing.assert_close(loss_fn(img, source_emb=emb, reduction="none"), per.detach())
    assert float(loss_fn(src, src).abs()) < 1e-6


def test_frozen_and_seeded():
    state = torch.random.get_rng_state()
    a, b = build_arcface("tiny", seed=5), build_arcface("tiny", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    a.train()
    assert not a.training and not any(m.training for m in a.modules())
    with pytest.raises(UserInputError):
        build_arcface(34)
