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
from sound2img.inversion.run import InversionOptions, invert_image
from sound2img.models.stylegan2 import load_generator

from helpers.fixtures import fixture_path

# One worker rebuilds each 715-MB checkpoint once (make test runs several workers).
pytestmark = pytest.mark.xdist_group("e4e_checkpoints")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    # the photo itself through invert_image, as invert.py runs it (the CLI test runs e4e's)
    opts = InversionOptions(method="e4e" if ckpt.encoder.kind == "Encoder4Editing" else "psp", encoder=str(path))
    opts.align = "none"
    inv = invert_image(fixture_dir(name) / "input.png", G, opts, faces=True, encoder_loader=lambda _: ckpt)
    assert (inv.ws[0] - torch.from_numpy(ref["codes"][0])).abs().max() <= 1e-4


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


@pytest.mark.slow
@pytest.mark.parametrize("case", ["encoder4editing_64"], indirect=True)  # pSp's photo: the invert_image test above
def test_invert_cli_encodes_the_photo_as_e4e_does(case, tmp_path):
    """The command a user runs, on the fixture's photo: no --generator (the file's own
    decoder is the generator, nothing is fetched), no alignment. The codes are e4e's
    within 5e-4 (the fixture's float32-vs-float64 error is 7.5e-6)."""
    import os
    import subprocess
    import sys

    name, path, ref = case
    env = {
        **os.environ,
        "SOUND2IMG_OFFLINE": "1",
        "SOUND2IMG_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    argv = ["--image", str(fixture_dir(name) / "input.png"), "--method", "e4e", "--encoder", str(path)]
    res = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "invert.py"), *argv, "--align", "none", "--out", "out"]
        + ["--device", "cpu", "progress=false"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ws = torch.load(tmp_path / "out" / "latent.pt", weights_only=True)
    assert (ws - torch.from_numpy(ref["codes"][0])).abs().max() <= 5e-4
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["encoder"]["input_size"] == [256, 256] and m["config"]["generator"]["path"] == str(path)


def test_a_cars_encoder_sees_e4e_cars_input_and_is_scored_on_the_content_rows(tmp_path):
    """e4e's cars transform makes 192x256 inputs (``CarsEncodeTransforms``) and its
    inference crops the 512-px decoder image to rows 64..447: a photo is cut to 4:3 for
    both, and the reconstruction is scored on those rows only."""
    import numpy as np
    from PIL import Image

    from sound2img.inversion.encoders import EncoderCheckpoint
    from sound2img.metrics import QualityMetrics, psnr
    from tests.models.stylegan2.conftest import small_generator

    G = small_generator(seed=3)
    seen = []

    class Recorder(torch.nn.Module):
        kind, style_count = "Encoder4Editing", G.num_ws

        def forward(self, x):
            seen.append(tuple(x.shape))
            return torch.zeros(x.shape[0], G.num_ws, G.w_dim)

    ckpt = EncoderCheckpoint(Recorder(), G.w_avg.expand(G.num_ws, -1), {"dataset_type": "cars_encode"}, {}, "cars")
    Image.fromarray((np.random.RandomState(0).rand(90, 200, 3) * 255).astype(np.uint8)).save(tmp_path / "car.png")
    opts = InversionOptions(method="e4e", encoder="cars")
    scores = QualityMetrics({"lpips": None})  # PSNR needs the two pictures at one size
    inv = invert_image(tmp_path / "car.png", G, opts, faces=True, encoder_loader=lambda _: ckpt, quality=scores)
    R = G.img_resolution
    with torch.no_grad():
        recon = G.synthesis(G.w_avg.expand(1, G.num_ws, -1), noise_mode="const")[..., R // 8 : R - R // 8, :]
    expected = float(psnr(recon, inv.aligned.float()[None] / 127.5 - 1))
    assert inv.metrics["quality"]["psnr"]["value"] == pytest.approx(expected, rel=1e-5)
    assert seen == [(1, 3, 192, 256)] and inv.metrics["align"] == "center"  # a cars encoder: no face alignment
    assert inv.aligned.shape == (3, R * 3 // 4, R) and inv.metrics["content_rows"] == [R // 8, R - R // 8]
    assert inv.reconstruction.shape == (1, 3, R, R)
