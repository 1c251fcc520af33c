"""CLIP towers: shapes and normalisation, both preprocessing modes against hand
computations (torchvision; StyleCLIP's Upsample + AvgPool2d), frozen towers, offline
weight lookup and its one-line error."""

from __future__ import annotations

import socket

import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

from sound2img.errors import CheckpointError, UserInputError, WeightsNotAvailableError
from sound2img.models.clip import (
    build_clip,
    find_cached_clip_weights,
    load_clip,
    load_clip_from_spec,
    preprocess_clip,
    preprocess_styleclip,
)
from sound2img.models.state_dict import read_torch_file
from sound2img.utils.files import sha256_file

HF_REPO = "timm/vit_base_patch32_clip_224.openai"  # open_clip's hub entry for ViT-B-32/openai


@pytest.fixture(scope="module")
def towers():
    return build_clip("tiny", seed=0)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_text_and_image_embeddings(towers):
    text = towers.encode_text(["the sound of rain", "a dog barking", "the sound of rain"])
    assert text.shape == (3, towers.embed_dim) == (3, 32)
    torch.testing.assert_close(text.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(text[0], text[2])
    assert (text[0] - text[1]).abs().max() > 1e-3  # the real tokenizer tells prompts apart
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    for mode in ("clip", "styleclip"):
        emb = towers.encode_image(img, mode=mode)
        assert emb.shape == (2, 32)
        torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    # encode_image is preprocessing + the tower
    torch.testing.assert_close(
        towers.encode_image(img), towers.model.encode_image(towers.preprocess(img), normalize=True)
    )
    with pytest.raises(UserInputError):
        towers.encode_text([])
    with pytest.raises(UserInputError):
        towers.preprocess(img, mode="nearest")


def test_frozen_no_parameter_gets_a_gradient(towers):
    assert not towers.training and not any(p.requires_grad for p in towers.parameters())
    towers.train()
    assert not any(m.training for m in towers.modules())
    img = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    target = towers.encode_text(["a photo of fire", "a photo of snow"])
    for mode in ("clip", "styleclip"):
        img.grad = None
        loss = (1 - (towers.encode_image(img, mode=mode) * target).sum(-1)).sum()
        loss.backward()
        assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in towers.parameters())


def test_clip_preprocess_equals_torchvision_resize_crop_normalise(towers):
    """A non-square image: shorter side to 32 (antialiased bicubic), centre crop, mean/std."""
    img = torch.rand(2, 3, 48, 80) * 2 - 1
    x = (img + 1) / 2
    x = TF.resize(x, [32], interpolation=InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [32, 32])
    expect = TF.normalize(x, mean=list(towers.image_mean), std=list(towers.image_std))
    torch.testing.assert_close(towers.preprocess(img, mode="clip"), expect, atol=1e-5, rtol=1e-5)
    # downscaling 256 → 224 uses a real antialiasing filter (not point sampling)
    big = torch.rand(1, 3, 256, 256) * 2 - 1
    ref = TF.normalize(
        TF.resize((big + 1) / 2, [224], interpolation=InterpolationMode.BICUBIC, antialias=True),
        mean=[0.5] * 3,
        std=[0.5] * 3,
    )
    out = preprocess_clip(big, 224, [0.5] * 3, [0.5] * 3, "bicubic", "shortest")
    assert out.shape == (1, 3, 224, 224)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("res", [64, 256])
def test_styleclip_preprocess_equals_upsample_then_avgpool(res):
    """StyleCLIP: nn.Upsample(scale_factor=7) then nn.AvgPool2d(kernel_size=res // 32), → 224."""
    img = torch.randn(1, 3, res, res)
    expect = nn.AvgPool2d(kernel_size=res // 32)(nn.Upsample(scale_factor=7)(img))
    out = preprocess_styleclip(img, 224)
    assert out.shape == expect.shape == (1, 3, 224, 224)
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=1e-5)


def test_styleclip_preprocess_for_other_sizes(towers):
    # the tiny towers' 32-px input: the same ×7 upsample, pooled by 7·256/32 = 56
    img = torch.randn(2, 3, 256, 256)
    expect = nn.AvgPool2d(kernel_size=56)(nn.Upsample(scale_factor=7)(img))
    # (pooling 3136 values: float summation order differs by a few 1e-6)
    torch.testing.assert_close(towers.preprocess(img, mode="styleclip"), expect, atol=1e-5, rtol=1e-5)
    # sizes StyleCLIP cannot pool to 224: area resampling, which keeps a constant image constant
    flat = torch.full((1, 3, 100, 150), 0.3)
    out = preprocess_styleclip(flat, 224)
    assert out.shape == (1, 3, 224, 224)
    torch.testing.assert_close(out, torch.full_like(out, 0.3))


