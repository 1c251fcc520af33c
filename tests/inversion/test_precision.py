"""Inversion in bf16 (``invert.precision``, and ``manipulate.precision`` for ``--image``):
the projector's generator passes run in bf16 (latent, Adam and losses in fp32) and reach
what fp32 reaches, also with optimised noise maps (their gradient comes out of the bf16
layers); the resolved precision is recorded and keys the inversion cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sound2img.errors import UserInputError
from sound2img.inversion.projector import ProjectorSettings, project
from sound2img.inversion.run import InversionOptions, cache_key, invert_image
from sound2img.metrics import psnr


@pytest.mark.slow  # bf16 is emulated, ~4× slower than fp32, on CPUs without it
def test_bf16_projection_reaches_what_fp32_reaches(G, known):
    _, target = known
    s = ProjectorSettings(steps=80, space="wplus", w_avg_samples=500, noise="optimize")
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        res = project(G, target, settings=s, dtype=dtype)
        with torch.no_grad():
            out[dtype] = (float(psnr(G.synthesis(res.ws), target)), res.losses)
    (p32, l32), (p16, l16) = out[torch.float32], out[torch.bfloat16]
    assert l32[-1] < 0.5 * l32[0], "the projection must make progress"
    assert l16 != l32  # the bf16 run did compute in bf16
    # bf16's own rendering error (~40 dB below the image) is far under the residual left
    # after 80 steps, so the two reach the same fit
    assert abs(p16 - p32) <= 0.5, (p16, p32)
    assert abs(l16[-1] - l32[-1]) <= 0.02 * l32[-1], (l16[-1], l32[-1])


def test_the_resolved_precision_is_recorded_and_keys_the_cache(G, tmp_path):
    yy, xx = np.mgrid[:40, :40]
    path = tmp_path / "me.png"
    Image.fromarray(np.stack([xx * 5, yy * 5, (xx + yy) * 3], -1).astype(np.uint8)).save(path)
    opts = InversionOptions(method="projector", perceptual="none", steps=3, precision="bf16")
    inv = invert_image(path, G, opts, faces=False)
    assert inv.metrics["precision"] == "bf16" and inv.metrics["settings"]["precision"] == "bf16"
    auto = invert_image(path, G, InversionOptions(method="projector", perceptual="none", steps=3), faces=False)
    assert auto.metrics["precision"] == "fp32"
    assert not torch.equal(inv.ws, auto.ws)  # the projector did run in bf16
    fp32 = InversionOptions(method="projector", perceptual="none", steps=3, precision="fp32")
    assert cache_key(path, {"g": 1}, opts) != cache_key(path, {"g": 1}, fp32)
    with pytest.raises(UserInputError, match="invert.precision must be one of auto, fp32, bf16"):
        InversionOptions(precision="fp16").check()
