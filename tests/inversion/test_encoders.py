"""e4e / pSp checkpoint readers against the reference fixtures (``e4e/`` in the shared
reference fixtures, ``helpers.fixtures``):
the checkpoint is rebuilt bit-for-bit by the fixture's own script, then our encoder, the
decoder read as our generator and the 256-px resize must reproduce the reference arrays."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.errors import CheckpointError
from sound2img.inversion.encoders import load_encoder_checkpoint
from sound2img.models.stylegan2 import load_generator

from helpers.fixtures import fixture_path

# One worker rebuilds each 715-MB checkpoint once (make test runs several workers).
pytestmark = pytest.mark.xdist_group("e4e_checkpoints")


def fixture_dir(name: str) -> Path:
    return fixture_path("e4e", name)


def rebuild_checkpoint(name: str, out: Path) -> Path:
    """Run the fixture's make_checkpoint.py (torch + stdlib) into ``out``."""
    script = fixture_dir(name).parent / "make_checkpoint.py"
    spec = importlib.util.spec_from_file_location("e4e_make_checkpoint", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(fixture_dir(name)), str(out)]) in (0, None)
    return out


@pytest.fixture(scope="module", params=["encoder4editing_64", "psp_64"])
def case(request, tmp_path_factory):
    name = request.param
    path = rebuild_checkpoint(name, tmp_path_factory.mktemp(name) / "checkpoint.pt")
    ref = dict(np.load(fixture_dir(name) / "ref.npz"))
    yield name, path, ref
    path.unlink()


@pytest.mark.slow
def test_codes_and_images_match_reference(case):
    name, path, ref = case
    torch.set_num_threads(1)
    ckpt = load_encoder_checkpoint(path)
    manifest = json.loads((fixture_dir(name) / "manifest.json").read_text())
    assert ckpt.encoder.style_count == manifest["style_count"]
    assert ckpt.encoder.kind == manifest["encoder_type"]
    x = torch.from_numpy(ref["x"])
    codes = ckpt.encode(x)
    # The fixture's suggested bounds, 13x and 18x its float32-vs-float64 error (7.5e-6 on
    # codes, 5.6e-5 on images): AVX2's kernels alone put e4e's codes 2.8e-5 from it.
    assert (codes - torch.from_numpy(ref["codes"])).abs().max() <= 1e-4
    torch.testing.assert_close(ckpt.latent_avg, torch.from_numpy(ref["latent_avg"]), rtol=0, atol=0)
    # the decoder in the same file, read by load_generator as a rosinality g_ema
    G = load_generator(path)
    assert G.info["format"] == "e4e_decoder" and G.num_ws == codes.shape[1]
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref["codes"]), noise_mode="const")
    assert (img - torch.from_numpy(ref["images_noresize"])).abs().max() <= 1e-3
    big = torch.nn.functional.adaptive_avg_pool2d(img, (256, 256))
    assert (big - torch.from_numpy(ref["images"])).abs().max() <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("case", ["psp_64"], indirect=True)  # one checkpoint is enough
def test_rejects_opts_that_do_not_fit_and_pickles(case, tmp_path):
    _, path, _ = case
    obj = torch.load(path, weights_only=True)
    obj["opts"]["stylegan_size"] = 256  # 14 heads expected, the file has 10
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    with pytest.raises(CheckpointError, match="style heads"):
        load_encoder_checkpoint(bad)
    obj["opts"]["stylegan_size"] = 64
    obj["state_dict"]["encoder.latlayer1.weight"] = torch.zeros(3, 3)
    torch.save(obj, bad)
    with pytest.raises(CheckpointError, match="latlayer1.weight"):
        load_encoder_checkpoint(bad)
    del obj


class _Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_code_running_pickle_is_refused(tmp_path, capsys):
    evil = tmp_path / "e4e_evil.pt"
    torch.save({"state_dict": {}, "opts": {}, "latent_avg": _Boom()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_encoder_checkpoint(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError):
        load_encoder_checkpoint(raw)
    assert "code ran" not in capsys.readouterr().out
