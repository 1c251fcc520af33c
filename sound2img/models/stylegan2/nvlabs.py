"""NVlabs network pickles (stylegan2-ada-pytorch ``networks.Generator`` and stylegan3's
``networks_stylegan2.Generator``) → ``GeneratorArch`` + state dict, from the inert records
of ``unpickler.py``, in three steps: validate the snapshot, extract its tensors, infer the
architecture (docs/formats.md §4.3–4.4: kwargs layouts, flavour defaults, tensor names)."""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2.networks import GeneratorArch, block_resolutions, num_ws_for
from sound2img.models.stylegan2.ops import FIR_TAPS, fir_kernel_2d
from sound2img.models.stylegan2.unpickler import PersistentRecord

# Defaults of the synthesis kwargs when absent, per flavour (docs/formats.md §4.3).
_SYNTHESIS_DEFAULTS = {
    "ada": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 0, "conv_clamp": None},
    "sg3": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
}
_COMMON_DEFAULTS = {"architecture": "skip", "resample_filter": [1, 3, 3, 1], "use_noise": True, "activation": "lrelu"}
_TOP_LEVEL = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}
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


def validate_snapshot(obj: Any, source: str) -> PersistentRecord:
    """The ``G_ema`` record of an unpickled NVlabs snapshot dict, checked to be a StyleGAN2
    ``Generator`` (mapping + synthesis made of ``b<res>`` blocks). Raises
    ``CheckpointError`` for anything else, StyleGAN3 alias-free generators included."""
    if not isinstance(obj, dict) or "G_ema" not in obj:
        keys = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{source}: pickle is not an NVlabs network snapshot (no 'G_ema'; found {keys})")
    g = obj["G_ema"]
    if not isinstance(g, PersistentRecord):
        raise CheckpointError(f"{source}: 'G_ema' is not an NVlabs persistent network object")
    if g.class_name != "Generator":
        raise CheckpointError(f"{source}: G_ema is a {g.class_name!r}, expected a 'Generator'")
    _child(g, "mapping", "", source)
    names = list(_child(g, "synthesis", "", source).children)
    if not names or not all(re.fullmatch(r"b\d+", n) for n in names):
        raise CheckpointError(
            f"{source}: G_ema is not a StyleGAN2 generator (synthesis layers {names[:3]}…): "
            "StyleGAN3 alias-free generators (stylegan3-t/-r) are not supported"
        )
    return g


def extract_state(g: PersistentRecord, source: str) -> dict[str, torch.Tensor]:
    """``G_ema``'s parameters and buffers (NVlabs = our names) as float32, without the
    constant ``resample_filter`` buffers, each checked to be the [1,3,3,1] filter."""
    fir = fir_kernel_2d()
    state = {}
    for name, t in g.tensors():
        if name.endswith("resample_filter"):
            if t.shape != fir.shape or not torch.allclose(t.float(), fir, atol=1e-6):
                raise CheckpointError(f"{source}: {name} is not the [1,3,3,1] filter")
            continue
        state[name] = t.float()
    return state


