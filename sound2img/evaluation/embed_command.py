"""``scripts/embed.py``: sounds, prompts and images → L2-normalised embeddings in the audio
encoder's CLIP space, as one ``.npz`` (``audio``, ``text``, ``image`` float32 ``[N,D]``, rows in
argument order, and the inputs' names), for retrieval and one's own analyses."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.cli import ArgumentParser, add_common_args, script_parser
from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_path, check_can_write

EPILOG = """\
examples:
  python scripts/embed.py --encoder audioclip_partial --audio rain.wav dog.wav --text "rain" "a dog barking" --out e.npz
  python scripts/embed.py --encoder wav2clip --audio rain.wav --image photo.jpg --out e.npz
  python scripts/embed.py --encoder my_encoder.safetensors --audio rain.wav --out e.npz
Each sound is embedded alone (Wav2CLIP's standardisation would otherwise mix clips of one batch).
"""


def build_parser() -> ArgumentParser:
    p = script_parser(
        "embed.py",
        __doc__.splitlines()[0].strip("`: "),
        EPILOG,
    )
    p.add_argument(
        "--encoder",
        required=True,
        metavar="NAME|PATH",
        help="audio encoder: registry name (audioclip_partial, audioclip_full, wav2clip, soundclip_resnet18) "
        "or checkpoint file",
    )
    p.add_argument("--audio", nargs="+", default=[], metavar="FILE", help="sound or video files")
    p.add_argument("--text", nargs="+", default=[], metavar="PROMPT", help="text prompts")
    p.add_argument("--image", nargs="+", default=[], metavar="FILE", help="image files")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_common_args(p)
    return p


def _load_image(path: str) -> torch.Tensor:
    """An image file → ``img [1,3,H,W] in [-1,1]`` (RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise UserInputError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None] / 127.5 - 1.0


@torch.no_grad()
def embed_inputs(
    encoder,
    frontend,
    towers,
    audio: Sequence[str] = (),
    text: Sequence[str] = (),
    image: Sequence[str] = (),
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Files and prompts → ``{"audio": [Na,D], "text": [Nt,D], "image": [Ni,D]}`` float32,
    L2-normalised; each sound through ``frontend`` and ``encoder`` alone."""
    from sound2img.audio.io import load_audio

    dim = int(getattr(encoder, "embed_dim", 0) or (towers.embed_dim if towers is not None else 0))
    # every file read before any compute, resampled as the encoder's inputs were
    wavs = [load_audio(p, int(frontend.sample_rate), resampler=frontend.resampler) for p in audio]
    images = [_load_image(p) for p in image]
    out = {"audio": torch.zeros(0, dim), "text": torch.zeros(0, dim), "image": torch.zeros(0, dim)}
    if wavs:
        out["audio"] = torch.cat(
            [
                F.normalize(encoder.encode_audio(frontend(w.reshape(1, -1).to(device))).float(), dim=-1).cpu()
                for w in wavs
            ]
        )
    if text:
        out["text"] = F.normalize(towers.encode_text(list(text)).float(), dim=-1).cpu()
    if images:
        out["image"] = torch.cat(
            [F.normalize(towers.encode_image(im.to(device)).float(), dim=-1).cpu() for im in images]
        )
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


def main(argv: Sequence[str]) -> int:
    from sound2img import factory
    from sound2img.models.audio_encoder import load_audio_encoder
    from sound2img.models.clip import clip_space
    from sound2img.utils.device import resolve_device
    from sound2img.weights import AUDIO_ENCODER_FORMATS

    args = build_parser().parse_args(argv)
    if not (args.audio or args.text or args.image):
        raise UserInputError("embed.py: give at least one --audio, --text or --image")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserInputError(f"--out {out}: must end in .npz")
    check_can_write([out], args.overwrite)
    for p in [*args.audio, *args.image]:
        if not Path(p).is_file():
            raise UserInputError(f"{p}: no such file")
    device = resolve_device(args.device or "auto")
    encoder, frontend = load_audio_encoder(
        factory._weights_file(args.encoder, AUDIO_ENCODER_FORMATS, "an audio encoder"), device
    )
    towers = None
    if args.text or args.image:
        if not getattr(encoder, "clip_spec", None):
            raise UserInputError(
                f"{args.encoder}: this encoder does not record its CLIP towers, so --text/--image "
                "cannot be embedded in its space; embed --audio only"
            )
        towers = factory.build_clip_for_encoder({"model": "from_encoder"}, encoder, device)
    arrays = embed_inputs(encoder, frontend, towers, args.audio, args.text, args.image, device)
    names = {
        "audio_names": np.array([str(p) for p in args.audio], dtype=str),
        "text_names": np.array(list(args.text), dtype=str),
        "image_names": np.array([str(p) for p in args.image], dtype=str),
        "encoder": np.array(str(args.encoder)),
        "clip_space": np.array(str(clip_space(getattr(encoder, "clip_spec", None)) or "unknown")),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays, **names)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    print(
        f"{out}: audio {list(arrays['audio'].shape)}, text {list(arrays['text'].shape)}, "
        f"image {list(arrays['image'].shape)} ({names['clip_space']})"
    )
    return 0
