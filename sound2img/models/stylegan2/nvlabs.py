"""NVlabs network pickles (stylegan2-ada-pytorch ``networks.Generator`` and stylegan3's
``networks_stylegan2.Generator``) → ``GeneratorArch`` + state dict, from the inert records
of ``unpickler.py``; checkpoint-formats.md §4.4–4.5 (kwargs layouts, flavour defaults)."""
from __future__ import annotations

import math
import re
from typing import Any

import torch

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2.networks import GeneratorArch, block_resolutions, num_ws_for
from sound2img.models.stylegan2.ops import FIR_TAPS, fir_kernel_2d
from sound2img.models.stylegan2.unpickler import PersistentRecord

# Defaults of the synthesis kwargs when absent, per flavour (§4.4).
_SYNTHESIS_DEFAULTS = {
    "ada": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": None},
    "sg3": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
}
_COMMON_DEFAULTS = {"architecture": "skip", "resample_filter": [1, 3, 3, 1], "use_noise": True,
                    "activation": "lrelu"}
_TOP_LEVEL = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
              "synthesis_kwargs"}
_MISSING = object()


def _attr(rec: PersistentRecord, name: str, default: Any = _MISSING) -> Any:
    """A plain attribute recorded in the module state (the value NVlabs actually used)."""
    return rec.state.get(name, default)


def _child(rec: PersistentRecord, name: str, where: str, source: str) -> PersistentRecord:
    child = rec.children.get(name)
    if not isinstance(child, PersistentRecord):
        raise CheckpointError(f"{source}: NVlabs pickle lacks module {where}{name}")
    return child


def _flavour_and_kwargs(kwargs: dict) -> tuple[str, dict, dict]:
    """('ada' | 'sg3', mapping kwargs, synthesis kwargs with the flavour's defaults)."""
    if "synthesis_kwargs" in kwargs:
        flavour, synth = "ada", dict(kwargs.get("synthesis_kwargs") or {})
    else:  # stylegan3's networks_stylegan2: synthesis kwargs are flat at the top level
        flavour, synth = "sg3", {k: v for k, v in kwargs.items() if k not in _TOP_LEVEL}
    full = {**_COMMON_DEFAULTS, **_SYNTHESIS_DEFAULTS[flavour], **synth}
    return flavour, dict(kwargs.get("mapping_kwargs") or {}), full


def _agreed(values: list[Any], name: str, source: str) -> Any:
    distinct = {repr(v) for v in values}
    if len(distinct) != 1:
        raise CheckpointError(f"{source}: layers disagree on {name} ({sorted(distinct)}); not supported")
    return values[0]


def _same_number(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-6)


