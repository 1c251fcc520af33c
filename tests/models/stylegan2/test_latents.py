"""load_latents/save_latents: the shapes people's tools save (e4e/PTI .pt, NVlabs
projector .npz, plain .npy), broadcasting, and one-line errors naming file and shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2 import load_latents, save_latents

NUM_WS, W_DIM = 10, 16


@pytest.mark.parametrize("suffix", [".pt", ".npy", ".npz"])
def test_round_trip(tmp_path, suffix):
    ws = torch.randn(3, NUM_WS, W_DIM)
    path = save_latents(tmp_path / f"ws{suffix}", ws)
    assert torch.equal(load_latents(path, NUM_WS, W_DIM), ws)
    with pytest.raises(Exception, match="already exists"):
        save_latents(path, ws)


@pytest.mark.parametrize(
    "shape, batch", [((W_DIM,), 1), ((NUM_WS, W_DIM), 1), ((4, NUM_WS, W_DIM), 4), ((5, W_DIM), 5), ((2, 1, W_DIM), 2)]
)
def test_accepted_shapes(tmp_path, shape, batch):
    arr = torch.randn(shape)
    torch.save(arr, tmp_path / "w.pt")
    ws = load_latents(tmp_path / "w.pt", NUM_WS, W_DIM)
    assert ws.shape == (batch, NUM_WS, W_DIM) and ws.dtype == torch.float32
    flat = arr.reshape(batch, -1, W_DIM)
    assert torch.equal(ws, flat.expand(batch, NUM_WS, W_DIM))


def test_tool_layouts(tmp_path):
    w = np.random.randn(1, NUM_WS, W_DIM).astype(np.float32)
    np.savez(tmp_path / "projected_w.npz", w=w)  # NVlabs projector
    assert np.array_equal(load_latents(tmp_path / "projected_w.npz", NUM_WS, W_DIM).numpy(), w)
    torch.save({"latent": torch.from_numpy(w).double()}, tmp_path / "d.pt")  # dict with a known key
    assert load_latents(tmp_path / "d.pt", NUM_WS, W_DIM).dtype == torch.float32
    np.save(tmp_path / "h.npy", w.astype(np.float16))
    assert load_latents(tmp_path / "h.npy", NUM_WS, W_DIM).shape == (1, NUM_WS, W_DIM)


def test_errors_name_file_and_expected_shape(tmp_path):
    torch.save(torch.zeros(2, NUM_WS + 1, W_DIM), tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=rf"bad.pt: latent of shape \[2, 11, 16\].*\[B, {NUM_WS}, {W_DIM}\]"):
        load_latents(tmp_path / "bad.pt", NUM_WS, W_DIM)
    np.save(tmp_path / "nan.npy", np.full((NUM_WS, W_DIM), np.nan, np.float32))
    with pytest.raises(CheckpointError, match="NaN"):
        load_latents(tmp_path / "nan.npy", NUM_WS, W_DIM)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="obj.npy"):
        load_latents(tmp_path / "obj.npy", NUM_WS, W_DIM)
    torch.save({"a": torch.zeros(W_DIM), "b": torch.zeros(W_DIM)}, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="two.pt"):
        load_latents(tmp_path / "two.pt", NUM_WS, W_DIM)
    (tmp_path / "w.txt").write_text("1 2 3")
    with pytest.raises(CheckpointError, match="unknown latent file type"):
        load_latents(tmp_path / "w.txt", NUM_WS, W_DIM)
    with pytest.raises(CheckpointError, match="not found"):
        load_latents(tmp_path / "missing.npy", NUM_WS, W_DIM)
