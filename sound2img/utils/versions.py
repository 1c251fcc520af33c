"""Library versions recorded with every output (edits, inversions): what decides its numbers."""

from __future__ import annotations

import platform


def package_versions() -> dict[str, str]:
    """Versions that decide an output's numbers: python, torch, numpy, open_clip, lpips, sound2img."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist, key in (
        ("torch", "torch"),
        ("numpy", "numpy"),
        ("open_clip_torch", "open_clip"),
        ("lpips", "lpips"),
        ("sound2img", "sound2img"),
    ):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out
