"""The benchmark's re-expression of the authors' loop computes what the project's
StyleGAN2 ops compute (so the speed comparison is between equal functions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sound2img.models.stylegan2.ops import blur_after_upconv, fir_kernel_2d, modulated_conv2d, upsample2d

from helpers import load_file_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "manipulate.py"


@pytest.fixture(scope="module")
def bm():
    return load_file_module(BENCH)


def test_native_fir_paths_match_our_ops(bm):
    torch.manual_seed(0)
    f = fir_kernel_2d() * 4
    x = torch.randn(2, 5, 8, 8)
    assert torch.allclose(bm.fir_native(x, f, 2, (2, 1)), upsample2d(x, f), atol=1e-5)
    y = torch.randn(2, 5, 17, 17)
    assert torch.allclose(bm.fir_native(y, f, 1, (1, 1)), blur_after_upconv(y, f), atol=1e-5)


@pytest.mark.parametrize("up", [False, True])
def test_grouped_modulated_conv_matches_ours(bm, up):
    torch.manual_seed(0)
    conv = bm.RosModConv(8, 4, 3, upsample=up)
    x, style = torch.randn(2, 8, 8, 8), torch.randn(2, 512)
    styles = conv.modulation(style)
    ours = modulated_conv2d(x, conv.weight[0], styles, demodulate=True, up=up, fir_up=fir_kernel_2d() * 4)
    ref = conv(x, style)
    assert ref.shape == ours.shape and torch.allclose(ref, ours, atol=1e-4)
