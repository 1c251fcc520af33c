"""The authors' objective is the default: StyleCLIP's CLIP input and d_cos = 1 − e^0.07·cos
in every preset that carries their settings, and free generation optimises d_cos alone."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sound2img import factory
from sound2img.cli import compose
from sound2img.manipulation import run
from sound2img.manipulation.optimizer import AUTHORS_COS_SCALE, optimize_latents
from sound2img.models.stylegan2 import mean_source_latents

from .stand_ins import ToyClip, ToyGenerator
from .test_optimizer import sources, targets
from .test_run import cfg_for


@pytest.mark.parametrize(
    "config,overrides",
    [
        ("manipulate", []),  # the default: manipulate=landscape
        ("manipulate", ["manipulate=faces"]),
        ("manipulate", ["preset=tiny"]),
        ("reproduce", ["eval=supp_table1"]),
        ("reproduce", ["eval=supp_table2"]),
        ("reproduce", ["eval=fig_tsne_directions"]),
        ("reproduce", ["eval=fig_lambda_grid"]),
        ("reproduce", ["eval=fig_volume"]),
        ("reproduce", ["eval=fig_interpolation"]),
    ],
)
def test_presets_use_the_authors_clip_input_and_cosine_scale(config, overrides):
    cfg = compose(config, overrides)
    assert cfg.clip.preprocess == "styleclip"
    assert cfg.manipulate.cos_scale == pytest.approx(math.exp(0.07), rel=1e-12)


def test_clip_preprocessing_stays_an_option():
    assert compose("manipulate", ["clip.preprocess=clip"]).clip.preprocess == "clip"


class _Plane(torch.nn.Module):
    """A 'generator' whose image is its one W row: ws [B,1,2] → img [B,2,1,1]."""

    def synthesis(self, ws, noise_mode="const"):
        return ws[:, 0, :, None, None]


def test_cos_scale_is_the_authors_d_cos():
    """The authors' loss is ``1 − (image_features @ audio_features.T) · math.exp(0.07)``
    (their SoundCLIPLoss), worked out by hand for an image embedding (3, 4)/5: against the
    target (1, 0) cos = 0.6 and d_cos = 1 − 1.0725081812542165 · 0.6 = 0.3564950912474701;
    against (0, 1) cos = 0.8 and d_cos = 0.1419934549966268; against (0.6, 0.8) cos = 1 and
    d_cos = −0.0725081812542165 (below zero: their d_cos is not a distance)."""
    ws = torch.tensor([[[3.0, 4.0]]] * 3, dtype=torch.float64)
    tgt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    encode = lambda img: F.normalize(img.flatten(1), dim=-1)  # noqa: E731
    res = optimize_latents(_Plane(), encode, ws, tgt, steps=1, lambda_sim=0.0, cos_scale=AUTHORS_COS_SCALE)
    want = torch.tensor([0.3564950912474701, 0.1419934549966268, -0.0725081812542165])
    torch.testing.assert_close(res.losses["d_cos"][0], want.float(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="cos_scale"):
        optimize_latents(_Plane(), encode, ws, tgt, steps=1, cos_scale=0.0)


def test_cos_scale_weighs_the_latent_term_as_a_smaller_lambda():
    """Adam ignores a constant factor on the loss, so scale s at λ follows the path of scale
    1 at λ/s (up to Adam's ε, 2e-6 here), not that of scale 1 at λ (0.06 away). Float64:
    in float32 the rounding of any two runs is amplified by Adam to the same order."""
    G, clip = ToyGenerator(num_ws=14).double(), ToyClip().double()
    ws0, tgt = sources(G, 2), targets(clip, 2).double()
    s, lam = AUTHORS_COS_SCALE, 0.05
    kw = dict(steps=20, lr=0.1, latent_term="adaptive")
    theirs = optimize_latents(G, clip.encode_image, ws0, tgt, lambda_sim=lam, cos_scale=s, **kw)
    same = optimize_latents(G, clip.encode_image, ws0, tgt, lambda_sim=lam / s, **kw)
    plain = optimize_latents(G, clip.encode_image, ws0, tgt, lambda_sim=lam, **kw)
    assert (theirs.ws - same.ws).abs().max() <= 2e-5
    assert (theirs.ws - plain.ws).abs().max() > 1e-2


def test_free_generation_optimises_d_cos_alone(tmp_path):
    """--mean-latent: no λ_sim and no masking (the authors' free_generation mode), whatever
    manipulate.lambda_sim says; the same edit from a latent file keeps λ_sim."""
    big = ["manipulate.lambda_sim=5.0", "--steps", "4"]
    free = run.run_edit(cfg_for(tmp_path / "free", "--audio", "tone:440", "--mean-latent", *big))[0]
    m = json.loads((free / "metrics.json").read_text())
    assert m["losses"]["sim"] == [0.0] * 4
    assert m["losses"]["total"] == m["losses"]["d_cos"]
    assert m["edit"]["source"]["objective"].startswith("d_cos alone")
    # the same start as a latent file: the latent term is on there
    cfg = cfg_for(tmp_path / "file", "--audio", "tone:440", *big)
    start = tmp_path / "mean.pt"
    torch.save(mean_source_latents(factory.build_generator_from_cfg(cfg.generator, "cpu"))[0], start)
    edited = run.run_edit(cfg_for(tmp_path / "file", "--audio", "tone:440", "--latent", str(start), *big))[0]
    m2 = json.loads((edited / "metrics.json").read_text())
    assert m2["losses"]["sim"][-1] > 0
    assert m2["losses"]["d_cos"][0] == pytest.approx(m["losses"]["d_cos"][0], abs=1e-6)  # same start, same d_cos
