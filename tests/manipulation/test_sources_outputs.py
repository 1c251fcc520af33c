"""Source latents (seeded z independent of the batch, mean latent) and the output
directory rules."""

from __future__ import annotations

import os

import pytest
import torch

from sound2img.errors import UserInputError
from sound2img.models.stylegan2 import mean_source_latents, sample_source_latents, seed_to_z
from sound2img.utils.files import check_out_dir, staged_dir
from sound2img.utils.images import make_strip, png_bytes

from .stand_ins import ToyGenerator


def test_seeded_sources_do_not_depend_on_the_batch():
    G = ToyGenerator()
    both = sample_source_latents(G, [3, 7], truncation=0.5)
    alone = sample_source_latents(G, [7], truncation=0.5)
    assert both.shape == (2, G.num_ws, G.w_dim) and torch.allclose(both[1], alone[0], atol=1e-6)
    assert torch.equal(seed_to_z(7, 16), seed_to_z(7, 16)) and not torch.equal(seed_to_z(7, 16), seed_to_z(8, 16))
    # truncation pulls towards w_avg (zero here) by ψ
    full = sample_source_latents(G, [7], truncation=1.0)
    assert torch.allclose(alone, 0.5 * full, atol=1e-6)
    with pytest.raises(UserInputError, match="truncation"):
        sample_source_latents(G, [1], truncation=1.5)
    mean = mean_source_latents(G, 2)
    assert mean.shape == (2, G.num_ws, G.w_dim) and torch.equal(mean[0, 3], G.w_avg)


def test_out_dir_rules(tmp_path):
    assert check_out_dir(tmp_path / "new" / "deeper", overwrite=False) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", overwrite=False)  # an empty directory is fine
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("x")
    with pytest.raises(UserInputError, match="not empty"):
        check_out_dir(tmp_path / "full", overwrite=False)
    check_out_dir(tmp_path / "full", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a directory"):
        check_out_dir(tmp_path / "file", overwrite=True)
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(UserInputError, match="writable"):
            check_out_dir(ro / "out", overwrite=False)
        ro.chmod(0o700)


def test_staged_dir_appears_whole_or_not_at_all(tmp_path):
    with staged_dir(tmp_path / "out") as d:
        (d / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError):
        with staged_dir(tmp_path / "out2") as d:
            (d / "a.txt").write_text("a")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_png_and_strip():
    img = torch.linspace(-1, 1, 3 * 4 * 5).reshape(3, 4, 5)
    data = png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    from PIL import Image

    arr = torch.from_numpy(__import__("numpy").array(Image.open(BytesIO(data))))
    assert arr.shape == (4, 5, 3) and arr[0, 0, 0] == 0 and arr[-1, -1, -1] == 255
    strip = make_strip([img, img, torch.zeros(3, 8, 10)], gap=2)
    assert strip.shape == (3, 4, 5 + 2 + 5 + 2 + 5)
