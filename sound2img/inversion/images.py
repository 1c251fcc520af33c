"""Reading a user's photo safely: any format Pillow decodes, EXIF orientation applied,
greyscale / palette / CMYK / alpha / 16-bit converted to 8-bit RGB, and decompression
bombs, truncated files, non-images and tiny images refused with one line before their
pixels are decoded."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from sound2img.errors import UserInputError

MIN_SIDE = 16  # below this there is nothing to invert


def max_pixels() -> int:
    """Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, 89.5 MP by default)."""
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def _to_rgb(img) -> np.ndarray:
    """A decoded PIL image of any mode → ``uint8 [H,W,3]``."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit greyscale: scale, do not clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.rint(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent parts become white
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """``path`` → ``img uint8 [3,H,W]`` RGB, upright (EXIF orientation applied).

    ``UserInputError`` (one line) for a missing file, a non-image, a truncated or
    corrupt file, an image with a side under 16 px, or one above Pillow's pixel limit
    (checked from the header, before any pixel is decoded, so memory stays bounded)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels():
                    raise UserInputError(
                        f"{path}: {w}x{h} image has more than {max_pixels()} pixels "
                        "(refused as a possible decompression bomb; resize it first)"
                    )
                if min(w, h) < MIN_SIDE:
                    raise UserInputError(f"{path}: {w}x{h} image is too small (need at least {MIN_SIDE} px a side)")
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = _to_rgb(img)
    except UserInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserInputError(f"{path}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise UserInputError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"{path}: unreadable image ({first})") from None
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """``uint8 [3,H,W]`` → float ``[1,3,H,W]`` in [-1,1]."""
    return img.float()[None] / 127.5 - 1.0


def center_crop_resize(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``uint8 [3,H,W]`` → the largest centred box of ``size``'s aspect ratio (``size``:
    a side, or ``(height, width)``), resized to ``size`` with Pillow's Lanczos filter, as
    NVlabs' projector.py prepares its target → ``uint8 [3,h,w]``."""
    h_out, w_out = (size, size) if isinstance(size, int) else size
    top, left, h, w = center_box(img.shape[1], img.shape[2], h_out / w_out)
    return pil_resize(img[:, top : top + h, left : left + w], (h_out, w_out))


def pil_resize(img: torch.Tensor, size: tuple[int, int], resample: str = "LANCZOS") -> torch.Tensor:
    """``uint8 [3,H,W]`` → Pillow's resize to ``size = (height, width)`` → ``uint8 [3,h,w]``."""
    from PIL import Image

    if tuple(img.shape[1:]) == tuple(size):
        return img
    pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
    out = pil.resize((size[1], size[0]), getattr(Image.Resampling, resample))
    return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def center_box(height: int, width: int, aspect: float = 1.0) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the largest centred box with ``h / w = aspect`` in a
    ``height × width`` picture."""
    if height / width >= aspect:
        w, h = width, min(height, round(width * aspect))
    else:
        h, w = height, min(width, round(height / aspect))
    return (height - h) // 2, (width - w) // 2, h, w


def pil_resize_unit(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """e4e's inference transform: ``uint8 [3,H,W]`` → Pillow's bilinear resize to
    ``size = (height, width)`` on the 8-bit picture (torchvision's ``Resize(size)`` on a
    PIL image), ``ToTensor`` (÷255) and ``Normalize(0.5, 0.5)`` → ``[1,3,h,w]`` in [-1,1],
    with torchvision's order of float32 operations."""
    x = pil_resize(img, size, "BILINEAR").float().div(255)
    return x.sub_(0.5).div_(0.5)[None]
