"""``load_generator`` for every supported file (rosinality ``.pt``, NVlabs ``.pkl``, our
safetensors), told apart by content, not by name; ``save_generator`` and
``convert_generator`` write our safetensors (architecture in its JSON metadata) or
rosinality's dict."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from sound2img.errors import CheckpointError
from sound2img.models.state_dict import freeze, is_safetensors, load_state_dict_strict, read_torch_file
from sound2img.models.stylegan2.networks import Generator, GeneratorArch
from sound2img.models.stylegan2.nvlabs import read_nvlabs_pickle
from sound2img.models.stylegan2.rosinality import check_ros_args, from_ros_state, infer_ros_arch, to_ros_checkpoint
from sound2img.models.stylegan2.unpickler import restricted_load
from sound2img.utils.device import resolve_device
from sound2img.utils.files import atomic_path, check_can_write

log = logging.getLogger(__name__)

SAFETENSORS_KEY = "sound2img.stylegan2"
FORMAT_VERSION = 1
# A legacy (non-zip) torch.save file starts with this pickled magic number.
_TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def detect_format(path: str | os.PathLike) -> str:
    """'torch' (zip or legacy ``torch.save``), 'pickle' (NVlabs), 'safetensors', from the
    first bytes; ``CheckpointError`` for a missing or unrecognised file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: generator file not found")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch" if head[2:14] == _TORCH_LEGACY_MAGIC else "pickle"
    if is_safetensors(path):
        return "safetensors"
    raise CheckpointError(
        f"{path}: not a StyleGAN2 generator file (expected a rosinality .pt, an NVlabs "
        ".pkl or a sound2img .safetensors)"
    )


