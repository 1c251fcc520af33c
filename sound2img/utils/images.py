"""Images as files: ``img [3,H,W]`` in [-1,1] → uint8 / PNG bytes, side-by-side strips
and grids (tiling is ``torchvision.utils.make_grid``'s job, not ours)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """img [3,H,W] in [-1,1] → uint8 [3,H,W] (values outside [-1,1] clipped)."""
    return ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def png_bytes(img: torch.Tensor) -> bytes:
    """img [3,H,W] in [-1,1] → PNG file contents."""
    from PIL import Image  # Pillow comes with torchvision, whose own PNG encoder is deprecated

    buf = io.BytesIO()
    Image.fromarray(to_uint8(img).permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def tile(imgs: torch.Tensor, columns: int, gap: int = 0, fill: float = 1.0) -> torch.Tensor:
    """``imgs [N,3,H,W]`` → one image [3,H',W'] of ``columns`` per row, ``gap`` pixels of
    ``fill`` (1 = white in [-1,1]) between and around them (``gap=0``: edge to edge)."""
    from torchvision.utils import make_grid

    return make_grid(imgs.detach().float().cpu(), nrow=columns, padding=gap, pad_value=fill)


def make_strip(imgs: Sequence[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Images [3,H,W] side by side with ``gap`` white columns between → [3,H,W'].
    Frames of another size are resized to the first one's height (their widths may then
    differ, which ``make_grid`` does not allow, hence a plain concatenation)."""
    frames = []
    height = imgs[0].shape[-2]
    for img in imgs:
        if img.shape[-2] != height:
            img = F.interpolate(
                img[None].float(), size=(height, round(img.shape[-1] * height / img.shape[-2])), mode="area"
            )[0]
        if frames and gap:
            frames.append(torch.ones(3, height, gap))
        frames.append(img.float().cpu())
    return torch.cat(frames, dim=-1)


def contact_sheet_png(imgs: torch.Tensor, labels: Sequence[str], thumb: int = 256, columns: int | None = None) -> bytes:
    """``imgs [N,3,H,W]`` in [-1,1] as a grid of thumbnails (≤ ``thumb`` px, area
    downscaling) with each label written under its image → PNG bytes."""
    from PIL import Image, ImageDraw

    n, _, h, w = imgs.shape
    scale = min(1.0, thumb / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(imgs.detach().float().cpu(), size=(th, tw), mode="area") if scale < 1 else imgs.float().cpu()
    cols = columns or min(n, 8)
    label_h, gap = 16, 4
    # Each thumbnail gets a white band below it for its label; make_grid then tiles them.
    framed = torch.cat([small, torch.ones(n, 3, label_h, tw)], dim=2)
    sheet = Image.fromarray(to_uint8(tile(framed, cols, gap=gap)).permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x0 = gap + (i % cols) * (tw + gap)
        y0 = gap + (i // cols) * (th + label_h + gap)
        draw.text((x0 + 2, y0 + th + 2), labels[i], fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
