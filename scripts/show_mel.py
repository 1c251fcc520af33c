"""Write the mel spectrogram an audio encoder would see for one sound file, as a PNG
(and optionally a .npy array).

    python scripts/show_mel.py --audio x.wav --out mel.png
    python scripts/show_mel.py --audio clip.mp4 --frontend soundclip_legacy --out mel.png --npy mel.npy
    python scripts/show_mel.py --audio x.wav --out mel.png audio.n_mels=64   # any front end setting
"""

from __future__ import annotations

import sys

from sound2img.cli import ArgumentParser, add_common_args, compose, config_dir, parse_with_overrides, run_cli, to_yaml


def _run(argv) -> int:
    frontends = sorted(p.stem for p in (config_dir() / "audio").glob("*.yaml"))
    parser = ArgumentParser(prog="show_mel.py", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", help="sound or video file (wav, flac, ogg, mp3, m4a, mp4, ...; required)")
    parser.add_argument("--frontend", default="logmel", choices=frontends, help="audio config (default: logmel)")
    parser.add_argument("--out", help="PNG to write (required)")
    parser.add_argument("--npy", help="also write the array [1,n_mels,T] here (default: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files (default: off)")
    add_common_args(parser)
    args, overrides = parse_with_overrides(parser, argv)
    cfg = compose(f"audio/{args.frontend}", overrides)
    if args.cfg:
        print(to_yaml(cfg), end="")
        return 0
    if not args.audio or not args.out:
        parser.error("--audio and --out are required")

    from omegaconf import OmegaConf

    from sound2img.audio.frontend import build_frontend
    from sound2img.audio.show import save_mel_image
    from sound2img.utils.device import resolve_device

    frontend = build_frontend(**OmegaConf.to_container(cfg.audio, resolve=True))
    mel = save_mel_image(
        args.audio,
        frontend,
        args.out,
        npy=args.npy,
        overwrite=args.overwrite,
        device=resolve_device(args.device or "auto"),
    )
    print(f"{args.out}: {frontend.name} mel {list(mel.shape)}" + (f", array in {args.npy}" if args.npy else ""))
    return 0


def main(argv=None) -> int:
    return run_cli(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
