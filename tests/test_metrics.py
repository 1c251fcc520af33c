"""``sound2img.metrics``: LPIPS built offline from a torchvision VGG16 state dict equals
the lpips package's own network; PSNR, identity and CLIP cosines by their formulas; a
missing network is recorded as unavailable, never raised."""

from __future__ import annotations

import warnings

import pytest
import torch

from sound2img.errors import WeightsNotAvailableError
from sound2img.metrics import (
    QualityMetrics,
    clip_cosine,
    identity_cosine,
    layer_distance,
    load_lpips,
    psnr,
)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    # torchvision's key names; the 500-MB classifier, which LPIPS never reads, is left out
    features = torchvision.models.vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_lpips_matches_the_lpips_package(vgg_file):
    import lpips

    ours = load_lpips(vgg_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)  # package heads
    vgg = torch.load(vgg_file, weights_only=True)
    ref.net.load_state_dict(
        {
            k.replace("features.", f"slice{s}.", 1): v
            for k, v in vgg.items()
            for s, (lo, hi) in enumerate(((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)), 1)
            if k.startswith("features.") and lo <= int(k.split(".")[1]) < hi
        }
    )
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(a, b), ref(a, b).reshape(2), rtol=1e-5, atol=1e-6)
        assert float(ours(a, a).abs().max()) == 0.0
        # against(target): the target's features once, the same distance as the package's
        torch.testing.assert_close(ours.against(b)(a), ref(a, b).reshape(2), rtol=1e-5, atol=1e-6)
    a.requires_grad_(True)
    (g_cached,) = torch.autograd.grad(ours.against(b)(a).sum(), a)
    (g_ref,) = torch.autograd.grad(ref(a, b).sum(), a)
    torch.testing.assert_close(g_cached, g_ref, rtol=1e-4, atol=1e-7)
    a = a.detach()
    with torch.no_grad():
        big = torch.nn.functional.interpolate(a, size=(320, 320), mode="bilinear")
        # > 256 px is area-downsampled to 256 first
        torch.testing.assert_close(
            ours(big, big * 0.5),
            ours(
                torch.nn.functional.interpolate(big, size=(256, 256), mode="area"),
                torch.nn.functional.interpolate(big * 0.5, size=(256, 256), mode="area"),
            ),
        )


def test_lpips_refuses_a_file_that_is_not_vgg16(tmp_path):
    from sound2img.errors import CheckpointError

    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="vgg16"):
        load_lpips(tmp_path / "x.pth")


def test_psnr_formula():
    a = torch.zeros(1, 3, 8, 8)
    b = a + 0.2  # mse 0.04 on a peak-to-peak range of 2
    assert float(psnr(a, b)) == pytest.approx(10 * torch.log10(torch.tensor(4 / 0.04)).item(), rel=1e-6)
    assert float(psnr(a, a)) > 100


def test_identity_and_clip_cosines_and_layer_distance():
    from sound2img.models.arcface import build_arcface
    from sound2img.models.clip import build_clip

    net = build_arcface("tiny")
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(identity_cosine(net, img, img), torch.ones(2), atol=1e-5, rtol=0)
    assert float(identity_cosine(net, img[:1], -img[:1])) < 0.999
    clip = build_clip("tiny")
    emb = clip.encode_image(img[:1])[0]
    assert float(clip_cosine(clip, img[:1], emb)) == pytest.approx(1.0, abs=1e-5)
    ws, ref = torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)
    ws[0, 2] = torch.tensor([3.0, 4.0, 0.0])
    assert layer_distance(ws, ref).tolist() == [[0.0, 0.0, 5.0, 0.0]]


def test_missing_networks_are_recorded_not_raised():
    def missing():
        raise WeightsNotAvailableError("vgg16.pth (torchvision_vgg16) is not in the cache and downloads are off")

    calls = []

    def counted():
        calls.append(1)
        return missing()

    q = QualityMetrics({"lpips": counted, "identity": None, "clip": None})
    a = torch.zeros(1, 3, 16, 16)
    out = q.compare(a, a + 0.1)
    assert out["lpips"] == {
        "value": None,
        "unavailable": "vgg16.pth (torchvision_vgg16) is not in the cache and downloads are off",
    }
    assert "identity_cosine" not in out and out["psnr"]["value"] > 0
    q.compare(a, a)
    assert len(calls) == 1  # built (or failed) once
    assert q.clip_to_target(a, torch.ones(4))["value"] is None


def test_lpips_alexnet_matches_the_lpips_package_at_full_resolution(tmp_path):
    """PTI's tuning loss: lpips.LPIPS(net='alex') (lpips 0.1.x) with torchvision's AlexNet
    features, on images larger than 256 px, which it sees whole."""
    import lpips
    import torchvision

    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    ours = load_lpips(path, net="alex", max_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    slices = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
    ref.net.load_state_dict(
        {
            k.replace("features.", f"slice{s}.", 1): v
            for k, v in torch.load(path, weights_only=True).items()
            for s, (lo, hi) in enumerate(slices, 1)
            if lo <= int(k.split(".")[1]) < hi
        }
    )
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 300, 300, generator=g) * 2 - 1, torch.rand(2, 3, 300, 300, generator=g) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(a, b), ref(a, b).reshape(2), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.against(b)(a), ref(a, b).reshape(2), rtol=1e-5, atol=1e-6)
    from sound2img.errors import CheckpointError

    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "vgg_like.pth")  # VGG's first conv
    with pytest.raises(CheckpointError, match="alexnet"):
        load_lpips(tmp_path / "vgg_like.pth", net="alex")
