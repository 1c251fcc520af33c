"""Pivotal tuning beats projection alone on an image the generator cannot make exactly,
and never touches the original generator (in memory or on disk)."""

from __future__ import annotations

import pytest
import torch

from sound2img.inversion.projector import ProjectorSettings, project
from sound2img.inversion.pti import PTISettings, tune_generator
from sound2img.metrics import psnr
from sound2img.models.stylegan2 import load_generator, save_generator
from sound2img.utils.files import sha256_file


@pytest.mark.slow
def test_pti_lowers_error_of_a_patched_image_and_keeps_the_original(G, known, tmp_path):
    _, img = known
    target = img.clone()
    target[:, :, 8:20, 8:20] = torch.tensor([1.0, -1.0, 0.5]).reshape(1, 3, 1, 1)  # no latent makes this
    original = tmp_path / "G.safetensors"
    save_generator(G, original)
    digest = sha256_file(original)
    G0 = load_generator(original)
    before = {k: v.clone() for k, v in G0.state_dict().items()}

    proj = project(G0, target, settings=ProjectorSettings(steps=200, space="w", w_avg_samples=1000))
    with torch.no_grad():
        p_proj = float(psnr(G0.synthesis(proj.ws, noise_mode="const"), target))
    tuning = tune_generator(G0, proj.ws, target, settings=PTISettings(steps=150, lr=3e-3))
    with torch.no_grad():
        p_pti = float(psnr(tuning.generator.synthesis(proj.ws, noise_mode="const"), target))
    assert p_pti > p_proj + 3.0, (p_proj, p_pti)
    assert all(torch.equal(before[k], v) for k, v in G0.state_dict().items())
    assert sha256_file(original) == digest
    assert not any(p.requires_grad for p in tuning.generator.parameters())

    # the tuned copy round-trips through our generator file format
    tuned = save_generator(tuning.generator, tmp_path / "tuned.safetensors")
    G1 = load_generator(tuned)
    with torch.no_grad():
        assert torch.equal(G1.synthesis(proj.ws), tuning.generator.synthesis(proj.ws))


def test_locality_regulariser_holds_other_latents(G, known):
    """With a large locality weight, images away from the pivot change less than without."""
    _, img = known
    target = -img
    pivot = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(9)))
    probe = G.mapping(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(10)))

    def drift(locality: bool) -> float:
        st = PTISettings(steps=15, lr=3e-3, locality=locality, locality_l2_weight=50.0, locality_samples=4)
        tuned = tune_generator(G, pivot, target, settings=st).generator
        with torch.no_grad():
            return float(
                (tuned.synthesis(probe, noise_mode="none") - G.synthesis(probe, noise_mode="none")).square().mean()
            )

    assert drift(True) < drift(False)


def test_early_stop_is_checked_before_the_step(G, known):
    """PTI (da94d59, single_id_coach.py) computes LPIPS, then stops before stepping once it
    is ≤ 0.06: distances 0.2, 0.1, 0.05 → two steps taken, not three."""
    _, img = known
    values = iter([0.2, 0.1, 0.05, 0.01])

    def dist(a, b):
        return a.new_full((a.shape[0],), next(values)) + 0 * a.mean()

    tuning = tune_generator(G, G.mapping(torch.randn(1, G.z_dim)), img, settings=PTISettings(steps=10), lpips=dist)
    assert tuning.steps_run == 2 and len(tuning.losses) == 2


def test_pti_projects_with_the_projection_lpips_and_tunes_with_its_own(G, tmp_path):
    """invert_image's pti: the pivot projection uses ``lpips`` (VGG16 ≤ 256 px, as NVlabs'),
    the tuning ``pti_lpips`` (AlexNet at full resolution), each on the full image."""
    import numpy as np
    from PIL import Image

    from sound2img.inversion.run import InversionOptions, invert_image

    R = G.img_resolution
    Image.fromarray((np.random.RandomState(0).rand(R, R, 3) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    calls = {"vgg": [], "alex": []}

    def fake(name):
        def dist(a, b):
            calls[name].append(tuple(a.shape))
            return (a - b).square().flatten(1).mean(1) + 1.0  # never below PTI's threshold

        return dist

    opts = InversionOptions(method="pti", steps=3, pti_steps=2, align="none")
    inv = invert_image(
        tmp_path / "p.png", G, opts, faces=False, lpips=lambda: fake("vgg"), pti_lpips=lambda: fake("alex")
    )
    assert calls["vgg"] == [(1, 3, R, R)] * 3 and calls["alex"] == [(1, 3, R, R)] * 2
    assert inv.tuned and inv.metrics["projector"]["recipe"] == "pti" and inv.metrics["pti"]["steps_run"] == 2
    assert inv.metrics["projector"]["space"] == "w" and not inv.metrics["pti"]["locality"]
