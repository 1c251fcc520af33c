"""Atomic writes never leave partial files; overwrite protection names the path."""

from __future__ import annotations

import pytest

from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, atomic_write_text, check_can_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_check_can_write(tmp_path):
    existing = tmp_path / "a.png"
    existing.write_bytes(b"x")
    check_can_write([tmp_path / "b.png"], overwrite=False)
    check_can_write([existing], overwrite=True)
    with pytest.raises(UserInputError, match="a.png already exists"):
        check_can_write([tmp_path / "b.png", existing], overwrite=False)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_every_writer_honours_the_umask(tmp_path, mask):
    """Weights included: safetensors' ``save_file`` creates its file 0600, which stuck to
    trained encoders and tuned generators while every other output was 0644."""
    import os

    import torch

    from sound2img.audio.frontend import build_frontend
    from sound2img.models.audio_encoder import build_audio_encoder, save_audio_encoder
    from sound2img.models.stylegan2 import build_generator, save_generator
    from sound2img.training.checkpoint import save_training_state

    old = os.umask(mask)
    try:
        enc = build_audio_encoder("tiny_cnn", embed_dim=8, channels=(4,))
        G = build_generator(16, z_dim=8, w_dim=8, n_mlp=1, channel_base=32, channel_max=8)
        written = [
            save_audio_encoder(tmp_path / "encoder_final.safetensors", enc, build_frontend("logmel", n_mels=16), None),
            save_generator(G, tmp_path / "tuned_generator.safetensors", format="safetensors"),
            save_generator(G, tmp_path / "g.pt", format="rosinality"),
            save_training_state(tmp_path / "checkpoints", 1, {"w": torch.zeros(2)}),
        ]
        atomic_write_text(tmp_path / "metrics.json", "{}")
        written.append(tmp_path / "metrics.json")
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(0o666 & ~mask) for p in written}
