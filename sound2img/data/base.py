"""What every dataset reader shares: the item record, fixed-length cropping, prompts,
skip-and-count of unreadable samples (with a threshold error), images and ``collate``."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sound2img.data.prompts import EDA_OPS, augment_text, make_prompt, training_templates
from sound2img.errors import UserInputError

CROP_MODES = ("random", "center", "start")
# end: zeros after the clip; edge: centred, each side filled with the channel mean of the
# clip's first / last sample (AudioCLIP's test-time RandomPadding; its left share rounds
# half to even, as Python's round does).
PAD_MODES = ("end", "edge")
log = logging.getLogger(__name__)


class DatasetError(UserInputError):
    """A dataset that cannot be used: missing metadata, bad columns, nothing readable,
    or more unreadable samples than ``max_skip_fraction`` allows."""


class SampleReadError(UserInputError):
    """One sample (audio, video or image file) that cannot be read; the dataset skips it."""


# What a broken file raises from soundfile, PyAV, PIL or torchvision: skipped and counted.
# Anything else (TypeError, KeyError, ...) is a bug and propagates.
READ_ERRORS = (UserInputError, OSError, ValueError, RuntimeError, EOFError)


@dataclass(frozen=True)
class Record:
    """One item before decoding. ``text`` set: used verbatim (manifests); otherwise the
    prompt is a template filled with ``prompt_name`` (default ``class_name``)."""

    key: str  # stable id, used by the embedding caches
    audio: str | None  # path of the audio or video file (None: generated)
    label: int
    class_name: str
    text: str | None = None
    prompt_name: str | None = None
    image: str | None = None  # path of an image file, or of the video itself
    image_is_video: bool = False  # take the middle frame of ``image`` (a video)


def clean_class_name(name: str) -> str:
    """Dataset class ids as prompt words: ``car_horn`` → ``car horn``, trimmed spaces."""
    return " ".join(name.replace("_", " ").split())


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one item in one epoch: the same item gets the same crop
    and prompt whichever worker or rank reads it, so runs resume exactly."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint64)[0] >> 1)


def fix_length(
    wav: torch.Tensor,
    num_samples: int,
    crop: str = "center",
    generator: torch.Generator | None = None,
    pad: str = "end",
) -> torch.Tensor:
    """``wav [S]`` or ``[C,S]`` → ``[..., num_samples]``: a random, centre or start crop
    when longer; when shorter, padded as ``pad`` says (``PAD_MODES``)."""
    if crop not in CROP_MODES:
        raise UserInputError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    if pad not in PAD_MODES:
        raise UserInputError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    length = wav.shape[-1]
    if length >= num_samples:
        excess = length - num_samples
        if crop == "random" and excess > 0:
            start = int(torch.randint(0, excess + 1, (1,), generator=generator))
        else:
            start = 0 if crop == "start" else excess // 2
        return wav[..., start : start + num_samples]
    if pad == "end":
        return torch.nn.functional.pad(wav, (0, num_samples - length))
    left = int(round(0.5 * (num_samples - length)))
    first, last = (wav[..., i].reshape(-1).float().mean().to(wav.dtype) for i in (0, length - 1))
    lead = wav.shape[:-1]
    return torch.cat([first.expand(*lead, left), wav, last.expand(*lead, num_samples - length - left)], dim=-1)


# ``eda_chain: true`` (configs written before the chain was a list): the VGGSound reader's.
_DEFAULT_EDA_CHAIN = ("sr", "rs", "ri")


def _eda_chain(value: bool | Sequence[str] | None, name: str) -> tuple[str, ...]:
    """``false``/``null``/``[]`` → no chain; ``true`` → sr, rs, ri; a list → those ops."""
    if value is None or value is False:
        return ()
    if value is True:
        return _DEFAULT_EDA_CHAIN
    if isinstance(value, str) or not all(op in EDA_OPS for op in value):
        raise DatasetError(f"{name}: eda_chain must be true/false or a list of EDA ops from {EDA_OPS}, got {value!r}")
    return tuple(value)


def square_image(img: torch.Tensor, size: int | None) -> torch.Tensor:
    """``img [3,H,W] uint8`` → ``[3,size,size]``: antialiased resize of the shorter side then
    centre crop (what CLIP's own preprocessing does); ``size=None`` keeps it as is."""
    if size is None:
        return img
    h, w = img.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        img = torch.nn.functional.interpolate(
            img[None].float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
        )[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        img = img[:, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8)
    return img


def read_image_file(path: str) -> torch.Tensor:
    """An image file (PNG, JPEG, ...) → ``[3,H,W] uint8`` RGB (PIL; torchvision's decoders
    are deprecated)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


class AudioClipDataset(Dataset):
    """Base reader over a list of ``Record``s.

    Item ``i`` → ``{"wav": [num_samples] float32, "text": str, "label": int, "class_name":
    str, "image": [3,H,W] uint8 | None, "key": str, "index": int}``. An unreadable item is
    skipped: the next readable one (in index order, wrapping) is returned, the failure is
    counted (shared between DataLoader workers) and, once more than ``max_skip_fraction`` of
    all rows (bad manifest rows included) failed, ``DatasetError`` is raised.
    """

    name = "dataset"

    def __init__(
        self,
        records: Sequence[Record],
        class_names: Sequence[str],
        *,
        sample_rate: int,  # Hz, audio is resampled to it
        num_samples: int,  # fixed length of every ``wav``
        resampler: str = "soxr_hq",  # how: the front end's ``resampler`` (audio.io.RESAMPLERS)
        crop: str = "random",  # "random" (training), "center" (evaluation) or "start"
        pad: str = "end",  # how clips shorter than num_samples are padded (PAD_MODES)
        channels: int = 1,  # 1: mixed to mono, wav [S]; 2: two channels (mono files doubled), wav [2,S]
        templates: Sequence[str] | None = None,  # prompt templates, "{}" = class name
        text_augment: bool = False,  # EDA on the prompt (prompts.augment_text)
        eda_chain: bool | Sequence[str] = False,  # EDA ops applied in turn, not one drawn op (see make_text)
        seed: int = 0,  # base of the per-item crop/prompt seeds
        max_skip_fraction: float = 0.05,
        load_images: bool = True,  # False: "image" is None (embeddings cached)
        image_size: int | None = 224,  # square side of returned images; None = as read
        bad_rows: Sequence[str] = (),
    ):  # manifest rows already rejected, with reasons
        if crop not in CROP_MODES:
            raise DatasetError(f"{self.name}: crop must be one of {CROP_MODES}, got {crop!r}")
        if pad not in PAD_MODES or channels not in (1, 2):
            raise DatasetError(
                f"{self.name}: pad must be one of {PAD_MODES} and channels 1 or 2, got {pad!r} and {channels!r}"
            )
        if int(sample_rate) <= 0 or int(num_samples) <= 0:
            raise DatasetError(
                f"{self.name}: sample_rate and num_samples must be positive, got {sample_rate} and {num_samples}"
            )
        if not 0.0 <= float(max_skip_fraction) <= 1.0:
            raise DatasetError(f"{self.name}: max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        self.records = list(records)
        self.class_names = list(class_names)
        self.sample_rate = int(sample_rate)
        self.num_samples = int(num_samples)
        self.resampler = str(resampler)
        self.crop, self.pad, self.channels = crop, pad, int(channels)
        self.templates = tuple(templates) if templates else training_templates()
        for t in self.templates:
            if "{}" not in t:
                raise DatasetError(f"{self.name}: prompt template {t!r} has no '{{}}' for the class name")
        self.text_augment = bool(text_augment)
        self.eda_chain = _eda_chain(eda_chain, self.name)
        self.seed = int(seed)
        self.epoch = 0
        self.max_skip_fraction = float(max_skip_fraction)
        self.load_images = bool(load_images)
        self.image_size = image_size
        self.bad_rows = list(bad_rows)
        # One byte per record in shared memory: workers forked or spawned by a DataLoader see
        # each other's failures, so the count is global and a bad file is decoded once.
        self._failed = torch.zeros(len(self.records), dtype=torch.uint8).share_memory_()
        # Set (shared) once the skip limit is crossed: every worker then stops reading and
        # logging, so the one error line stays the last line (see data.loading).
        self._stopped = torch.zeros(1, dtype=torch.uint8).share_memory_()
        self._reasons: list[str] = list(self.bad_rows[:5])
        if not self.records:
            detail = f"; first problems: {'; '.join(self.bad_rows[:3])}" if self.bad_rows else ""
            raise DatasetError(f"{self.name}: no usable samples{detail}")
        if self.bad_rows:
            log.warning(
                "%s: %d bad metadata row(s) skipped; first: %s",
                self.name,
                len(self.bad_rows),
                "; ".join(self.bad_rows[:3]),
            )
        self._check_skips()

    # ---- counting -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_skipped(self) -> int:
        """Rows rejected when reading the manifest plus samples found unreadable so far."""
        return len(self.bad_rows) + int(self._failed.sum())

    @property
    def num_total(self) -> int:
        return len(self.bad_rows) + len(self.records)

    def skipped_fraction(self) -> float:
        """``num_skipped / num_total`` (0 when nothing failed)."""
        return self.num_skipped / max(1, self.num_total)

    @property
    def skip_reasons(self) -> list[str]:
        """The first few failures seen by this process (row numbers or paths, and why)."""
        return list(self._reasons)

    def _check_skips(self) -> None:
        if self.skipped_fraction() > self.max_skip_fraction:
            if hasattr(self, "_stopped"):
                self._stopped[0] = 1
            raise DatasetError(
                f"{self.name}: {self.num_skipped} of {self.num_total} samples unreadable "
                f"({self.skipped_fraction():.1%} > max_skip_fraction {self.max_skip_fraction:.1%}); "
                f"first: {'; '.join(self._reasons[:3])}"
            )

    def _mark_failed(self, index: int, exc: BaseException) -> None:
        self._failed[index] = 1
        rec = self.records[index]
        reason = f"{rec.audio or rec.key}: {type(exc).__name__}: {exc}".splitlines()[0]
        if len(self._reasons) < 5:
            self._reasons.append(reason)
        if self._stopped[0]:  # another worker already stopped the run: stay silent
            self._check_skips()
            return
        log.warning(
            "%s: skipped an unreadable sample (%d of %d skipped so far): %s",
            self.name,
            self.num_skipped,
            self.num_total,
            reason,
        )
        self._check_skips()

    # ---- reading --------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """New random crops and prompts each epoch (same role as DistributedSampler's)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        index %= n
        if self._stopped[0]:
            self._check_skips()  # the limit was crossed in another worker: stop, silently
        for step in range(n):
            j = (index + step) % n
            if self._failed[j]:
                continue
            try:
                return self._read_item(j)
            except READ_ERRORS as exc:
                self._mark_failed(j, exc)
        raise DatasetError(f"{self.name}: no readable sample left; first: {'; '.join(self._reasons[:3])}")

    def _read_item(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        seed = item_seed(self.seed, self.epoch, index)
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        wav = fix_length(self.read_wav(index, gen).to(torch.float32), self.num_samples, self.crop, gen, self.pad)
        image = None
        if self.load_images and rec.image is not None:
            image = square_image(self.read_image(index), self.image_size)
        return {
            "wav": wav,
            "text": self.make_text(rec, rng),
            "label": rec.label,
            "class_name": rec.class_name,
            "image": image,
            "key": rec.key,
            "index": index,
        }

    def make_text(self, rec: Record, rng: random.Random) -> str:
        """The record's prompt: its own text, or a template filled with its class name;
        EDA-augmented when ``text_augment``: one drawn operation, or with ``eda_chain`` its
        operations in turn (the authors' readers: synonym replacement, random swap and
        random insertion for VGGSound; the first two for AudioSet)."""
        text = rec.text if rec.text is not None else make_prompt(rec.prompt_name or rec.class_name, rng, self.templates)
        if not self.text_augment:
            return text
        if self.eda_chain:
            for op in self.eda_chain:
                text = augment_text(text, rng, ops=(op,))
            return text
        return augment_text(text, rng)

    def read_wav(self, index: int, generator: torch.Generator) -> torch.Tensor:
        """``wav [S]`` mono (``[2,S]`` with ``channels=2``) at ``self.sample_rate`` (about
        ``num_samples`` or any length; ``fix_length`` finishes the crop). Files much longer
        than the crop (wav/flac/ogg) are cropped before decoding, so long recordings cost
        only what is kept."""
        from sound2img.audio.io import SOUNDFILE_SUFFIXES, audio_info, load_audio

        path = self.records[index].audio
        if path is None:
            raise SampleReadError(f"{self.name}: record {self.records[index].key} has no audio file")
        mono = self.channels == 1
        if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES:
            info = audio_info(path)
            need = self.num_samples / self.sample_rate
            # (a start crop decodes the whole file: it is the reader of short clips whose
            # resampled start must equal the whole file's, AudioCLIP's UrbanSound8K one)
            if info.duration > 2 * need and self.crop != "start":
                frames = int(np.ceil(need * info.sample_rate)) + 1  # one spare: rounding never leaves a gap
                start = (
                    int(torch.randint(0, info.num_frames - frames + 1, (1,), generator=generator))
                    if self.crop == "random"
                    else (info.num_frames - frames + 1) // 2
                )  # = fix_length's centre
                # +0.5 frame: load_audio truncates offset·sr and duration·sr to whole frames.
                wav = load_audio(
                    path,
                    self.sample_rate,
                    offset=(start + 0.5) / info.sample_rate,
                    duration=(frames + 0.5) / info.sample_rate,
                    resampler=self.resampler,
                    mono=mono,
                )
                return self._two_channels(wav[..., : self.num_samples], path)
        return self._two_channels(load_audio(path, self.sample_rate, resampler=self.resampler, mono=mono), path)

    def _two_channels(self, wav: torch.Tensor, path: str) -> torch.Tensor:
        """With ``channels=2``: ``[C,S]`` → ``[2,S]``, a mono file's channel doubled (as
        AudioCLIP's UrbanSound8K reader does); other channel counts are refused."""
        if self.channels == 1:
            return wav
        if wav.shape[0] not in (1, 2):
            raise SampleReadError(f"{path}: {wav.shape[0]} channels; channels=2 reads mono or stereo files")
        return wav.expand(2, -1) if wav.shape[0] == 1 else wav

    def read_image(self, index: int) -> torch.Tensor:
        """``img [3,H,W] uint8`` of record ``index`` as stored (no resize)."""
        rec = self.records[index]
        if rec.image_is_video:
            from sound2img.data.video import read_middle_frame

            return read_middle_frame(rec.image)
        return read_image_file(rec.image)


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dict items → batch: ``wav [B,S]``, ``label [B]``, ``index [B]``, lists of ``text``,
    ``class_name``, ``key``; ``image [B,3,H,W] uint8`` or None when no item has one (items
    without one get zeros, and ``has_image [B]`` says which are real)."""
    if not batch:
        raise ValueError("collate: empty batch")
    out: dict[str, Any] = {
        "wav": torch.stack([b["wav"] for b in batch]),
        "label": torch.tensor([int(b["label"]) for b in batch], dtype=torch.long),
        "index": torch.tensor([int(b.get("index", -1)) for b in batch], dtype=torch.long),
        "text": [b["text"] for b in batch],
        "class_name": [b["class_name"] for b in batch],
        "key": [b["key"] for b in batch],
    }
    images = [b.get("image") for b in batch]
    present = [im is not None for im in images]
    if not any(present):
        out["image"] = None
        out["has_image"] = torch.zeros(len(batch), dtype=torch.bool)
        return out
    ref = next(im for im in images if im is not None)
    out["image"] = torch.stack([im if im is not None else torch.zeros_like(ref) for im in images])
    out["has_image"] = torch.tensor(present, dtype=torch.bool)
    return out


def read_csv_table(path: str | Path, required: Sequence[str], name: str) -> list[tuple[int, dict[str, str]]]:
    """A headed CSV → ``[(line_number, row)]``; a missing file or missing columns raise
    ``DatasetError`` naming the file; blank lines are dropped."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{name}: metadata file {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(f"{name}: {path} lacks column(s) {missing} (has {header})")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            rows.append((reader.line_num, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
    return rows


def check_missing_clips(
    name: str, missing: Sequence[str], num_found: int, max_missing_fraction: float, where: str | Path, example: str
) -> None:
    """Clips listed in the CSV but never downloaded (VGGSound, AudioSet): warn, and refuse
    when none was found or more than ``max_missing_fraction`` are missing."""
    if not missing:
        return
    total = num_found + len(missing)
    log.warning("%s: %d of %d clips not downloaded (no file)", name, len(missing), total)
    if not num_found or len(missing) / total > max_missing_fraction:
        raise DatasetError(
            f"{name}: {len(missing)} of {total} clips have no file in {where} "
            f"(> max_missing_fraction {max_missing_fraction:.0%}); tried names like {example}"
        )


def parse_folds(folds: Sequence[int] | int | None, valid: range, name: str) -> set[int]:
    """User fold selection → a set (None = all); out-of-range folds raise ``DatasetError``."""
    if folds is None:
        return set(valid)
    folds = [folds] if isinstance(folds, int) else list(folds)
    bad = [f for f in folds if int(f) not in valid]
    if bad or not folds:
        raise DatasetError(f"{name}: folds must be a non-empty subset of {valid.start}..{valid.stop - 1}, got {folds}")
    return {int(f) for f in folds}
