"""Figure rendering: image grids are exact tilings of the images; t-SNE keeps clusters
apart and accepts as few as three points."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from sound2img.evaluation.figures import SCATTER_SIZE_PX, image_grid_png, render_embedding_tsne, tsne_2d


def test_image_grid_is_an_exact_tiling():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 3, 4, 5, generator=g) * 2 - 1  # [R,C,3,H,W] in [-1,1]
    png = np.array(Image.open(io.BytesIO(image_grid_png(img))))  # [R·H, C·W, 3]
    assert png.shape == (2 * 4, 3 * 5, 3)
    for r in range(2):
        for c in range(3):
            expected = ((img[r, c].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            assert np.array_equal(png[4 * r : 4 * (r + 1), 5 * c : 5 * (c + 1)], expected)


def test_tsne_separates_clusters_and_clips_perplexity():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10, 16, generator=g) + 20, torch.randn(10, 16, generator=g) - 20])
    xy = tsne_2d(x, perplexity=5)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(20) * 1e9
    nearest = d.argmin(axis=1)
    assert ((nearest < 10) == (np.arange(20) < 10)).all()  # every point's neighbour is in its cluster
    assert tsne_2d(torch.randn(3, 4, generator=g), perplexity=30).shape == (3, 2)  # 30 > N − 1: clipped


def test_embedding_scatter_has_the_stated_size():
    png = render_embedding_tsne(
        np.random.default_rng(0).normal(size=(6, 2)),
        np.array([0, 0, 1, 1, 2, 2]),
        np.zeros((3, 2)),
        ["dog", "rain", "car_horn"],
        "t",
    )
    assert Image.open(io.BytesIO(png)).size == SCATTER_SIZE_PX