def is_e4e_layout(obj: object, part: str = "decoder") -> bool:
    """e4e / pSp layout: ``{'state_dict': encoder.* + decoder.*, 'opts', 'latent_avg'}``
    holding ``part`` (``"decoder"``: the generator; ``"encoder"``: the image encoder)."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("state_dict"), dict)
        and isinstance(obj.get("opts"), dict)
        and any(str(k).startswith(f"{part}.") for k in obj["state_dict"])
    )


def _read_torch(path: Path) -> tuple[GeneratorArch, dict, dict]:
    # rosinality's train.py stores its argparse.Namespace: allow exactly that class.
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = read_torch_file(path)
    if isinstance(obj, dict) and "g_ema" in obj:
        g_ema, latent_avg, args = obj["g_ema"], obj.get("latent_avg"), obj.get("args")
    elif is_e4e_layout(obj):
        # an e4e/pSp checkpoint: its decoder.* tensors are a rosinality g_ema; its
        # latent_avg ([num_ws,w_dim], equal rows in the public files) gives w_avg
        g_ema = {k[len("decoder.") :]: v for k, v in obj["state_dict"].items() if k.startswith("decoder.")}
        latent_avg, args = obj.get("latent_avg"), None
        if isinstance(latent_avg, torch.Tensor) and latent_avg.ndim == 2:
            latent_avg = latent_avg[0]
    elif isinstance(obj, dict) and "style.1.weight" in obj:
        g_ema, latent_avg, args = obj, None, None  # a bare g_ema state dict
    elif isinstance(obj, dict) and "mapping.fc0.weight" in obj:
        raise CheckpointError(
            f"{path}: an NVlabs-named state dict without its init kwargs; load the network pickle (.pkl) instead"
        )
    elif isinstance(obj, dict) and "g" in obj:
        raise CheckpointError(
            f"{path}: rosinality checkpoint without 'g_ema' (refusing to use 'g', the raw training copy)"
        )
    else:
        keys = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: not a rosinality StyleGAN2 checkpoint (found {keys})")
    if not isinstance(g_ema, dict) or not all(isinstance(v, torch.Tensor) for v in g_ema.values()):
        raise CheckpointError(f"{path}: 'g_ema' is not a state dict of tensors")
    arch = infer_ros_arch(g_ema, str(path))
    check_ros_args(args, arch, str(path))
    state = from_ros_state(g_ema, arch, str(path))
    info: dict[str, Any] = {
        "format": "e4e_decoder" if is_e4e_layout(obj) else "rosinality",
        "w_avg_estimated": latent_avg is None,
    }
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != arch.w_dim:
            raise CheckpointError(f"{path}: latent_avg must hold {arch.w_dim} values")
        state["mapping.w_avg"] = latent_avg.float().reshape(arch.w_dim)
    return arch, state, info


def _read_pickle(path: Path) -> tuple[GeneratorArch, dict, dict]:
    try:
        with open(path, "rb") as fh:
            obj = restricted_load(fh)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: {exc} (only NVlabs network pickles are read, and never their embedded code)"
        ) from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    return read_nvlabs_pickle(obj, str(path))


def _arch_from_json(meta: dict, source: str) -> GeneratorArch:
    raw = meta.get("arch")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: sound2img generator metadata lacks 'arch'")
    unknown = set(raw) - {f.name for f in fields(GeneratorArch)}
    if unknown:
        raise CheckpointError(f"{source}: unknown architecture fields {sorted(unknown)}")
    try:
        arch = GeneratorArch(**raw)
    except TypeError as exc:
        raise CheckpointError(f"{source}: malformed sound2img generator metadata ({exc})") from None
    ints = [arch.img_resolution, arch.z_dim, arch.w_dim, arch.n_mlp, arch.img_channels, *arch.channels]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise CheckpointError(f"{source}: sound2img generator metadata has non-integer sizes")
    return arch


def _read_safetensors(path: Path) -> tuple[GeneratorArch, dict, dict]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta_text = (fh.metadata() or {}).get(SAFETENSORS_KEY)
            if meta_text is None:
                raise CheckpointError(f"{path}: safetensors file without sound2img generator metadata")
            state = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = json.loads(meta_text)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: generator format version {meta.get('version')!r} is not {FORMAT_VERSION}")
    info = dict(meta.get("info") or {})
    info["format"] = "sound2img"
    info.setdefault("w_avg_estimated", False)
    return _arch_from_json(meta, str(path)), state, info


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Read a StyleGAN2 generator from ``path`` (format detected from the content) and
    return it frozen (``eval()``, no parameter requires grad) on ``device`` (``auto``:
    CUDA when present).

    rosinality files without ``latent_avg`` get ``w_avg`` estimated from 4096 mapped
    samples with a fixed seed; ``G.info["w_avg_estimated"]`` records it.
    Raises ``CheckpointError`` (one line naming the file) for anything unsupported.
    """
    path = Path(path)
    device = resolve_device(device)
    kind = detect_format(path)
    reader = {"torch": _read_torch, "pickle": _read_pickle, "safetensors": _read_safetensors}[kind]
    arch, state, info = reader(path)
    try:
        G = Generator(arch)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: inconsistent generator architecture ({exc})") from None
    estimate = "mapping.w_avg" not in state
    if estimate:
        state = {**state, "mapping.w_avg": G.w_avg.clone()}
    load_state_dict_strict(G, state, path)
    if estimate:
        G.estimate_w_avg()
        log.warning(
            "%s has no latent_avg: w_avg (the truncation centre) is estimated from 4096 mapped "
            "samples with a fixed seed",
            path,
        )
    G.info = {**info, "path": str(path), "w_avg_estimated": bool(info.get("w_avg_estimated")) or estimate}
    return freeze(G.to(device))


def save_generator(G: Generator, path: str | os.PathLike, format: str | None = None, overwrite: bool = False) -> Path:
    """Write ``G`` as our safetensors (default; JSON metadata rebuilds the architecture,
    conv_clamp included) or as rosinality's ``{"g_ema", "latent_avg"}`` ``.pt``
    (``format="rosinality"``, the default for a ``.pt``/``.pth`` name). Atomic; refuses to
    replace an existing file unless ``overwrite``."""
    path = Path(path)
    if format is None:
        format = "rosinality" if path.suffix in (".pt", ".pth") else "safetensors"
    if format not in ("safetensors", "rosinality"):
        raise CheckpointError(f"unknown generator format {format!r} (use safetensors or rosinality)")
    check_can_write([path], overwrite)
    if format == "rosinality":
        ckpt = to_ros_checkpoint(G)
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
        return path
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    info = {k: v for k, v in G.info.items() if k in ("format", "w_avg_estimated", "module_source_sha256")}
    info["converted_from"] = info.pop("format", None)
    meta = {"version": FORMAT_VERSION, "arch": G.arch.to_dict(), "info": info}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={SAFETENSORS_KEY: json.dumps(meta)})
    return path


def convert_generator(
    src: str | os.PathLike, dst: str | os.PathLike, format: str | None = None, overwrite: bool = False
) -> Path:
    """Read any supported generator file and write it as ``format`` (see
    ``save_generator``); the written file reproduces the source's images."""
    check_can_write([dst], overwrite)
    return save_generator(load_generator(src), dst, format=format, overwrite=overwrite)
