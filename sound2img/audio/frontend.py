"""Mel front ends (``wav [B,S]`` → ``mel [B,1,n_mels,T]``), batched torch on any device,
numerically librosa's: ``logmel`` for new encoders and ``soundclip_legacy``, the exact
input of the authors' released encoder (docs/method.md §5). One STFT/mel code path serves both."""

from __future__ import annotations

import math
from collections.abc import Callable

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sound2img.audio.io import RESAMPLERS
from sound2img.errors import UserInputError
from sound2img.registry import Registry

FRONTENDS: Registry[type[Frontend]] = Registry("audio front end")
# Samples (frames x n_fft) per STFT chunk: on CPU a chunk's windowed frames, spectrum and
# power stay in cache (the speed over one big torch.stft), yet chunks are few enough that
# per-op overhead and thread hand-offs stay small; on GPU, a bound on temporary memory.
_CHUNK_SAMPLES = {"cpu": 1 << 22, "other": 1 << 28}


def register_frontend(name: str) -> Callable[[type[Frontend]], type[Frontend]]:
    def add(cls: type[Frontend]) -> type[Frontend]:
        cls.name = name
        return FRONTENDS.register(name, cls)

    return add


def list_frontends() -> list[str]:
    """Names accepted by ``build_frontend``."""
    return FRONTENDS.names()


def build_frontend(name: str = "logmel", **settings) -> Frontend:
    """Build a front end by name; ``settings`` override its defaults. ``build_frontend(
    **fe.spec())`` rebuilds an identical one (encoder checkpoints store ``spec()``)."""
    cls = FRONTENDS.get(name)
    try:
        return cls(**settings)
    except TypeError as exc:  # an unknown keyword: name it, with the valid ones
        raise UserInputError(f"front end {name!r}: {exc} (settings: {', '.join(cls.setting_names())})") from exc


