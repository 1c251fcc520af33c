"""``scripts/embed.py``: sounds, prompts and images → L2-normalised embeddings in the audio
encoder's CLIP space, as one ``.npz`` (``audio``, ``text``, ``image`` float32 ``[N,D]``, rows in
argument order, and the inputs' names), for retrieval and one's own analyses. Sounds are read
and embedded exactly as an edit's targets are (``guidance.load_sound`` → ``embed_audio``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.cli import (
    add_common_args,
    compose_with_flags,
    model_choice,
    parse_with_overrides,
    script_parser,
    to_object,
    to_yaml,
)
from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, check_can_write

if TYPE_CHECKING:
    from sound2img.config import EmbedConfig

CONFIG_NAME = "embed"
FLAG_KEYS = {"audio": "sounds", "text": "texts", "image": "images", "out": "out", "device": "device"}
EPILOG = """\
sounds: --audio takes files (wav/flac/ogg/mp3/m4a or a video's audio track), sample:NAME (a
sample clip of the weights registry) or tone:HZ (a 10-s sine, for offline checks), read as
manipulate.py reads them (a file over edit.full_file_seconds: its centre window only).
examples:
  python scripts/embed.py --encoder audioclip_partial --audio rain.wav dog.wav --text "rain" "a dog barking" --out e.npz
  python scripts/embed.py --encoder wav2clip --audio rain.wav --image photo.jpg --out e.npz
  python scripts/embed.py --encoder my_encoder.safetensors --audio rain.wav --out e.npz
  python scripts/embed.py --audio tone:440 --text "a beep" --out tiny.npz preset=tiny
