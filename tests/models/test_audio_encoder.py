"""Audio encoders: every registered architecture builds and embeds; the authors'
``resnet18_57.pth`` layout loads (with the legacy front end); our safetensors files
rebuild encoder and front end from the file alone; unsafe and malformed files are refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from sound2img.audio.frontend import build_frontend
from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.audio_encoder import (
    build_audio_encoder,
    list_audio_encoders,
    load_audio_encoder,
    load_audio_encoder_metadata,
    save_audio_encoder,
)


def seeded(name, seed=0, **kw):
    torch.manual_seed(seed)
    enc = build_audio_encoder(name, **kw)
    with torch.no_grad():  # non-trivial BN statistics, so that a mis-load shows in outputs
        for key, t in enc.state_dict().items():
            if key.endswith("running_mean"):
                t.normal_(0, 0.1)
            elif key.endswith("running_var"):
                t.uniform_(0.5, 1.5)
    return enc.eval()


@pytest.mark.parametrize("name", list_audio_encoders() + ["timm:efficientnet_b0"])
def test_every_registered_encoder_embeds(name):
    enc = build_audio_encoder(name, embed_dim=48)
    mel = torch.randn(2, 1, 128, 40)
    raw = enc(mel)
    assert raw.shape == (2, 48)
    emb = enc.encode_audio(mel)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(2))  # forward is the raw output
    assert enc.arch == name and enc.arch_kwargs == {"embed_dim": 48}
    # trainable as built: a loss reaches the parameters
    emb.sum().backward()
    assert sum(float(p.grad.abs().sum()) for p in enc.parameters() if p.grad is not None) > 0
    with pytest.raises(UserInputError):
        enc(torch.randn(2, 128, 40))


def test_registry_errors():
    with pytest.raises(UserInputError, match="unknown audio encoder 'resnet9'.*tiny_cnn"):
        build_audio_encoder("resnet9")
    with pytest.raises(UserInputError, match="unknown timm model"):
        build_audio_encoder("timm:not_a_model_xyz")
    with pytest.raises(UserInputError, match="tiny_cnn"):
        build_audio_encoder("tiny_cnn", depth=3)


def test_resnet18_legacy_is_the_authors_architecture():
    """conv = Conv2d(1→3, 3×3, no padding, bias) then timm resnet18(num_classes=512), keys as
    in resnet18_57.pth; compared with the two pieces built separately."""
    import timm

    enc = seeded("resnet18_legacy", embed_dim=512)
    state = enc.state_dict()
    assert state["conv.weight"].shape == (3, 1, 3, 3) and state["conv.bias"].shape == (3,)
    assert state["feature_extractor.fc.weight"].shape == (512, 512)
    assert {k.split(".")[0] for k in state} == {"conv", "feature_extractor"}
    conv = nn.Conv2d(1, 3, 3, padding=0)
    conv.load_state_dict({"weight": state["conv.weight"], "bias": state["conv.bias"]})
    backbone = timm.create_model("resnet18", num_classes=512).eval()
    backbone.load_state_dict(
        {k[len("feature_extractor.") :]: v for k, v in state.items() if k.startswith("feature_extractor.")}
    )
    mel = torch.randn(2, 1, 128, 512)
    with torch.no_grad():
        torch.testing.assert_close(enc(mel), backbone(conv(mel)), atol=0, rtol=0)


@pytest.mark.parametrize("layout", ["plain", "module_prefix", "wrapped_state_dict", "wrapped_model_legacy"])
def test_authors_pth_loads_with_the_legacy_frontend(tmp_path, layout):
    enc = seeded("resnet18_legacy", seed=1)
    state = {k: v for k, v in enc.state_dict().items() if not k.endswith("num_batches_tracked")}
    legacy = False
    if layout == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    elif layout == "wrapped_state_dict":
        state = {"state_dict": state, "epoch": 57}
    elif layout == "wrapped_model_legacy":
        state, legacy = {"model": state}, True
    path = tmp_path / "resnet18_57.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded, frontend = load_audio_encoder(path)
    assert loaded.arch == "resnet18_legacy" and loaded.embed_dim == 512
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert frontend.spec() == build_frontend("soundclip_legacy").spec()
    wav = torch.randn(2, 44100) * 0.1  # one second at the legacy rate
    with torch.no_grad():
        mel = frontend(wav)
        assert mel.shape == (2, 1, 128, 512)
        torch.testing.assert_close(loaded(mel), enc(mel), atol=0, rtol=0)


def test_safetensors_round_trip_rebuilds_encoder_and_frontend(tmp_path):
    enc = seeded("tiny_cnn", seed=2, embed_dim=24, channels=[4, 8])
    frontend = build_frontend("logmel")
    clip_spec = {"model_name": "tiny", "pretrained": None, "seed": 0, "preprocess": "clip", "sha256": None}
    path = save_audio_encoder(tmp_path / "enc.safetensors", enc, frontend, clip_spec, {"step": 7})
    meta = load_audio_encoder_metadata(path)
    assert meta["arch"] == "tiny_cnn" and meta["arch_kwargs"] == {"embed_dim": 24, "channels": [4, 8]}
    assert meta["frontend"] == json.loads(json.dumps(frontend.spec()))
    assert meta["clip"] == clip_spec and meta["extra"] == {"step": 7} and meta["format_version"] == 1
    loaded, loaded_frontend = load_audio_encoder(path)
    assert loaded_frontend.spec() == frontend.spec()
    wav = torch.randn(2, 16000 * 2)
    with torch.no_grad():
        mel = frontend(wav)
        torch.testing.assert_close(loaded.encode_audio(loaded_frontend(wav)), enc.encode_audio(mel), atol=0, rtol=0)
    # never overwritten silently; the write is atomic (no stray temporary files)
    with pytest.raises(UserInputError, match="already exists"):
        save_audio_encoder(path, enc, frontend)
    save_audio_encoder(path, enc, frontend, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.safetensors"]


class _WritesAMarker:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pth_is_refused_and_never_executed(tmp_path, legacy):
    # positive control: the payload does create its marker when unpickled unsafely
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_WritesAMarker(control)))
    assert control.exists()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(
        {"conv.weight": torch.zeros(3, 1, 3, 3), "payload": _WritesAMarker(marker)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    with pytest.raises(CheckpointError, match="refused") as info:
        load_audio_encoder(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_malformed_checkpoints_name_the_problem(tmp_path):
    state = build_audio_encoder("resnet18_legacy").state_dict()
    bad = dict(state, **{"conv.weight": torch.zeros(3, 1, 5, 5)})
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"'conv\.weight' has shape \[3, 1, 5, 5\], expected \[3, 1, 3, 3\]"):
        load_audio_encoder(tmp_path / "shape.pth")
    torch.save(
        {k: v for k, v in state.items() if k != "feature_extractor.layer2.0.conv1.weight"}, tmp_path / "missing.pth"
    )
    with pytest.raises(CheckpointError, match=r"missing key 'feature_extractor\.layer2\.0\.conv1\.weight'"):
        load_audio_encoder(tmp_path / "missing.pth")
    torch.save({"backbone.conv1.weight": torch.zeros(2), "head.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"unknown audio-encoder layout.*\['backbone', 'head'\]"):
        load_audio_encoder(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict.*found a list"):
        load_audio_encoder(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_audio_encoder(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_audio_encoder(tmp_path / "absent.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"x": "y"})
    with pytest.raises(CheckpointError, match="without sound2img audio-encoder metadata"):
        load_audio_encoder(tmp_path / "foreign.safetensors")


def test_stored_frontend_this_code_cannot_build_is_a_checkpoint_error(tmp_path):
    enc = build_audio_encoder("tiny_cnn", embed_dim=8)
    path = save_audio_encoder(tmp_path / "enc.safetensors", enc, {"name": "logmel", "no_such_setting": 1})
    with pytest.raises(CheckpointError, match=r"enc\.safetensors: front end .*no_such_setting"):
        load_audio_encoder(path)
