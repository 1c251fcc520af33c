"""Front ends of the peer encoders (``wav [B,S]`` → the encoder's input), registered beside
the mel front ends so that ``load_audio_encoder`` returns them with their checkpoints:

* ``audioclip``: 44.1 kHz samples times 32768 (AudioCLIP's model expects int16-range
  values, as its datasets feed; its demo's [-1, 1] input is 32768 times too small), as
  ``[B,1,1,S]``; AudioCLIP's trainable spectrogram lives in the encoder.
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
from sound2img.errors import UserInputError


class _WaveFrontend(Frontend):
    """A front end without a mel filter bank: ``spectrogram`` takes equal-length clips only."""

    sample_rate = 0

    def _check(self, wav: torch.Tensor, lengths) -> torch.Tensor:
        if wav.dim() != 2:
            raise UserInputError(f"front end {self.name!r}: expected wav [B,S], got shape {tuple(wav.shape)}")
        if wav.shape[1] == 0:
            raise UserInputError(f"front end {self.name!r}: empty waveform")
        if lengths is not None and bool((torch.as_tensor(lengths) != wav.shape[1]).any()):
            # a padded batch would change the clip (its frames, its statistics): embed such clips one at a time
            raise UserInputError(f"front end {self.name!r}: clips of different lengths must be embedded one at a time")
        return wav.to(torch.float32)


def _fit_length(wav: torch.Tensor, num_samples: int | None) -> torch.Tensor:
    """Centre crop or centre zero-pad ``wav [B,S]`` to ``num_samples`` (AudioCLIP's test-time
    ``RandomPadding`` + ``RandomCrop(train=False)``); ``None`` keeps the length."""
    if num_samples is None or wav.shape[1] == num_samples:
        return wav
    if wav.shape[1] > num_samples:
        start = (wav.shape[1] - num_samples) // 2
        return wav[:, start : start + num_samples]
    pad = num_samples - wav.shape[1]
    return F.pad(wav, (pad // 2, pad - pad // 2))


@register_frontend("audioclip")
class AudioClipFrontend(_WaveFrontend):
    """``wav [B,S]`` in [-1, 1] at 44.1 kHz → ``x [B,1,1,S']`` = ``wav · input_scale``
    (32768: int16 range). ``num_samples`` (e.g. 220500, ESC-50's 5 s) centre-crops or pads;
    ``None`` keeps each clip's length (clips shorter than one 1654-sample frame are
    zero-padded by the encoder, as AudioCLIP does)."""

    def __init__(self, sample_rate: int = 44100, input_scale: float = 32768.0, num_samples: int | None = None):
        super().__init__()
        if sample_rate != 44100:
            raise UserInputError("front end 'audioclip': AudioCLIP was trained at 44100 Hz")
        if num_samples is not None and int(num_samples) < 1:
            raise UserInputError(f"front end 'audioclip': num_samples must be >= 1 or null, got {num_samples!r}")
        self.sample_rate, self.input_scale = int(sample_rate), float(input_scale)
        self.num_samples = None if num_samples is None else int(num_samples)

    def spectrogram(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        wav = _fit_length(self._check(wav, lengths), self.num_samples)
        return (wav * self.input_scale)[:, None, None, :]


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