def test_spec_rebuilds_identical_towers(towers):
    spec = towers.spec()
    assert spec["model_name"] == "tiny" and spec["sha256"] is None and spec["preprocess"] == "clip"
    again = load_clip_from_spec(spec)
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(again.encode_image(img), towers.encode_image(img), atol=0, rtol=0)
    other = build_clip("tiny", seed=1)
    assert (other.encode_image(img) - towers.encode_image(img)).abs().max() > 1e-3
    state = torch.random.get_rng_state()
    build_clip("tiny", seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(UserInputError, match="unknown tiny CLIP argument"):
        build_clip("tiny", width=3)


def test_missing_pretrained_offline_is_one_line(tmp_path, no_network):
    with pytest.raises(WeightsNotAvailableError) as info:
        load_clip("ViT-B-32", "openai", cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "ViT-B-32/openai" in message and f"huggingface.co/{HF_REPO}" in message
    assert isinstance(info.value, UserInputError)  # scripts exit 2
    with pytest.raises(UserInputError, match="neither a file nor a tag"):
        load_clip("ViT-B-32", "no_such_tag", cache_dir=tmp_path)
    with pytest.raises(UserInputError, match="unknown open_clip model"):
        load_clip("ViT-Q-99", "openai")


def _fake_hub_cache(root, filename: str, payload: bytes):
    """The Hugging Face hub cache layout: refs/main → snapshots/<commit>/<file>."""
    repo_dir = root / ("models--" + HF_REPO.replace("/", "--"))
    commit = "0" * 40
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(payload)
    return snap / filename


def test_cached_weights_are_found_without_network(tmp_path, no_network):
    path = _fake_hub_cache(tmp_path, "open_clip_model.safetensors", b"x")
    assert find_cached_clip_weights("ViT-B-32", "openai", tmp_path) == path
    # OpenAI's own URL file in open_clip's URL cache is found too (and later refused: TorchScript)
    url_cache = tmp_path / "url"
    url_cache.mkdir()
    (url_cache / "ViT-B-32.pt").write_bytes(b"x")
    assert find_cached_clip_weights("ViT-B-32", "openai", url_cache) == url_cache / "ViT-B-32.pt"


def test_torchscript_archives_are_refused(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_torch_file(tmp_path / "scripted.pt")


@pytest.mark.slow
def test_load_clip_from_the_hub_cache_offline(tmp_path, no_network):
    """A full-size ViT-B-32 saved where open_clip's hub download would put it loads, with
    the tag's QuickGELU, to the same embeddings; its sha256 is in the spec."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
    path = _fake_hub_cache(tmp_path, "open_clip_model.safetensors", b"")
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    towers = load_clip("ViT-B-32", "openai", cache_dir=tmp_path)
    assert towers.image_size == (224, 224) and towers.embed_dim == 512
    assert towers.spec()["sha256"] == sha256_file(path) and towers.spec()["pretrained"] == "openai"
    img = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        expect = nn.functional.normalize(ref.encode_image(towers.preprocess(img)), dim=-1)
        torch.testing.assert_close(towers.encode_image(img), expect, atol=1e-5, rtol=1e-5)
        tokens = open_clip.get_tokenizer("ViT-B-32")(["rain"])
        torch.testing.assert_close(
            towers.encode_text(["rain"]), nn.functional.normalize(ref.encode_text(tokens), dim=-1), atol=1e-5, rtol=1e-5
        )
    # the same file given by path, and a broken file
    assert load_clip("ViT-B-32", str(path), quick_gelu=True).spec()["sha256"] == towers.spec()["sha256"]
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_clip("ViT-B-32", str(tmp_path / "broken.safetensors"))


def test_bf16_image_tower_is_a_frozen_copy_cast_once(towers):
    img = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    keys = set(towers.state_dict())
    fp32 = towers.encode_image(img).detach()
    emb = towers.encode_image(img, dtype=torch.bfloat16)
    assert emb.dtype == torch.float32
    assert (emb.norm(dim=1) - 1).abs().max() <= 1e-6  # normalised in fp32, not in bf16
    assert (emb - fp32).abs().max() > 0  # it did run in bf16 ...
    assert ((emb * fp32).sum(1) > 0.99).all()  # ... on the same tower
    (1 - emb.sum()).backward()
    assert img.grad is not None and img.grad.dtype == torch.float32 and img.grad.abs().sum() > 0
    tower = towers._image_tower(torch.bfloat16)
    assert tower is towers._image_tower(torch.bfloat16)  # cast once, reused
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad and p.grad is None for p in tower.parameters())
    # the fp32 towers and what they save are untouched
    assert set(towers.state_dict()) == keys and all(p.dtype == torch.float32 for p in towers.parameters())
    assert torch.equal(towers.encode_image(img).detach(), fp32)
