"""Photo loading: conversions (greyscale, palette, CMYK, alpha, 16-bit), EXIF
orientation, and refusals (not an image, truncated, tiny, decompression bomb)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from sound2img.errors import UserInputError
from sound2img.inversion.images import center_crop_resize, load_image


def rgb(h=40, w=60):
    rs = np.random.RandomState(0)
    return (rs.rand(h, w, 3) * 255).astype(np.uint8)


def png_header_only(path, w, h):
    """A PNG that claims w×h pixels but holds one tiny IDAT: opening it costs nothing."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )
    return path


def test_rgb_png_roundtrip(tmp_path):
    a = rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.dtype == torch.uint8 and img.shape == (3, 40, 60)
    assert torch.equal(img.permute(1, 2, 0), torch.from_numpy(a))


def test_conversions(tmp_path):
    grey = (np.arange(40 * 60).reshape(40, 60) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png")
    assert torch.equal(g[0], torch.from_numpy(grey)) and torch.equal(g[0], g[2])

    sixteen = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "s.png")  # uint16 → mode I;16
    s = load_image(tmp_path / "s.png")
    expected = np.clip(np.rint(sixteen / 65535.0 * 255), 0, 255).astype(np.uint8)
    assert np.abs(s[0].numpy().astype(int) - expected).max() <= 1  # scaled, not clipped at 255
    assert s.max() > 200

    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :30, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    t = load_image(tmp_path / "t.png")
    assert t[:, 0, 0].tolist() == [255, 0, 0] and t[:, 0, 59].tolist() == [255, 255, 255]

    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    c = load_image(tmp_path / "c.jpg")
    assert c.shape == (3, 40, 60)
    assert (c.float() - torch.from_numpy(rgb()).permute(2, 0, 1).float()).abs().mean() < 40

    Image.fromarray(rgb()).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 40, 60)


def test_exif_rotation_is_applied(tmp_path):
    yy, xx = np.mgrid[:40, :60]
    a = np.stack([xx * 4, yy * 6, np.full_like(xx, 90)], -1).astype(np.uint8)  # smooth, asymmetric
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "r.jpg").permute(1, 2, 0).numpy().astype(int)
    assert img.shape == (60, 40, 3)
    clockwise, anticlockwise = np.rot90(a, k=-1).astype(int), np.rot90(a, k=1).astype(int)
    assert np.abs(img - clockwise).mean() < 3 < np.abs(img - anticlockwise).mean()


@pytest.mark.parametrize("kind", ["text", "truncated", "tiny", "bomb", "missing"])
def test_refusals_are_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.img"
    if kind == "text":
        path.write_text("hello, not an image\n")
    elif kind == "truncated":
        Image.fromarray(rgb(200, 200)).save(tmp_path / "full.jpg", quality=95)
        data = (tmp_path / "full.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "tiny":
        Image.new("RGB", (1, 1)).save(path, format="PNG")
    elif kind == "bomb":
        png_header_only(path, 20000, 20000)
    with pytest.raises(UserInputError) as err:
        load_image(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    if kind == "bomb":
        assert "decompression bomb" in msg


def test_center_crop_resize_takes_the_middle_square():
    img = torch.zeros(3, 40, 60, dtype=torch.uint8)
    img[:, :, 10:50] = 200
    out = center_crop_resize(img, 20)
    assert out.shape == (3, 20, 20) and int(out.min()) == 200
