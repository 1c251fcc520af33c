"""Keyframes (docs/method.md §10.1–10.2): their times and windows, the W+ trajectory through
them, the batched window embeddings, and their optimisation — warm-started, pulled towards
the previous keyframe, resumable from any saved prefix."""

from __future__ import annotations

import pytest
import torch
from manipulation.stand_ins import ToyClip, ToyGenerator

from sound2img.video import keyframes as kf


def test_times_end_on_the_sound_and_windows_stay_inside():
    assert kf.keyframe_times(10.0, 1.0).tolist() == [float(i) for i in range(11)]
    assert kf.keyframe_times(0.3, 1.0).tolist() == [0.0, 0.3]
    t = kf.keyframe_times(10.4, 1.0)
    assert len(t) == 11 and torch.allclose(t[1:] - t[:-1], torch.full((10,), 1.04, dtype=torch.float64))
    bounds = kf.window_bounds(torch.tensor([0.0, 5.0, 10.0], dtype=torch.float64), 10.0, 4.0)
    assert bounds.tolist() == [[0.0, 4.0], [3.0, 7.0], [6.0, 10.0]]
    assert kf.window_bounds(torch.tensor([1.0], dtype=torch.float64), 3.0, 10.0).tolist() == [[0.0, 3.0]]


def quadratic_keyframes():
    """Keyframes sampled from w(t) = a + b·t + c·t² at t = 0, 1, …, 5 (each W+ entry its own a, b, c)."""
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    times = torch.arange(6, dtype=torch.float64)
    return (lambda t: a + b * t + c * t * t), times, torch.stack([a + b * t + c * t * t for t in times])


def test_both_interpolations_pass_through_the_keyframes():
    _, times, ws = quadratic_keyframes()
    for mode in kf.INTERPOLATIONS:
        assert torch.allclose(kf.interpolate(ws, times, times, mode), ws, atol=1e-12)


def test_cubic_is_exact_for_a_quadratic_path_and_has_no_kink():
    """Central differences give a quadratic's exact slope, and a cubic Hermite with exact
    end slopes reproduces any polynomial of degree ≤ 3: exact on the inner intervals
    (the end intervals use one-sided slopes). Linear cuts the chord instead."""
    w, times, ws = quadratic_keyframes()
    t = torch.tensor([1.25, 2.5, 3.9], dtype=torch.float64)
    cubic = kf.interpolate(ws, times, t, "cubic")
    assert torch.allclose(cubic, torch.stack([w(x) for x in t]), atol=1e-12)
    linear = kf.interpolate(ws, times, torch.tensor([2.5], dtype=torch.float64), "linear")
    assert torch.allclose(linear[0], (ws[2] + ws[3]) / 2, atol=1e-12)
    h = 1e-6  # one-sided velocities at keyframe 2: equal for cubic, different for linear
    for mode, kink in (("cubic", False), ("linear", True)):
        p = kf.interpolate(ws, times, torch.tensor([2 - h, 2.0, 2 + h], dtype=torch.float64), mode)
        left, right = (p[1] - p[0]) / h, (p[2] - p[1]) / h
        assert bool((left - right).abs().max() > 1e-3) == kink


def test_the_windows_are_embedded_as_each_alone(tmp_path):
    """Batched windows give what the one-at-a-time path (``guidance.encode_sounds``) gives."""
    from sound2img import factory
    from sound2img.cli import compose
    from sound2img.manipulation.guidance import encode_sounds

    cfg = compose("video", ["preset=tiny"])
    encoder, frontend = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, "cpu")
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(4 * frontend.sample_rate, generator=g) * 0.3
    bounds = kf.window_bounds(kf.keyframe_times(4.0, 1.0), 4.0, 1.5)
    batched = kf.encode_windows(wav, bounds, encoder, frontend, chunk=2)
    sr = frontend.sample_rate
    alone = encode_sounds(
        [wav[round(a * sr) : round(a * sr) + round(1.5 * sr)] for a, _ in bounds.tolist()], encoder, frontend
    )
    # unit vectors from the same float32 ops at another batch size: rounding only
    assert batched.shape == (5, alone.shape[1]) and torch.allclose(batched, alone, atol=1e-5)


def toy_run(state, total=5, lambda_prev=0.0, batch_size=1, steps=3):
    G, clip = ToyGenerator(num_ws=4, w_dim=8), ToyClip(dim=16)
    g = torch.Generator().manual_seed(3)
    source = torch.randn(1, 4, 8, generator=g)
    targets = torch.nn.functional.normalize(torch.randn(total, 16, generator=g), dim=-1)
    optim = dict(steps=4, lr=0.1, lambda_sim=0.002, lambda_id=0.0, latent_term="adaptive", mask_step=0.1)
    saves = []
    out = kf.optimize_keyframes(
        G, clip, source, targets, state, optim=optim, keyframe_steps=steps, lambda_prev=lambda_prev,
        batch_size=batch_size, save=lambda s: saves.append(s.done),
    )  # fmt: skip
    # each batch after the first starts from the last finished keyframe: its starting
    # cosine is that keyframe's image against the batch's own targets
    first_of_batch = saves[:-1]
    with torch.no_grad():
        prev = clip.encode_image(G.synthesis(out.ws[[k - 1 for k in first_of_batch]]))
    assert torch.allclose(out.cosine_start[first_of_batch], (prev * targets[first_of_batch]).sum(-1), atol=1e-5)
    return out, saves


def fresh(total=5):
    return kf.Keyframes("fp", kf.keyframe_times(total - 1.0, 1.0), torch.zeros(0, 4, 8), torch.zeros(0), torch.zeros(0))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_resumed_run_equals_an_uninterrupted_one(batch_size):
    full, saves = toy_run(fresh(), batch_size=batch_size)
    assert full.done == 5 and saves == ([1, 2, 3, 4, 5] if batch_size == 1 else [1, 3, 5])
    cut = saves[1]
    part = kf.Keyframes("fp", full.times, full.ws[:cut], full.cosine_start[:cut], full.cosine_after[:cut])
    resumed, _ = toy_run(part, batch_size=batch_size)
    assert torch.equal(resumed.ws, full.ws) and torch.equal(resumed.cosine_after, full.cosine_after)


def test_the_term_towards_the_previous_keyframe_holds_keyframes_together():
    free, _ = toy_run(fresh(), lambda_prev=0.0, steps=10)
    held, _ = toy_run(fresh(), lambda_prev=100.0, steps=10)
    step = lambda s: (s.ws[1:] - s.ws[:-1]).norm(dim=(1, 2))  # noqa: E731
    assert torch.equal(free.ws[0], held.ws[0])  # the first keyframe has no previous one
    assert float(step(held).max()) < 0.2 * float(step(free).min())


def test_keyframes_round_trip_through_their_file(tmp_path):
    state, _ = toy_run(fresh())
    kf.save_keyframes(tmp_path / "keyframes.pt", state)
    back = kf.load_keyframes(tmp_path / "keyframes.pt")
    assert back.fingerprint == "fp" and torch.equal(back.ws, state.ws) and torch.equal(back.times, state.times)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(Exception, match="not a keyframes file"):
        kf.load_keyframes(tmp_path / "other.pt")
