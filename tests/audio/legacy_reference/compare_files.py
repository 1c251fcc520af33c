"""Compare the input manipulate.py feeds the authors' encoder (its reader + the
``soundclip_legacy`` front end rebuilt as their checkpoint's loader rebuilds it) with
references that make_reference.py computed for the same files in the pinned environment.
Run in the project's environment; prints max |Δ| of the wave and of the encoder input.

    python tests/audio/legacy_reference/compare_files.py --reference clips.npz clip1.wav clip2.wav
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--reference", required=True, help=".npz from make_reference.py --full")
    args = parser.parse_args(argv)

    from sound2img.audio.frontend import build_frontend
    from sound2img.manipulation.guidance import FULL_FILE_SECONDS
    from sound2img.manipulation.run import load_sounds

    ref = np.load(args.reference)
    frontend = build_frontend("soundclip_legacy")  # what load_audio_encoder builds for their .pth
    worst = 0.0
    for path in args.files:
        name = Path(path).stem
        (wav,) = load_sounds({"audio": [path], "full_file_seconds": FULL_FILE_SECONDS}, frontend)
        with torch.no_grad():
            x = frontend(wav[None]).reshape(-1).numpy()
        n, w = int(ref[f"{name}/wave_length"]), ref[f"{name}/wave_start"].shape[0]
        mid = max(0, n // 2 - w // 2)
        d_wave = max(
            np.abs(wav[:w].numpy() - ref[f"{name}/wave_start"]).max(),
            np.abs(wav[mid : mid + w].numpy() - ref[f"{name}/wave_middle"]).max(),
            np.abs(wav[-w:].numpy() - ref[f"{name}/wave_end"]).max(),
        )
        d_input = float(np.abs(x - ref[f"{name}/input"]).max())
        worst = max(worst, d_input)
        print(
            f"{name}: length {wav.shape[0]} (theirs {n}), wave max |Δ| {d_wave:.2e}, encoder input max |Δ| {d_input:.2e}"
        )
    print(f"worst encoder input max |Δ|: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
