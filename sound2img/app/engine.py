"""What the web app does, without the page: compose the ``demo`` config once, turn a
request from the page into the ``manipulate`` config ``scripts/manipulate.py`` would have
composed (the schema's dataclasses, ``sound2img/config.py``), and run it through the same
:func:`~sound2img.manipulation.run.run_edit`, with networks built once (one
``factory.Networks``) and shared by every request."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound2img.cli import compose, to_object, to_schema
from sound2img.errors import UserInputError
from sound2img.utils.device import resolve_device

if TYPE_CHECKING:
    from sound2img.config import DemoConfig, ManipulateConfig

log = logging.getLogger(__name__)

CONFIG_NAME = "demo"
# the page's mode choices → (manipulate's edit.mode, uses the sound, uses the text)
MODES = {
    "sound only": ("separate", True, False),
    "text only": ("separate", False, True),
    "embedding mix": ("embedding_mix", True, True),
    "latent mix": ("latent_mix", True, True),
    "layer mix": ("layer_mix", True, True),
}
SOURCES = ("seed", "latent file", "photo")
TONE_CLIP = "tone:440"


@dataclass
class EditRequest:
    """One edit as the page asks for it (paths are files the page received)."""

    sound: str | None = None  # a file path, sample:NAME or tone:HZ
    text: str = ""
    mode: str = "sound only"
    mix_weight: float = 0.5
    source: str = "seed"  # one of SOURCES
    seed: int = 0
    latent: str | None = None  # a latent file (source "latent file")
    photo: str | None = None  # an image file (source "photo")
    steps: int = 300
    lr: float = 0.1
    lambda_sim: float = 0.002
    lambda_id: float = 0.0


class Engine:
    """The app's one engine. ``overrides`` are Hydra ``key=value`` words for the ``demo``
    config (``preset=tiny``, ``generator=…``, ``manipulate=faces``)."""

    def __init__(self, overrides: Sequence[str] = (), device: str | None = None):
        from sound2img import factory

        self.cfg = compose(CONFIG_NAME, list(overrides))  # a request's flags are set on a copy of it
        self.config: DemoConfig = to_schema("demo", self.cfg)
        self.settings = self.config.app
        self.device = resolve_device(device or self.config.device or "auto")
        m = self.config.manipulate
        self.defaults = {"steps": m.steps, "lr": m.lr, "lambda_sim": m.lambda_sim, "lambda_id": m.lambda_id}
        self.defaults["mix_weight"] = self.config.edit.mix_weight
        self.bounds = {k: (float(v[0]), float(v[1])) for k, v in self.settings.bounds.items()}
        work = self.settings.work_dir
        self.work_dir = Path(work) if work else Path(tempfile.mkdtemp(prefix="sound2img-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # every request's networks, built once on this device (requests of other model groups
        # than the base config's build their own, kept beside them)
        self.nets = factory.Networks(self.device)
        self._count = itertools.count(1)

    # ---- models -----------------------------------------------------------------------
    def audio_models(self):
        """(encoder, frontend) of the base config, built once (also warms the cache)."""
        return self.nets.encoder(self.config.encoder, self.config.audio)

    def random_networks(self) -> list[str]:
        """The networks of the base config that are random, not trained (``preset=tiny``, or
        a group without weights): then every sound gives much the same picture."""
        from sound2img import factory

        cfg = self.config
        towers = cfg.clip.model
        random = {
            "generator": factory.generator_source(cfg.generator) is None,
            "sound encoder": not factory.encoder_source(cfg.encoder),
            "CLIP": towers != "from_encoder" and (towers == "tiny" or not cfg.clip.pretrained),
        }
        return [name for name, is_random in random.items() if is_random]

    # ---- requests ---------------------------------------------------------------------
    def sample_choices(self) -> list[str]:
        """The registry's sample clips (``sample:NAME``, fetched on first use), plus a
        tone made on the spot that works offline."""
        from sound2img.weights import list_weights

        names = [f"sample:{e.name[len('sample_') :]}" for e in list_weights() if e.name.startswith("sample_")]
        return [TONE_CLIP, *sorted(names)]

    def check_number(self, name: str, value: Any, *, integer: bool = False) -> float:
        """A slider's value inside the config's bounds, or a one-line error naming them."""
        low, high = self.bounds[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserInputError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}") from None
        if not math.isfinite(number) or not low <= number <= high or (integer and number != int(number)):
            kind = "an integer" if integer else "a number"
            raise UserInputError(f"{name} must be {kind} in [{low:g}, {high:g}] (app.bounds), got {value!r}")
        return int(number) if integer else number

    @staticmethod
    def check_seed(value) -> int:
        """A request's seed: a whole number >= 0, else a one-line ``UserInputError``."""
        try:
            seed = int(value)
        except (TypeError, ValueError):
            raise UserInputError(f"seed must be a whole number >= 0, got {value!r}") from None
        if seed < 0 or seed != value:
            raise UserInputError(f"seed must be a whole number >= 0, got {value!r}")
        return seed

    def request_config(self, updates: dict[str, Any]) -> ManipulateConfig:
        """The base config with a request's values (dotted key → value, as a script's flags
        set them) as the schema's dataclasses, without the page's ``app`` section (the
        edit's metrics.json records the manipulate config, as the CLI's does)."""
        from omegaconf import OmegaConf, open_dict

        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            for key, value in {**updates, "app": None}.items():
                OmegaConf.update(cfg, key, value, merge=False)
        return to_object(cfg)

    def edit_config(self, req: EditRequest, out: Path) -> ManipulateConfig:
        """The ``manipulate`` config of one request (what manipulate.py's flags set)."""

        if req.mode not in MODES:
            raise UserInputError(f"mode must be one of {', '.join(MODES)}, got {req.mode!r}")
        mode, uses_sound, uses_text = MODES[req.mode]
        text = (req.text or "").strip()
        if uses_sound and not req.sound:
            raise UserInputError(f"mode {req.mode!r} needs a sound: upload or record one, or pick a sample clip")
        if uses_text and not text:
            raise UserInputError(f"mode {req.mode!r} needs a text prompt")
        updates: dict[str, Any] = {
            "edit.audio": [str(req.sound)] if uses_sound else [],
            "edit.text": [text] if uses_text else [],
            "edit.mode": mode,
            "edit.mix_weight": self.check_number("mix_weight", req.mix_weight),
            "manipulate.steps": self.check_number("steps", req.steps, integer=True),
            "manipulate.lr": self.check_number("lr", req.lr),
            "manipulate.lambda_sim": self.check_number("lambda_sim", req.lambda_sim),
            "manipulate.lambda_id": self.check_number("lambda_id", req.lambda_id),
            "out": str(out),
            "overwrite": False,
            "progress": False,
            "device": str(self.device),
        }
        if req.source == "seed":
            updates.update({"edit.seeds": [self.check_seed(req.seed)], "edit.latents": []})
        elif req.source == "latent file":
            if not req.latent:
                raise UserInputError("source 'latent file' needs a latent file (.pt, .npy or .npz)")
            updates.update({"edit.seeds": [], "edit.latents": [str(req.latent)]})
        elif req.source == "photo":
            if not req.photo:
                raise UserInputError("source 'photo' needs an image file (JPEG, PNG, ...)")
            check_photo(req.photo)
            # inverted by run_edit as manipulate.py --image does (cached by content and settings)
            updates.update({"edit.seeds": [], "edit.latents": [], "edit.images": [str(req.photo)]})
        else:
            raise UserInputError(f"source must be one of {', '.join(SOURCES)}, got {req.source!r}")
        return self.request_config(updates)

    def run(self, req: EditRequest, on_step: Callable | None = None, on_invert: Callable | None = None) -> EditOutcome:
        """Run one request to the end: its edit directory (exactly what manipulate.py
        writes) and a zip of it. ``on_step(done, img, cosine)`` / ``on_invert(stage, done,
        total)``: progress of the edit / of a photo's inversion, a true return stops it.
        Raises ``UserInputError``/``EditStopped``/``InversionStopped``; nothing is left
        behind by a failed or stopped edit except an empty work folder."""
        from sound2img.inversion.projector import InversionStopped
        from sound2img.manipulation.optimizer import EditStopped
        from sound2img.manipulation.run import run_edit

        n = next(self._count)
        folder = self.work_dir / f"edit-{n:04d}"
        folder.mkdir()
        out = folder / "edit"
        cfg = self.edit_config(req, out)
        log.info("edit %d: start (%s)", n, req.mode)
        stopped = False
        try:
            (edit_dir,) = run_edit(cfg, nets=self.nets, on_step=on_step, on_invert=on_invert)
        except EditStopped as exc:  # the user's Stop: one line, not an error
            stopped = True
            log.info("edit %d: stopped by the user after %d steps (nothing written)", n, exc.steps_done)
            raise
        except InversionStopped as exc:
            stopped = True
            log.info(
                "edit %d: stopped by the user while inverting the photo (%s, %d steps)", n, exc.stage, exc.steps_done
            )
            raise
        finally:
            if not stopped:
                log.info("edit %d: end", n)
        zip_path = zip_dir(edit_dir, folder / "edit.zip")
        return EditOutcome(n, edit_dir, zip_path, json.loads((edit_dir / "metrics.json").read_text(encoding="utf-8")))

    def mel_png(self, sound: str) -> bytes:
        """The mel spectrogram the encoder sees for ``sound`` (its window of a long file),
        as the PNG ``scripts/show_mel.py`` draws."""
        import torch

        from sound2img.audio.show import render_mel_png
        from sound2img.manipulation import guidance as tg

        _, frontend = self.audio_models()
        wav = tg.load_sound_for_frontend(str(sound), frontend)
        device = next(iter(frontend.buffers()), torch.empty(0)).device
        with torch.no_grad():
            mel = frontend(wav[None].to(device))[0].float().cpu()
        name = getattr(frontend, "name", type(frontend).__name__)
        return render_mel_png(mel, f"{tg.describe_sound(str(sound))} — {name}, encoder input {list(mel.shape)}")


