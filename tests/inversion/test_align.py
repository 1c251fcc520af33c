"""FFHQ alignment: the quad against the published recipe written out independently
here (rotations instead of flips), the resampling against a plain crop, and the dlib
detector path (when the faces extra is installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sound2img.errors import UserInputError
from sound2img.inversion.align import align_face, ffhq_quad, prepare_image


def landmarks(eye_l, eye_r, mouth_l, mouth_r, jitter=0.0, seed=0):
    """68 points whose eye means and mouth corners are the given ones."""
    rs = np.random.RandomState(seed)
    lm = rs.rand(68, 2) * 100
    for sl, centre in ((slice(36, 42), eye_l), (slice(42, 48), eye_r)):
        offs = rs.randn(6, 2) * jitter
        lm[sl] = np.asarray(centre) + offs - offs.mean(0)
    lm[48], lm[54] = mouth_l, mouth_r
    return lm


def expected_quad(eye_l, eye_r, mouth_l, mouth_r):
    e_l, e_r = np.asarray(eye_l, float), np.asarray(eye_r, float)
    m = (np.asarray(mouth_l, float) + np.asarray(mouth_r, float)) / 2
    eye_mid = (e_l + e_r) / 2
    d_eye, d_mouth = e_r - e_l, m - eye_mid

    def rot(v, deg):
        c, s_ = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        return np.array([[c, -s_], [s_, c]]) @ v

    # "x = eye-to-eye − flipud(eye-to-mouth)·[−1, 1]": flipud·[−1,1] is a +90° turn in image coords
    x = d_eye - rot(d_mouth, 90)
    x = x / np.linalg.norm(x) * max(2.0 * np.linalg.norm(d_eye), 1.8 * np.linalg.norm(d_mouth))
    y = rot(x, -90) * -1  # flipud(x)·[−1, 1] = x turned by +90°
    c = eye_mid + 0.1 * d_mouth
    return np.array([c - x - y, c - x + y, c + x + y, c + x - y]), 2 * np.linalg.norm(x)


@pytest.mark.parametrize(
    "pts",
    [
        ((100, 120), (160, 120), (110, 200), (150, 200)),  # upright
        ((100, 130), (158, 112), (118, 205), (160, 190)),  # tilted
        ((300.5, 40.25), (350.0, 60.0), (310.0, 120.0), (340.0, 133.0)),
    ],
)
def test_quad_matches_the_ffhq_formula(pts):
    quad, qsize = ffhq_quad(landmarks(*pts, jitter=3.0))
    want, wsize = expected_quad(*pts)
    np.testing.assert_allclose(quad, want, atol=1e-9)
    assert qsize == pytest.approx(wsize, abs=1e-9)
    # a square: equal sides, right angles
    sides = np.linalg.norm(np.roll(quad, -1, 0) - quad, axis=1)
    np.testing.assert_allclose(sides, qsize, rtol=1e-12)


def test_upright_face_resamples_to_the_quad_crop():
    h, w = 300, 300
    yy, xx = np.mgrid[:h, :w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], -1).astype(np.uint8)
    img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    pts = ((130, 130), (170, 130), (135, 175), (165, 175))  # upright, quad well inside the image
    lm = landmarks(*pts)
    quad, _ = ffhq_quad(lm)
    out = align_face(img, lm, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    (x0, y0), (x1, y1) = quad[0], quad[2]
    from PIL import Image

    ref = Image.fromarray(arr).crop((x0, y0, x1, y1)).resize((64, 64), Image.Resampling.BILINEAR)
    diff = np.abs(out.permute(1, 2, 0).numpy().astype(int) - np.asarray(ref).astype(int))
    assert diff.mean() < 2.0


def test_face_near_the_border_is_padded_not_cropped_short():
    img = torch.full((3, 120, 120), 128, dtype=torch.uint8)
    lm = landmarks((5, 40), (45, 40), (10, 85), (40, 85))  # quad leaves the picture on the left/top
    out = align_face(img, lm, 32)
    assert out.shape == (3, 32, 32)


def test_degenerate_landmarks_are_refused():
    with pytest.raises(UserInputError):
        ffhq_quad(np.zeros((68, 2)))
    with pytest.raises(UserInputError):
        ffhq_quad(np.zeros((5, 2)))


def test_center_and_none_modes():
    img = torch.zeros(3, 50, 80, dtype=torch.uint8)
    out, info = prepare_image(img, 32, "auto", faces=False)
    assert out.shape == (3, 32, 32) and info["align"] == "center"
    out, info = prepare_image(img, 32, "none", faces=False)
    assert out.shape == (3, 32, 32) and info["align"] == "none"


def test_dlib_detector_finds_no_face_in_noise():
    pytest.importorskip("dlib", reason="the faces extra (dlib-bin) is not installed")
    from sound2img.inversion.align import LandmarkDetector, predictor_path

    assert predictor_path().stat().st_size > 50_000_000  # the real 68-point model, not a stand-in
    noise = torch.from_numpy((np.random.RandomState(0).rand(3, 96, 96) * 255).astype(np.uint8))
    with pytest.raises(UserInputError, match="no face found"):
        LandmarkDetector()(noise, "noise.png")
    with pytest.raises(UserInputError, match="no face found"):
        prepare_image(noise, 32, "auto", faces=True, source="noise.png")


@pytest.mark.parametrize("size", [(256, 256), (192, 256)])
@pytest.mark.parametrize("mode", ["none", "center"])
def test_encoder_input_is_e4e_inference_transform(mode, size):
    """Reference: e4e's ``transform_inference`` (omertov/encoder4editing 99ea505,
    ``configs/transforms_config.py``): torchvision's ``Resize(size)`` on the PIL photo,
    ``ToTensor``, ``Normalize(0.5, 0.5)``; (192, 256) is its cars transform. ``center``
    first takes the largest centred box of that aspect at the photo's own resolution."""
    from PIL import Image
    from torchvision import transforms

    from sound2img.inversion.align import prepare_encoder_input

    arr = (np.random.RandomState(1).rand(210, 330, 3) * 255).astype(np.uint8)
    pil = Image.fromarray(arr)
    if mode == "center":  # the 210-px-high photo's largest centred square, or 4:3 box (280 wide)
        w = 210 if size == (256, 256) else 280
        pil = pil.crop(((330 - w) // 2, 0, (330 - w) // 2 + w, 210))
    e4e = transforms.Compose(
        [transforms.Resize(size), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    ours = prepare_encoder_input(torch.from_numpy(arr).permute(2, 0, 1), size, mode, faces=False)
    assert ours.shape == (1, 3, *size)
    assert torch.equal(ours[0], e4e(pil))
