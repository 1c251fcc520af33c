"""Front ends of the peer encoders (``wav [B,S]`` → the encoder's input), registered beside
the mel front ends so that ``load_audio_encoder`` returns them with their checkpoints:

* ``audioclip``: 44.1 kHz samples in the int16 range, as AudioCLIP's dataset readers feed
  its model (its demo's [-1, 1] input is 32768 times too small): times 32768 (its ESC-50
  reader) or each clip's min–max mapped onto [-32768, 32767] (``scale="minmax"``, its
  UrbanSound8K reader), as ``[B,C,1,S]``; AudioCLIP's trainable spectrogram lives in the
  encoder, which sums the channels' features.
* ``wav2clip``: 16 kHz, ``|STFT|²`` (512-point periodic Hann, hop 353, centred with reflect
  padding: torchaudio's ``Spectrogram`` defaults), ``ln(· + 1e-7)``, standardised by one
  mean and unbiased std, per clip by default (``normalize="clip"``). Wav2CLIP's own code
  takes the statistics over the whole batch (``normalize="batch"``), so there a clip's
  embedding depends on what it is batched with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sound2img.audio.frontend import Frontend, register_frontend
from sound2img.audio.io import RESAMPLERS
from sound2img.errors import UserInputError


class _WaveFrontend(Frontend):
    """A front end without a mel filter bank: ``spectrogram`` takes equal-length clips only."""

    sample_rate = 0
    wav_dims = (2,)  # wav [B,S]; (2, 3) also takes wav [B,C,S]

    def _check(self, wav: torch.Tensor, lengths) -> torch.Tensor:
        if wav.dim() not in self.wav_dims:
            shapes = " or ".join(("wav [B,S]", "wav [B,C,S]")[: len(self.wav_dims)])
            raise UserInputError(f"front end {self.name!r}: expected {shapes}, got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0:
            raise UserInputError(f"front end {self.name!r}: empty waveform")
        if lengths is not None and bool((torch.as_tensor(lengths) != wav.shape[-1]).any()):
            # a padded batch would change the clip (its frames, its statistics): embed such clips one at a time
            raise UserInputError(f"front end {self.name!r}: clips of different lengths must be embedded one at a time")
        return wav.to(torch.float32)


def _fit_length(wav: torch.Tensor, num_samples: int | None) -> torch.Tensor:
    """Centre crop or centre zero-pad ``wav [...,S]`` to ``num_samples``; ``None`` keeps the
    length. Not AudioCLIP's test-time ``RandomPadding`` + ``RandomCrop(train=False)``: that
    padding repeats the edge values and its crop falls back to the clip's start or end when
    the centre is quiet. The evaluation reads clips to length with AudioCLIP's padding
    (``data.base.fix_length(pad="edge")``) before they reach this front end."""
    if num_samples is None or wav.shape[-1] == num_samples:
        return wav
    if wav.shape[-1] > num_samples:
        start = (wav.shape[-1] - num_samples) // 2
        return wav[..., start : start + num_samples]
    pad = num_samples - wav.shape[-1]
    return F.pad(wav, (pad // 2, pad - pad // 2))


@register_frontend("audioclip")
class AudioClipFrontend(_WaveFrontend):
    """``wav [B,S]`` or ``[B,C,S]`` in [-1, 1] at 44.1 kHz → ``x [B,C,1,S']`` (C = 1 for
    ``[B,S]``) in the int16 range: ``wav · input_scale`` (``scale="fixed"``; 32768, what
    AudioCLIP's ESC-50 reader does) or ``scale="minmax"``, AudioCLIP's UrbanSound8K reader:
    each clip (all its channels) mapped linearly from [min, max] onto [-32768, 32767], in
    float32 and in its order of operations. ``num_samples`` centre-crops or zero-pads;
    ``None`` keeps each clip's length (clips shorter than one 1654-sample frame are
    zero-padded by the encoder, as AudioCLIP does). Files reach it through ``resampler``
    (``kaiser_best``: AudioCLIP's readers resample with librosa < 0.10's default)."""

    wav_dims = (2, 3)

    def __init__(
        self,
        sample_rate: int = 44100,
        input_scale: float = 32768.0,
        num_samples: int | None = None,
        scale: str = "fixed",
        resampler: str = "kaiser_best",
    ):
        super().__init__()
        if sample_rate != 44100:
            raise UserInputError("front end 'audioclip': AudioCLIP was trained at 44100 Hz")
        if num_samples is not None and int(num_samples) < 1:
            raise UserInputError(f"front end 'audioclip': num_samples must be >= 1 or null, got {num_samples!r}")
        if scale not in ("fixed", "minmax") or resampler not in RESAMPLERS:
            raise UserInputError(
                f"front end 'audioclip': scale must be fixed or minmax and resampler one of {', '.join(RESAMPLERS)}, "
                f"got {scale!r} and {resampler!r}"
            )
        self.sample_rate, self.input_scale = int(sample_rate), float(input_scale)
        self.num_samples = None if num_samples is None else int(num_samples)
        self.scale, self.resampler = scale, resampler

    def spectrogram(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        wav = _fit_length(self._check(wav, lengths), self.num_samples)
        wav = wav if wav.dim() == 3 else wav[:, None]  # [B,C,S]
        if self.scale == "fixed":
            return (wav * self.input_scale)[:, :, None, :]
        # AudioCLIP's transforms.scale(wav, wav.min(), wav.max(), -32768.0, 32767.0), per clip
        # (a constant clip, 0/0 there, maps to -32768 here)
        low = wav.amin(dim=(1, 2), keepdim=True)
        span = wav.amax(dim=(1, 2), keepdim=True) - low
        out = ((wav - low) * 65535.0) / span.clamp(min=torch.finfo(wav.dtype).tiny) + (-32768.0)
        return out[:, :, None, :]


@register_frontend("wav2clip")
class Wav2ClipFrontend(_WaveFrontend):
    """``wav [B,S]`` in [-1, 1] at 16 kHz → ``spec [B,1,257,1 + S // 353]``, the standardised
    log power spectrogram Wav2CLIP's ResNet reads (torchaudio's computation, in torch).
    ``normalize="clip"`` (default) standardises each clip alone (= embedding one clip per
    call); ``"batch"`` is Wav2CLIP's ``embed_audio`` on the whole batch."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 353,
        log_offset: float = 1e-7,
        normalize: str = "clip",
    ):
        super().__init__()
        if normalize not in ("clip", "batch"):
            raise UserInputError(f"front end 'wav2clip': normalize must be 'clip' or 'batch', got {normalize!r}")
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.log_offset, self.normalize = float(log_offset), normalize
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def spectrogram(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        wav = self._check(wav, lengths).to(self.window.device)
        if wav.shape[1] <= self.n_fft // 2:
            raise UserInputError(
                f"front end 'wav2clip': clip of {wav.shape[1]} samples is too short; its reflect-padded "
                f"STFT needs more than {self.n_fft // 2} samples at {self.sample_rate} Hz"
            )
        stft = torch.stft(
            wav,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = torch.view_as_real(stft).square().sum(-1)  # [B,F,T]
        x = torch.log(power + self.log_offset)[:, None]
        dims = (1, 2, 3) if self.normalize == "clip" else (0, 1, 2, 3)
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True)  # unbiased, as torch.std
        return (x - mean) / (std + 1e-9)

    def count_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length