def zip_dir(directory: Path, zip_path: Path) -> Path:
    """Every file under ``directory`` into ``zip_path`` (names relative to it) → zip_path."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(directory.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(directory).as_posix())
    return zip_path


@dataclass
class EditOutcome:
    """A finished edit: its number, directory, zip and metrics.json."""

    number: int
    edit_dir: Path
    zip_path: Path
    metrics: dict[str, Any]


def check_photo(path: str):
    """An uploaded photo read as ``invert.py`` reads it: ``uint8 [3,H,W]`` RGB, or the
    one-line ``UserInputError`` of ``inversion.images.load_image`` (not an image,
    truncated, too small or too large)."""
    from sound2img.inversion.images import load_image

    return load_image(path)


def summary_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """metrics.json → rows (quantity, value) for the page's table."""
    rows = []
    cos = metrics.get("final_cosine")
    if isinstance(cos, dict):  # a latent/layer mix: cosine of the mixed result to each target
        rows += [[f"cosine to the {k} target", round(float(v), 4)] for k, v in cos.items()]
    elif cos is not None:
        rows.append(["cosine to the target, before", round(float(metrics.get("initial_cosine", float("nan"))), 4)])
        rows.append(["cosine to the target, after", round(float(cos), 4)])
    for name, values in (metrics.get("losses") or {}).items():
        if values:
            rows.append([f"loss {name}, last step", round(float(values[-1]), 5)])
    timings = metrics.get("timings") or {}
    for key in ("setup_s", "optimise_s"):
        if key in timings:
            rows.append([key.replace("_s", " (s)"), round(float(timings[key]), 2)])
    rows.append(["device", metrics.get("device", "")])
    return rows