class Frontend(nn.Module):
    """The front-end contract every registered front end keeps: its settings are its
    constructor's arguments (``spec()`` rebuilds it), and ``forward(wav [B,S], lengths=None)
    == to_encoder_input(spectrogram(wav))``. ``resampler`` names how files are brought to
    ``sample_rate`` for it (``audio.io.load_audio``'s argument): part of the input its
    encoder was trained on, so readers take it from here."""

    name = ""
    resampler = "soxr_hq"

    # --- settings ------------------------------------------------------------------------
    @classmethod
    def setting_names(cls) -> list[str]:
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def spec(self) -> dict:
        """Plain JSON-able settings: ``{"name": ..., every setting}``."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.setting_names()}}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.spec().items())

    # --- the module's contract -------------------------------------------------------------
    def forward(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        frame_offsets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``wav [B,S]`` at ``self.sample_rate`` (``lengths [B]`` samples, optional) → the
        encoder's input ``mel [B,1,n_mels,T]``. Equal to ``to_encoder_input(spectrogram(...))``;
        training calls the two halves to put SpecAugment in between."""
        return self.to_encoder_input(self.spectrogram(wav, lengths, generator=generator, frame_offsets=frame_offsets))

    def spectrogram(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        frame_offsets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``wav [B,S]`` → ``spec [B,1,n_mels,T]``: the time–frequency image (mel on rows,
        frames on columns) where SpecAugment masks belong."""
        raise NotImplementedError

    def to_encoder_input(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec [B,1,n_mels,T]`` → ``mel [B,1,n_mels,T']`` as the encoder takes it."""
        return spec


class MelFrontend(Frontend):
    """Shared STFT + mel filter bank (librosa ``melspectrogram`` semantics: periodic Hann
    window centred in ``n_fft``, ``center=True`` padded by ``pad_mode``: zeros as librosa
    ≥ 0.10, or reflection as librosa < 0.10; power 2).

    Subclasses turn the mel power ``[B,n_mels,T]`` into their output. Buffers are not
    persistent: they are derived from the settings, which ``spec()`` returns.
    """

    name = ""
    pad_mode = "constant"  # or "reflect" (numpy's: the edge sample is not repeated)

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        win_length: int | None,
        n_mels: int,
        f_min: float,
        f_max: float | None,
        mel_scale: str,
        mel_norm: str | None,
    ):
        super().__init__()
        win_length = n_fft if win_length is None else int(win_length)
        f_max = sample_rate / 2 if f_max is None else float(f_max)
        checks = [
            (sample_rate > 0, "sample_rate must be > 0"),
            (n_fft > 0, "n_fft must be > 0"),
            (hop_length > 0, "hop_length must be > 0"),
            (0 < win_length <= n_fft, "need 0 < win_length <= n_fft"),
            (n_mels > 0, "n_mels must be > 0"),
            (0 <= f_min < f_max <= sample_rate / 2, "need 0 <= f_min < f_max <= sample_rate / 2"),
            (mel_scale in ("slaney", "htk"), "mel_scale must be 'slaney' or 'htk'"),
            (mel_norm in ("slaney", None), "mel_norm must be 'slaney' or null"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserInputError(f"front end {self.name!r}: {message}")
        self.sample_rate, self.n_fft, self.hop_length, self.win_length = (
            int(sample_rate),
            int(n_fft),
            int(hop_length),
            win_length,
        )
        self.n_mels, self.f_min, self.f_max, self.mel_scale, self.mel_norm = (
            int(n_mels),
            float(f_min),
            f_max,
            mel_scale,
            mel_norm,
        )

        window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        left = (n_fft - win_length) // 2  # librosa.util.pad_center
        window = F.pad(window, (left, n_fft - win_length - left))
        fb = librosa.filters.mel(
            sr=sample_rate,
            n_fft=n_fft,
            n_mels=n_mels,
            fmin=f_min,
            fmax=f_max,
            htk=mel_scale == "htk",
            norm=mel_norm,
            dtype=np.float32,
        )
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)  # [n_mels, n_fft//2+1]

    def spectrogram(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        frame_offsets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``wav [B,S]`` → ``spec [B,1,n_mels,T]``: the mel power (``mel_power``) turned into
        the subclass's image by ``from_power``."""
        power, valid = self.mel_power(wav, lengths)
        return self.from_power(power, valid, lengths, generator=generator, frame_offsets=frame_offsets)

    def from_power(
        self,
        power: torch.Tensor,
        valid: torch.Tensor,
        lengths: torch.Tensor | None,
        *,
        generator: torch.Generator | None,
        frame_offsets: torch.Tensor | None,
    ) -> torch.Tensor:
        """``mel power [B,n_mels,T]`` with ``valid [B]`` frames per clip (``lengths`` as given
        to ``spectrogram``) → ``spec [B,1,n_mels,T']``."""
        raise NotImplementedError

    # --- shared computation --------------------------------------------------------------
    def count_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """STFT frames of a clip of ``num_samples`` (``center=True``)."""
        return 1 + num_samples // self.hop_length

    def mel_power(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B,S]`` → (``mel power [B,n_mels,T]`` float32, ``frames [B]`` valid per clip).

        With ``lengths [B]`` (samples), entry ``i`` uses ``wav[i, :lengths[i]]`` only and its
        first ``frames[i]`` frames equal what that clip alone gives; later frames are junk
        that subclasses mask.
        """
        if wav.dim() != 2:
            raise UserInputError(f"front end {self.name!r}: expected wav [B,S], got shape {tuple(wav.shape)}")
        wav = wav.to(device=self.window.device, dtype=torch.float32)
        batch, samples = wav.shape
        if samples == 0:
            raise UserInputError(f"front end {self.name!r}: empty waveform")
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=wav.device)
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=wav.device)
            if lengths.shape != (batch,) or bool((lengths < 1).any()) or bool((lengths > samples).any()):
                raise UserInputError(f"front end {self.name!r}: lengths must be [B] with 1 <= length <= {samples}")
            # A clip alone is zero-padded by the STFT: make the batch padding zeros too.
            wav = wav * (torch.arange(samples, device=wav.device) < lengths[:, None])
        half = self.n_fft // 2
        if self.pad_mode == "reflect":
            padded = _reflect_pad(wav, lengths, half)
        else:
            padded = F.pad(wav, (half, half))
        frames = padded.unfold(-1, self.n_fft, self.hop_length)  # view [B,T,n_fft]
        total = frames.shape[1]
        out = wav.new_empty(batch, self.n_mels, total)
        budget = _CHUNK_SAMPLES["cpu" if wav.device.type == "cpu" else "other"]
        step = max(1, budget // (batch * self.n_fft))
        in_place = not (torch.is_grad_enabled() and wav.requires_grad)
        for t0 in range(0, total, step):
            spec = torch.view_as_real(torch.fft.rfft(frames[:, t0 : t0 + step] * self.window))  # [B,t,F,2]
            spec = spec.square_() if in_place else spec.square()
            power = spec[..., 0] + spec[..., 1]  # |X|², no sqrt-then-square of a complex abs
            out[:, :, t0 : t0 + step] = torch.matmul(self.mel_fb, power.transpose(1, 2))
        return out, self.count_frames(lengths)

    def _crop(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        num_frames: int,
        pad_value: float,
        generator: torch.Generator | None,
        frame_offsets: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x [B,C,T]`` → ``[B,C,num_frames]``: frames ``[o_i, o_i + num_frames)`` of each clip,
        positions past its ``valid[i]`` frames filled with ``pad_value`` (padding at the end).
        ``o_i`` is ``frame_offsets[i]``, else uniform over ``[0, valid_i - num_frames]`` when a
        ``generator`` is given (training), else the centre ``(valid_i - num_frames) // 2``."""
        batch, channels, _ = x.shape
        slack = (valid - num_frames).clamp(min=0)
        if frame_offsets is not None:
            start = torch.as_tensor(frame_offsets, dtype=torch.long, device=x.device)
            if start.shape != (batch,) or bool((start < 0).any()) or bool((start > slack).any()):
                raise UserInputError(
                    f"front end {self.name!r}: frame_offsets must be [B] within [0, frames - {num_frames}] per clip"
                )
        elif generator is not None:
            u = torch.rand(batch, generator=generator, device=generator.device).to(x.device)
            start = (u * (slack + 1).to(u.dtype)).floor().long().minimum(slack)
        else:
            start = slack // 2
        idx = start[:, None] + torch.arange(num_frames, device=x.device)  # [B,N]
        inside = idx < valid[:, None]
        gathered = x.gather(2, idx.clamp(max=x.shape[2] - 1)[:, None, :].expand(batch, channels, num_frames))
        return torch.where(inside[:, None, :], gathered, torch.full_like(gathered, pad_value))


def _reflect_pad(wav: torch.Tensor, lengths: torch.Tensor, half: int) -> torch.Tensor:
    """``wav [B,S]`` → ``[B,S+2·half]``: clip ``i`` (its first ``lengths[i]`` samples)
    extended by ``half`` samples each side as ``np.pad(mode="reflect")`` does, reflecting
    again where ``half`` exceeds the clip (librosa 0.8.1 pads this way); samples past the
    clip's own padded end are junk that callers mask."""
    q = torch.arange(-half, wav.shape[1] + half, device=wav.device)  # sample positions
    period = (2 * (lengths - 1)).clamp(min=1)[:, None]  # reflection repeats every 2(L-1)
    m = torch.remainder(q[None, :], period)
    idx = torch.where(m < lengths[:, None], m, period - m)
    idx = torch.where(lengths[:, None] > 1, idx, 0)  # one sample: numpy repeats it
    return wav.gather(1, idx)


@register_frontend("logmel")
class LogMel(MelFrontend):
    """128-bin log-mel at 16 kHz, 64 ms Hann window, 10 ms hop (100 frames/s).

    16 kHz is the rate of the AudioSet/VGGSound encoders of record (AST, BEATs, and
    ImageBind, the other CLIP-space audio tower) and halves decoding, resampling and STFT
    cost against 32 kHz for little loss above 8 kHz; 1024-point frames give 15.6 Hz bins,
    finer than the lowest 128-band Slaney mel spacing (~24 Hz), so no band is empty.

    ``log="ln"``: ``ln(mel + log_offset)``; ``log="db"``: ``10·log10(max(mel, log_offset))``
    (``librosa.power_to_db(mel, ref=1.0, amin=log_offset, top_db=None)``). No per-clip
    normalisation, so loudness survives. The 1e-4 floor sits ~54 dB below a full-scale
    white-noise band, and keeps float32 STFT round-off (about -130 dB re a frame's peak)
    under 1e-4 in the log even for full-scale pure tones; 1e-6 would let it reach ~1e-3.
    ``num_frames`` fixes T (centre crop, random with a generator; clips that end early are
    padded with the log of silence).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 160,
        win_length: int | None = None,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        log: str = "ln",
        log_offset: float = 1e-4,
        num_frames: int | None = None,
    ):
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            mel_scale=mel_scale,
            mel_norm=mel_norm,
        )
        if log not in ("ln", "db"):
            raise UserInputError(f"front end 'logmel': log must be 'ln' or 'db', got {log!r}")
        if not (log_offset > 0 and math.isfinite(log_offset)):
            raise UserInputError(f"front end 'logmel': log_offset must be > 0, got {log_offset!r}")
        if num_frames is not None and num_frames < 1:
            raise UserInputError(f"front end 'logmel': num_frames must be >= 1 or null, got {num_frames!r}")
        self.log, self.log_offset = log, float(log_offset)
        self.num_frames = None if num_frames is None else int(num_frames)

    def _log(self, power: torch.Tensor) -> torch.Tensor:
        if self.log == "ln":
            return torch.log(power + self.log_offset)
        return 10.0 * torch.log10(power.clamp(min=self.log_offset))

    def from_power(self, power, valid, lengths, *, generator, frame_offsets) -> torch.Tensor:
        """→ ``mel [B,1,n_mels,T]`` (T = ``num_frames`` when set, else the longest clip's
        frames)."""
        silence = float(self._log(torch.zeros(())))
        mel = self._log(power)
        if self.num_frames is None:
            if lengths is not None:  # frames past a clip's end read as silence
                inside = torch.arange(mel.shape[2], device=mel.device) < valid[:, None]
                mel = torch.where(inside[:, None, :], mel, torch.full_like(mel, silence))
        else:
            mel = self._crop(mel, valid, self.num_frames, silence, generator, frame_offsets)
        return mel[:, None]


@register_frontend("soundclip_legacy")
class SoundClipLegacy(MelFrontend):
    """The released encoder's input (docs/method.md §5.2) as librosa 0.8.1 made it: 44.1 kHz
    mel (2048/512, Slaney, STFT padded by reflection), ``power_to_db(ref=max, amin=1e-10,
    top_db=80) / 80 + 1`` per clip, crop/zero-pad to 864 frames, ``cv2.resize(spec, (128,
    512))`` (bilinear, half-pixel centres, no antialias) and a row-major reshape (not a
    transpose) of the 512×128 image to 1×128×512. Files reach it through ``resampler``
    (default ``kaiser_best``: librosa 0.8.1's ``load``, resampy 0.2.2's filter)."""

    pad_mode = "reflect"

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2048,
        hop_length: int = 512,
        win_length: int | None = None,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        amin: float = 1e-10,
        top_db: float = 80.0,
        num_frames: int = 864,
        resize_height: int = 512,
        resize_width: int = 128,
        resampler: str = "kaiser_best",
    ):
        super().__init__(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            win_length=win_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            mel_scale=mel_scale,
            mel_norm=mel_norm,
        )
        if resize_height * resize_width % n_mels:
            raise UserInputError("front end 'soundclip_legacy': resize_height*resize_width must divide by n_mels")
        if resampler not in RESAMPLERS:
            raise UserInputError(
                f"front end 'soundclip_legacy': resampler must be one of {', '.join(RESAMPLERS)}, got {resampler!r}"
            )
        self.resampler = resampler
        self.amin, self.top_db, self.num_frames = float(amin), float(top_db), int(num_frames)
        self.resize_height, self.resize_width = int(resize_height), int(resize_width)

    def from_power(self, power, valid, lengths, *, generator, frame_offsets) -> torch.Tensor:
        """→ ``spec [B,1,128,864]`` in [0, 1] (0 = 80 dB below the clip's peak, also the
        padding). Centre crop by default; a ``generator`` gives the training random crop,
        ``frame_offsets [B]`` explicit ones."""
        inside = (torch.arange(power.shape[2], device=power.device) < valid[:, None])[:, None, :]
        db = 10.0 * torch.log10(power.clamp(min=self.amin))
        ref = power.masked_fill(~inside, 0).amax(dim=(1, 2), keepdim=True)  # ref=np.max, per clip
        db = db - 10.0 * torch.log10(ref.clamp(min=self.amin))
        peak = db.masked_fill(~inside, -math.inf).amax(dim=(1, 2), keepdim=True)
        spec = torch.maximum(db, peak - self.top_db) / self.top_db + 1.0
        return self._crop(spec, valid, self.num_frames, 0.0, generator, frame_offsets)[:, None]

    def to_encoder_input(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec [B,1,128,864]`` → ``mel [B,1,128,512]``: resize to 512×128, then reshape."""
        # cv2.resize's INTER_LINEAR on float images is this exact map (no antialias on shrink).
        img = F.interpolate(
            spec, size=(self.resize_height, self.resize_width), mode="bilinear", align_corners=False, antialias=False
        )
        return img.reshape(img.shape[0], 1, self.n_mels, -1)


# The peer encoders' front ends (AudioCLIP, Wav2CLIP) register themselves on import.
from sound2img.audio import peer_frontends  # noqa: E402,F401