Each sound is embedded alone (Wav2CLIP's standardisation would otherwise mix clips of one batch).
"""


def build_parser():
    p = script_parser(
        "embed.py",
        "Embed sounds, text prompts and images in an audio encoder's CLIP space: L2-normalised rows, "
        "in argument order, in one .npz.",
        EPILOG,
    )
    p.add_argument(
        "--encoder",
        metavar="NAME|PATH",
        help="audio encoder: registry name (audioclip_partial, audioclip_full, wav2clip, soundclip_resnet18), "
        "encoder config or checkpoint file (default: the encoder config, soundclip_resnet18)",
    )
    p.add_argument("--audio", nargs="+", metavar="SOUND", help="sound files, sample:NAME or tone:HZ (default: none)")
    p.add_argument("--text", nargs="+", metavar="PROMPT", help="text prompts (default: none)")
    p.add_argument("--image", nargs="+", metavar="FILE", help="image files (default: none)")
    p.add_argument("--out", metavar="FILE.npz", help="the .npz to write (required)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing --out (default: off)")
    add_common_args(p)
    return p


def _encode_images(towers, paths: Sequence[str], device) -> torch.Tensor:
    from sound2img.inversion.images import load_image, to_unit

    images = [to_unit(load_image(p)) for p in paths]  # every file read before any compute
    return torch.cat([F.normalize(towers.encode_image(im.to(device)).float(), dim=-1).cpu() for im in images])


@torch.no_grad()
def embed_inputs(
    encoder,
    frontend,
    towers,
    audio: Sequence[str] = (),
    text: Sequence[str] = (),
    image: Sequence[str] = (),
    device: torch.device | str = "cpu",
    full_file_seconds: float = 60.0,
) -> dict[str, np.ndarray]:
    """Sounds (files, ``sample:NAME``, ``tone:HZ``), prompts and image files →
    ``{"audio": [Na,D], "text": [Nt,D], "image": [Ni,D]}`` float32, L2-normalised; each
    sound read by ``guidance.load_sound`` (a long file: the front end's centre window) and
    embedded alone by ``guidance.encode_sounds``, as an edit's target is."""
    from sound2img.manipulation import guidance

    dim = int(getattr(encoder, "embed_dim", 0) or (towers.embed_dim if towers is not None else 0))
    wavs = [
        guidance.load_sound_for_frontend(str(s), frontend, full_seconds=full_file_seconds) for s in audio
    ]  # every sound read before any compute, at the front end's rate through its resampler
    out = {"audio": torch.zeros(0, dim), "text": torch.zeros(0, dim), "image": torch.zeros(0, dim)}
    if image:
        out["image"] = _encode_images(towers, image, device)
    if wavs:
        out["audio"] = guidance.encode_sounds(wavs, encoder, frontend, device=device).float().cpu()
    if text:
        out["text"] = F.normalize(towers.encode_text(list(text)).float(), dim=-1).cpu()
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


def run_embed(cfg: EmbedConfig) -> tuple[Path, dict[str, np.ndarray]]:
    """Embed what an ``embed`` config lists and write its ``out`` atomically."""
    from sound2img import factory
    from sound2img.models.clip import clip_space
    from sound2img.utils.device import resolve_device

    sounds, texts, images = list(cfg.sounds), list(cfg.texts), list(cfg.images)
    if not (sounds or texts or images):
        raise UserInputError("embed.py: give at least one --audio, --text or --image")
    if not cfg.out:
        raise UserInputError("embed.py: give --out FILE.npz")
    out = Path(cfg.out)
    if out.suffix != ".npz":
        raise UserInputError(f"--out {out}: must end in .npz")
    check_can_write([out], cfg.overwrite)
    for p in images:
        if not Path(p).is_file():
            raise UserInputError(f"{p}: no such file")
    from sound2img.needs import embed_needs, ensure_weights

    ensure_weights(embed_needs(cfg))  # offline: one message names every missing file
    device = resolve_device(cfg.device or "auto")
    path = factory.encoder_source(cfg.encoder)
    # an encoder file brings its own architecture and front end: the groups' would only be warned about
    encoder, frontend = factory.build_encoder_from_cfg(
        {"path": path} if path else cfg.encoder, None if path else cfg.audio, device
    )
    towers = None
    if texts or images:
        if factory.towers_from_encoder(cfg.clip) and not getattr(encoder, "clip_spec", None):
            raise UserInputError(
                f"{path or 'the encoder'}: this encoder does not record its CLIP towers, so --text/--image "
                "cannot be embedded in its space; embed --audio only, or choose the towers (e.g. clip=vit_b32)"
            )
        towers = factory.build_clip_for_encoder(cfg.clip, encoder, device)
    arrays = embed_inputs(encoder, frontend, towers, sounds, texts, images, device, cfg.full_file_seconds)
    spec = getattr(encoder, "clip_spec", None) or (towers.spec() if towers is not None else None)
    names: dict[str, Any] = {
        "audio_names": np.array([str(p) for p in sounds], dtype=str),
        "text_names": np.array(texts, dtype=str),
        "image_names": np.array([str(p) for p in images], dtype=str),
        "encoder": np.array(str(path or (cfg.encoder or {}).get("arch"))),
        "clip_space": np.array(str(clip_space(spec) or "unknown")),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays, **names)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out, {**arrays, **names}


def main(argv: Sequence[str]) -> int:
    from sound2img.factory import towers_override
    from sound2img.weights import AUDIO_ENCODER_FORMATS

    args, overrides = parse_with_overrides(build_parser(), argv)
    groups: list[str] = []
    updates: dict[str, Any] = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()}
    if args.overwrite:
        updates["overwrite"] = True
    if args.encoder:
        g, u = model_choice("--encoder", "encoder", args.encoder, AUDIO_ENCODER_FORMATS, "an audio encoder")
        groups += g + towers_override(args.encoder, overrides)
        updates.update(u)
    cfg = compose_with_flags(CONFIG_NAME, overrides, updates, groups=groups)
    if args.cfg == "job":
        print(to_yaml(cfg), end="")
        return 0
    out, z = run_embed(to_object(cfg))
    print(
        f"{out}: audio {list(z['audio'].shape)}, text {list(z['text'].shape)}, "
        f"image {list(z['image'].shape)} ({z['clip_space']})"
    )
    return 0
