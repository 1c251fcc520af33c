"""The benchmark's re-expression of the authors' generator (rosinality's grouped modulated
convs and native upfirdn2d path) computes rosinality's synthesis: loaded with the shared
fixture's rosinality weights, it reproduces the images and gradients that rosinality's own
code computed. The README's speed ratios compare against this baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.models.stylegan2.ops import blur_after_upconv, fir_kernel_2d, upsample2d

from helpers import load_file_module
from helpers.fixtures import fixture_path, manifest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "manipulate.py"

# 4x rosinality's own float32 error on these arrays (the fixture's float32 images and
# gradients against the same network in float64: 5.8e-6, and 4.4e-7 of the largest gradient).
IMAGE_TOL, GRAD_REL_TOL = 2.4e-5, 1.8e-6


@pytest.fixture(scope="module")
def bm():
    return load_file_module(BENCH)


def rosinality_baseline(bm, folder: Path):
    """The benchmark's ``RosGenerator`` at the fixture's size and widths, holding the weights
    of rosinality's ``g_ema`` (its mapping network aside: the benchmark starts from W+)."""
    info = manifest("stylegan2", folder.name)
    cfg, widths = info["config"], info["channels"]
    G = bm.RosGenerator(cfg["size"], style_dim=cfg["style_dim"], channels=lambda r: widths[str(r)])
    g_ema = torch.load(folder / "rosinality_converted_style.pt", weights_only=True)["g_ema"]
    renames = (
        ("input.input", "input"),
        (".noise.weight", ".noise_weight"),
        (".activate.bias", ".bias"),
        (".conv.blur.kernel", ".conv.blur"),
        (".upsample.kernel", ".kernel"),
        ("noises.", ""),
    )
    state = {}
    for key, value in g_ema.items():
        if key.startswith("style."):
            continue
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    # rosinality stores a blur kernel only where one is used; the benchmark's modules all own one
    missing, unexpected = G.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith((".blur", ".kernel")) for k in missing), (missing, unexpected)
    return G.eval().requires_grad_(False)


def test_baseline_generator_is_rosinalitys(bm):
    folder = fixture_path("stylegan2", "rosinality")
    r = dict(np.load(folder / "rosinality_ref.npz"))
    G = rosinality_baseline(bm, folder)
    wplus = torch.from_numpy(r["wplus"]).requires_grad_(True)
    img = G(wplus)
    (img * torch.from_numpy(r["proj"])).sum().backward()
    want_grad = torch.from_numpy(r["grad_wplus"])
    assert (img.detach() - torch.from_numpy(r["img_wplus"])).abs().max() <= IMAGE_TOL
    assert (wplus.grad - want_grad).abs().max() <= GRAD_REL_TOL * want_grad.abs().max()


def test_native_fir_paths_match_our_ops(bm):
    """Float32 on values of order 1: both sides are sums of 16 products, ~1e-7 apart."""
    torch.manual_seed(0)
    f = fir_kernel_2d() * 4
    x = torch.randn(2, 5, 8, 8)
    assert torch.allclose(bm.fir_native(x, f, 2, (2, 1)), upsample2d(x, f), atol=1e-5)
    y = torch.randn(2, 5, 17, 17)
    assert torch.allclose(bm.fir_native(y, f, 1, (1, 1)), blur_after_upconv(y, f), atol=1e-5)
