"""Convert a StyleGAN2 generator file: NVlabs .pkl or rosinality .pt → our .safetensors
(architecture and conv_clamp in its metadata) or a rosinality-style .pt
(``{"g_ema", "latent_avg"}``). The work is ``sound2img.models.stylegan2.convert_generator``.

    python scripts/convert_generator.py ffhq.pkl ffhq.safetensors
    python scripts/convert_generator.py ffhq.pkl stylegan2-ffhq.pt --format rosinality
"""

import sys

from sound2img.cli import ArgumentParser, add_common_args, run_cli


def _convert(argv):
    p = ArgumentParser(prog="convert_generator.py", description=__doc__.split("\n\n")[0])
    p.add_argument("src", metavar="IN", help="generator file: NVlabs .pkl, rosinality .pt or sound2img .safetensors")
    p.add_argument("dst", metavar="OUT", help="file to write")
    p.add_argument(
        "--format",
        choices=["safetensors", "rosinality"],
        help="output format (default: rosinality for a .pt/.pth OUT, else safetensors)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (default: off)")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.cfg == "job":
        print(f"src: {args.src}\ndst: {args.dst}\nformat: {args.format}\noverwrite: {args.overwrite}")
        return 0
    from sound2img.models.stylegan2 import convert_generator

    print(convert_generator(args.src, args.dst, format=args.format, overwrite=args.overwrite))
    return 0


def main(argv=None):
    return run_cli(_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