def infer_arch(g: PersistentRecord, state: dict[str, torch.Tensor], source: str) -> GeneratorArch:
    """``GeneratorArch`` of a validated ``G_ema``: sizes from its init kwargs (with the
    flavour's defaults), per-layer settings from what the layers recorded (which must
    agree), widths from the tensor shapes in ``state``. Refuses conditional, non-'skip',
    non-lrelu and otherwise unsupported generators, naming the reason."""
    kwargs = g.init_kwargs
    flavour, map_kw, syn_kw = _flavour_and_kwargs(kwargs)
    res, z_dim, w_dim, img_channels = _sizes(g, kwargs, source)
    _check_synthesis_kwargs(syn_kw, source)
    conv_clamp, use_noise = _synthesis_settings(g, syn_kw, flavour, source)
    n_mlp, lr_mult = _mapping_settings(g, map_kw, source)
    num_ws = _attr(g, "num_ws", None)
    if num_ws is not None and int(num_ws) != num_ws_for(res):
        raise CheckpointError(f"{source}: G_ema.num_ws={num_ws}, expected {num_ws_for(res)} for {res}px")
    try:
        channels = [int(state[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in block_resolutions(res)]
        layer_features = int(state["mapping.fc0.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing key {exc.args[0]!r}") from None
    return GeneratorArch(
        img_resolution=res,
        z_dim=z_dim,
        w_dim=w_dim,
        n_mlp=n_mlp,
        channels=channels,
        img_channels=img_channels,
        layer_features=layer_features if n_mlp > 1 and layer_features != w_dim else None,
        lr_multiplier=lr_mult,
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
        use_noise=use_noise,
        demod_eps="nvlabs",
        extra={"source_format": f"nvlabs-{flavour}", "num_fp16_res": syn_kw.get("num_fp16_res")},
    )


def _sizes(g: PersistentRecord, kwargs: dict, source: str) -> tuple[int, int, int, int]:
    """(img_resolution, z_dim, w_dim, img_channels), checked against the synthesis blocks;
    a conditional generator (c_dim > 0) is refused."""
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
    names = list(g.children["synthesis"].children)
    if names != [f"b{r}" for r in block_resolutions(res)]:
        raise CheckpointError(f"{source}: synthesis blocks {names} do not match img_resolution {res}")
    return res, z_dim, w_dim, img_channels


def _check_synthesis_kwargs(syn_kw: dict, source: str) -> None:
    for key, want in (("architecture", "skip"), ("activation", "lrelu")):
        if syn_kw.get(key) != want:
            raise CheckpointError(f"{source}: {key}={syn_kw.get(key)!r} is not supported (only {want!r})")
    if [float(v) for v in syn_kw.get("resample_filter") or []] != list(FIR_TAPS):
        raise CheckpointError(
            f"{source}: resample_filter {syn_kw.get('resample_filter')} is not supported (only [1, 3, 3, 1])"
        )


def _synthesis_settings(g: PersistentRecord, syn_kw: dict, flavour: str, source: str) -> tuple[Any, bool]:
    """(conv_clamp, use_noise) as the synthesis layers recorded them; they must agree with
    each other and with the flavour's kwargs, and every block must be 'skip' + lrelu."""
    synthesis = g.children["synthesis"]
    layers, torgbs = [], []
    for name, blk in synthesis.children.items():
        if _attr(blk, "architecture", "skip") != "skip":
            raise CheckpointError(
                f"{source}: block {name} has architecture {_attr(blk, 'architecture')!r} (only 'skip' is supported)"
            )
        layers += [blk.children[lname] for lname in ("conv0", "conv1") if lname in blk.children]
        torgbs.append(_child(blk, "torgb", f"synthesis.{name}.", source))
    for layer in layers:
        if _attr(layer, "activation", "lrelu") != "lrelu":
            raise CheckpointError(f"{source}: synthesis activation {_attr(layer, 'activation')!r} is not supported")
    recorded = [_attr(r, "conv_clamp") for r in layers + torgbs if "conv_clamp" in r.state]
    conv_clamp = _agreed(recorded, "conv_clamp", source) if recorded else syn_kw["conv_clamp"]
    if not _same_number(conv_clamp, syn_kw["conv_clamp"]):
        raise CheckpointError(
            f"{source}: layers record conv_clamp={conv_clamp} but the {flavour} kwargs say "
            f"{syn_kw['conv_clamp']}; refusing an ambiguous file"
        )
    use_noise = _agreed([bool(_attr(r, "use_noise", syn_kw["use_noise"])) for r in layers], "use_noise", source)
    return conv_clamp, use_noise


def _mapping_settings(g: PersistentRecord, map_kw: dict, source: str) -> tuple[int, float]:
    """(n_mlp, lr_multiplier) of an unconditional lrelu mapping network, recorded values
    checked against the kwargs."""
    mapping = g.children["mapping"]
    if "embed" in mapping.children:
        raise CheckpointError(f"{source}: mapping has a class embedding (conditional generator): not supported")
    fcs = [n for n in mapping.children if re.fullmatch(r"fc\d+", n)]
    n_mlp = int(map_kw.get("num_layers", 8))
    if len(fcs) != n_mlp:
        raise CheckpointError(f"{source}: mapping has {len(fcs)} layers but kwargs say num_layers={n_mlp}")
    lr_mult = float(_attr(mapping.children["fc0"], "bias_gain", map_kw.get("lr_multiplier", 0.01)))
    if not _same_number(lr_mult, map_kw.get("lr_multiplier", 0.01)):
        raise CheckpointError(
            f"{source}: mapping records lr_multiplier {lr_mult} but kwargs say {map_kw.get('lr_multiplier', 0.01)}"
        )
    for n in fcs:
        if _attr(mapping.children[n], "activation", "lrelu") != "lrelu":
            raise CheckpointError(
                f"{source}: mapping activation {_attr(mapping.children[n], 'activation')!r} is not supported"
            )
    return n_mlp, lr_mult


def read_nvlabs_pickle(obj: Any, source: str) -> tuple[GeneratorArch, dict[str, torch.Tensor], dict]:
    """Interpret an unpickled NVlabs snapshot dict (``G_ema`` only) → ``(arch, state, info)``:
    ``state`` uses our (= NVlabs) tensor names without the constant ``resample_filter``
    buffers, ``info`` records the flavour. ``CheckpointError`` names what is unsupported."""
    g = validate_snapshot(obj, source)
    state = extract_state(g, source)
    arch = infer_arch(g, state, source)
    info = {"format": arch.extra["source_format"], "w_avg_estimated": False, "module_source_sha256": g.source_sha256}
    return arch, state, info