def read_nvlabs_pickle(obj: Any, source: str) -> tuple[GeneratorArch, dict[str, torch.Tensor], dict]:
    """Interpret an unpickled NVlabs snapshot dict: ``G_ema`` only.

    Returns ``(arch, state, info)`` where ``state`` uses our (= NVlabs) tensor names
    without the constant ``resample_filter`` buffers, and ``info`` records the flavour.
    Raises ``CheckpointError`` for conditional, non-'skip', alias-free (StyleGAN3) or
    otherwise unsupported generators, naming the reason.
    """
    if not isinstance(obj, dict) or "G_ema" not in obj:
        keys = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{source}: pickle is not an NVlabs network snapshot (no 'G_ema'; found {keys})")
    g = obj["G_ema"]
    if not isinstance(g, PersistentRecord):
        raise CheckpointError(f"{source}: 'G_ema' is not an NVlabs persistent network object")
    if g.class_name != "Generator":
        raise CheckpointError(f"{source}: G_ema is a {g.class_name!r}, expected a 'Generator'")
    mapping = _child(g, "mapping", "", source)
    synthesis = _child(g, "synthesis", "", source)
    names = list(synthesis.children)
    if not names or not all(re.fullmatch(r"b\d+", n) for n in names):
        raise CheckpointError(f"{source}: G_ema is not a StyleGAN2 generator (synthesis layers {names[:3]}…): "
                              "StyleGAN3 alias-free generators (stylegan3-t/-r) are not supported")

    kwargs = g.init_kwargs
    flavour, map_kw, syn_kw = _flavour_and_kwargs(kwargs)
    c_dim = int(kwargs.get("c_dim", _attr(g, "c_dim", 0)) or 0)
    if c_dim > 0:
        raise CheckpointError(f"{source}: conditional generator (c_dim={c_dim}) is not supported")
    try:
        res = int(kwargs.get("img_resolution", _attr(g, "img_resolution", None)))
        z_dim = int(kwargs.get("z_dim", _attr(g, "z_dim", None)))
        w_dim = int(kwargs.get("w_dim", _attr(g, "w_dim", None)))
        img_channels = int(kwargs.get("img_channels", _attr(g, "img_channels", None)))
    except (TypeError, ValueError):
        raise CheckpointError(f"{source}: G_ema init kwargs lack z_dim/w_dim/img_resolution/img_channels") from None
    if res < 4 or res & (res - 1):
        raise CheckpointError(f"{source}: img_resolution {res} is not 4·2^k")
    expected_blocks = [f"b{r}" for r in block_resolutions(res)]
    if names != expected_blocks:
        raise CheckpointError(f"{source}: synthesis blocks {names} do not match img_resolution {res}")

    for key, want in (("architecture", "skip"), ("activation", "lrelu")):
        if syn_kw.get(key) != want:
            raise CheckpointError(f"{source}: {key}={syn_kw.get(key)!r} is not supported (only {want!r})")
    if [float(v) for v in syn_kw.get("resample_filter") or []] != list(FIR_TAPS):
        raise CheckpointError(f"{source}: resample_filter {syn_kw.get('resample_filter')} is not supported "
                              "(only [1, 3, 3, 1])")

    blocks = [synthesis.children[n] for n in names]
    layers, torgbs = [], []
    for name, blk in zip(names, blocks):
        if _attr(blk, "architecture", "skip") != "skip":
            raise CheckpointError(f"{source}: block {name} has architecture {_attr(blk, 'architecture')!r} "
                                  "(only 'skip' is supported)")
        for lname in ("conv0", "conv1"):
            if lname in blk.children:
                layers.append(blk.children[lname])
        torgbs.append(_child(blk, "torgb", f"synthesis.{name}.", source))
    for layer in layers:
        if _attr(layer, "activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{source}: synthesis activation {_attr(layer, 'activation')!r} is not supported")

    # conv_clamp: prefer the values the layers recorded; they must agree with the kwargs.
    recorded = [_attr(r, "conv_clamp") for r in layers + torgbs if "conv_clamp" in r.state]
    conv_clamp = _agreed(recorded, "conv_clamp", source) if recorded else syn_kw["conv_clamp"]
    if not _same_number(conv_clamp, syn_kw["conv_clamp"]):
        raise CheckpointError(f"{source}: layers record conv_clamp={conv_clamp} but the {flavour} kwargs say "
                              f"{syn_kw['conv_clamp']}; refusing an ambiguous file")
    noise_flags = [bool(_attr(r, "use_noise", syn_kw["use_noise"])) for r in layers]
    use_noise = _agreed(noise_flags, "use_noise", source)

    fcs = [n for n in mapping.children if re.fullmatch(r"fc\d+", n)]
    if "embed" in mapping.children:
        raise CheckpointError(f"{source}: mapping has a class embedding (conditional generator): not supported")
    n_mlp = int(map_kw.get("num_layers", 8))
    if len(fcs) != n_mlp:
        raise CheckpointError(f"{source}: mapping has {len(fcs)} layers but kwargs say num_layers={n_mlp}")
    fc0 = mapping.children["fc0"]
    lr_mult = float(_attr(fc0, "bias_gain", map_kw.get("lr_multiplier", 0.01)))
    if not _same_number(lr_mult, map_kw.get("lr_multiplier", 0.01)):
        raise CheckpointError(f"{source}: mapping records lr_multiplier {lr_mult} but kwargs say "
                              f"{map_kw.get('lr_multiplier', 0.01)}")
    for n in fcs:
        if _attr(mapping.children[n], "activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{source}: mapping activation {_attr(mapping.children[n], 'activation')!r} "
                                  "is not supported")
    num_ws = _attr(g, "num_ws", None)
    if num_ws is not None and int(num_ws) != num_ws_for(res):
        raise CheckpointError(f"{source}: G_ema.num_ws={num_ws}, expected {num_ws_for(res)} for {res}px")

    tensors = dict(g.tensors())
    fir = fir_kernel_2d()
    state = {}
    for name, t in tensors.items():
        if name.endswith("resample_filter"):
            if t.shape != fir.shape or not torch.allclose(t.float(), fir, atol=1e-6):
                raise CheckpointError(f"{source}: {name} is not the [1,3,3,1] filter")
            continue
        state[name] = t.float()
    try:
        channels = [int(state[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in block_resolutions(res)]
        layer_features = int(state["mapping.fc0.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing key {exc.args[0]!r}") from None
    arch = GeneratorArch(
        img_resolution=res, z_dim=z_dim, w_dim=w_dim, n_mlp=n_mlp, channels=channels,
        img_channels=img_channels, layer_features=layer_features if n_mlp > 1 and layer_features != w_dim else None,
        lr_multiplier=lr_mult, conv_clamp=None if conv_clamp is None else float(conv_clamp),
        use_noise=use_noise, demod_eps="nvlabs",
        extra={"source_format": f"nvlabs-{flavour}", "num_fp16_res": syn_kw.get("num_fp16_res")},
    )
    info = {"format": f"nvlabs-{flavour}", "w_avg_estimated": False, "module_source_sha256": g.source_sha256}
    return arch, state, info
