"""Augmentations for the two audio views a, â of the self-supervised term (docs/method.md §1.3):
random gain on the wave, SpecAugment time/frequency masks on the spectrogram.
All batched with per-sample randomness from one ``torch.Generator`` (same seed, same views)."""

from __future__ import annotations

import math

import torch

from sound2img.errors import UserInputError


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``[n]`` uniforms in [0, 1), drawn on the generator's device (CPU by default) so a
    CPU generator reproduces the same views whatever device the data sits on."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=gen_device, dtype=torch.float64).to(device)


def _randint(high_inclusive: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per element, an integer uniform in ``[0, high_inclusive]`` (a long tensor)."""
    u = _uniform(high_inclusive.numel(), generator, high_inclusive.device).view(high_inclusive.shape)
    return (u * (high_inclusive + 1)).floor().long().minimum(high_inclusive)


def random_gain(
    wav: torch.Tensor, min_db: float, max_db: float, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each clip of ``wav [B,S]`` by a gain uniform in ``[min_db, max_db]`` dB
    (amplitude ``10**(g/20)``). Returns ``(wav [B,S], gain_db [B])``. No clipping: the
    front ends take any float wave."""
    if not (math.isfinite(min_db) and math.isfinite(max_db) and min_db <= max_db):
        raise UserInputError(f"random_gain: need finite min_db <= max_db, got {min_db}, {max_db}")
    gain_db = min_db + (max_db - min_db) * _uniform(wav.shape[0], generator, wav.device)
    scale = torch.pow(10.0, gain_db / 20.0).to(wav.dtype)
    return wav * scale[:, None], gain_db.to(torch.float32)


def spec_augment_masks(
    batch: int,
    n_freq: int,
    n_time: int,
    *,
    num_freq_masks: int,
    max_freq_width: int,
    num_time_masks: int,
    max_time_width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpecAugment masks (Park et al., 2019), independent per sample.

    Each of the ``num_*_masks`` masks has a width uniform in ``[0, max_*_width]`` (clamped to
    the axis) and a start uniform over the positions where it fits; masks may overlap.
    Returns ``(freq_mask [B,n_freq], time_mask [B,n_time])``, True where masked.
    """
    device = torch.device(device)

    def axis_mask(count: int, max_width: int, size: int) -> torch.Tensor:
        if count < 0 or max_width < 0:
            raise UserInputError(f"spec_augment: mask counts and widths must be >= 0, got {count}, {max_width}")
        if count == 0 or max_width == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=device)
        width = _randint(torch.full((batch, count), min(max_width, size), dtype=torch.long, device=device), generator)
        start = _randint(size - width, generator)
        pos = torch.arange(size, device=device)
        return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(dim=1)

    return (axis_mask(num_freq_masks, max_freq_width, n_freq), axis_mask(num_time_masks, max_time_width, n_time))


def spec_augment(
    spec: torch.Tensor,
    *,
    num_freq_masks: int = 2,
    max_freq_width: int = 16,
    num_time_masks: int = 2,
    max_time_width: int = 64,
    mask_value: float | str = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask ``spec [B,1,n_mels,T]`` (a front end's ``spectrogram``, before any resize).

    ``mask_value``: a number (0 is silence for ``soundclip_legacy``), ``"mean"`` or ``"min"``
    (of each clip, e.g. for ``logmel`` whose silence is ``ln(log_offset)``).
    """
    if spec.dim() != 4:
        raise UserInputError(f"spec_augment: expected spec [B,1,n_mels,T], got shape {tuple(spec.shape)}")
    batch, _, n_freq, n_time = spec.shape
    freq_mask, time_mask = spec_augment_masks(
        batch,
        n_freq,
        n_time,
        num_freq_masks=num_freq_masks,
        max_freq_width=max_freq_width,
        num_time_masks=num_time_masks,
        max_time_width=max_time_width,
        generator=generator,
        device=spec.device,
    )
    mask = freq_mask[:, None, :, None] | time_mask[:, None, None, :]
    if mask_value == "mean":
        fill = spec.mean(dim=(1, 2, 3), keepdim=True)
    elif mask_value == "min":
        fill = spec.amin(dim=(1, 2, 3), keepdim=True)
    elif isinstance(mask_value, (int, float)):
        fill = torch.full((), float(mask_value), dtype=spec.dtype, device=spec.device)
    else:
        raise UserInputError(f"spec_augment: mask_value must be a number, 'mean' or 'min', got {mask_value!r}")
    return torch.where(mask, fill, spec)


class AudioAugment:
    """One training view, from plain settings (``configs/augment/*.yaml``): a random gain on
    the wave, SpecAugment on the spectrogram. Crops are the dataset reader's
    job (``crop="random"``), done once for both views."""

    def __init__(
        self,
        *,
        min_gain_db: float = -6.0,
        max_gain_db: float = 6.0,
        num_freq_masks: int = 2,
        max_freq_width: int = 16,
        num_time_masks: int = 2,
        max_time_width: int = 64,
        mask_value: float | str = 0.0,
    ):
        self.min_gain_db, self.max_gain_db = float(min_gain_db), float(max_gain_db)
        self.num_freq_masks, self.max_freq_width = int(num_freq_masks), int(max_freq_width)
        self.num_time_masks, self.max_time_width = int(num_time_masks), int(max_time_width)
        self.mask_value = mask_value
        if self.min_gain_db > self.max_gain_db:
            raise UserInputError(f"augment: min_gain_db {min_gain_db} > max_gain_db {max_gain_db}")

    def spec(self) -> dict:
        return dict(vars(self))

    def wave(self, wav: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``wav [B,S]`` → ``wav [B,S]`` with a random per-clip gain."""
        return random_gain(wav, self.min_gain_db, self.max_gain_db, generator=generator)[0]

    def mel(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``spec [B,1,n_mels,T]`` → the same with SpecAugment masks."""
        return spec_augment(
            spec,
            num_freq_masks=self.num_freq_masks,
            max_freq_width=self.max_freq_width,
            num_time_masks=self.num_time_masks,
            max_time_width=self.max_time_width,
            mask_value=self.mask_value,
            generator=generator,
        )


def build_augment(**settings) -> AudioAugment:
    """``AudioAugment`` from config keys; an unknown key is a one-line error."""
    try:
        return AudioAugment(**settings)
    except TypeError as exc:
        raise UserInputError(f"augment: {exc}") from exc
