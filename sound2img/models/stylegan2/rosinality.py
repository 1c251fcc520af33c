"""rosinality stylegan2-pytorch ``g_ema`` layout ↔ our (NVlabs) tensor names: the
renaming table of docs/formats.md §3.3 (reshapes only, no rescaling or flipping),
hyper-parameter inference from keys (docs/formats.md §3.2) and the ``{"g_ema", "latent_avg"}`` dict."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any

import torch

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2.networks import Generator, GeneratorArch, block_resolutions
from sound2img.models.stylegan2.ops import fir_kernel_2d


def ros_names(arch: GeneratorArch) -> dict[str, str]:
    """Our tensor name → rosinality ``g_ema`` key, for every tensor of ``arch`` (w_avg
    excluded: it is the top-level ``latent_avg``). Bijective by construction."""
    out = {}
    for i in range(arch.n_mlp):
        for p in ("weight", "bias"):
            out[f"mapping.fc{i}.{p}"] = f"style.{i + 1}.{p}"
    out["synthesis.b4.const"] = "input.input"

    def layer(ours: str, ros: str, noise_index: int) -> None:
        out[f"{ours}.weight"] = f"{ros}.conv.weight"
        out[f"{ours}.affine.weight"] = f"{ros}.conv.modulation.weight"
        out[f"{ours}.affine.bias"] = f"{ros}.conv.modulation.bias"
        out[f"{ours}.bias"] = f"{ros}.activate.bias"
        if arch.use_noise:
            out[f"{ours}.noise_strength"] = f"{ros}.noise.weight"
            out[f"{ours}.noise_const"] = f"noises.noise_{noise_index}"

    def torgb(ours: str, ros: str) -> None:
        out[f"{ours}.weight"] = f"{ros}.conv.weight"
        out[f"{ours}.affine.weight"] = f"{ros}.conv.modulation.weight"
        out[f"{ours}.affine.bias"] = f"{ros}.conv.modulation.bias"
        out[f"{ours}.bias"] = f"{ros}.bias"

    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k, r in enumerate(block_resolutions(arch.img_resolution)[1:]):
        layer(f"synthesis.b{r}.conv0", f"convs.{2 * k}", 2 * k + 1)
        layer(f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
        torgb(f"synthesis.b{r}.torgb", f"to_rgbs.{k}")
    return out


def ros_kernel_keys(arch: GeneratorArch) -> list[str]:
    """rosinality's FIR buffers (``[4,4]``, the filter × 4), which have no tensor of ours."""
    keys = []
    for k in range(len(block_resolutions(arch.img_resolution)) - 1):
        keys += [f"convs.{2 * k}.conv.blur.kernel", f"to_rgbs.{k}.upsample.kernel"]
    return keys


def ros_shape(ours: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The rosinality shape of our tensor ``ours`` (a leading batch axis on kernels and
    the constant, ``[1]`` noise strengths, ``[1,1,R,R]`` noise, ``[1,C,1,1]`` ToRGB bias)."""
    leaf = ours.rsplit(".", 1)[-1]
    if leaf == "const" or (leaf == "weight" and len(shape) == 4):
        return (1, *shape)
    if leaf == "noise_strength":
        return (1,)
    if leaf == "noise_const":
        return (1, 1, *shape)
    if ".torgb.bias" in ours:
        return (1, shape[0], 1, 1)
    return tuple(shape)


def infer_ros_arch(g_ema: dict[str, torch.Tensor], source: str) -> GeneratorArch:
    """Hyper-parameters from the keys and shapes of a rosinality ``g_ema`` (docs/formats.md §3.2)."""
    try:
        styles = sorted(int(m.group(1)) for k in g_ema if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
        if not styles or styles != list(range(1, len(styles) + 1)):
            raise CheckpointError(f"{source}: g_ema has no consecutive style.<i>.weight mapping layers")
        w_dim, z_dim = g_ema["style.1.weight"].shape
        rgb = [int(m.group(1)) for k in g_ema if (m := re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k))]
        res = 2 ** (max(rgb) + 3) if rgb else 4
        img_channels = int(g_ema["to_rgb1.conv.weight"].shape[1])
        channels = [int(g_ema["conv1.conv.weight"].shape[1])]
        channels += [int(g_ema[f"convs.{2 * k}.conv.weight"].shape[1]) for k in range(int(math.log2(res)) - 2)]
    except KeyError as exc:
        raise CheckpointError(f"{source}: g_ema lacks key {exc.args[0]!r}") from None
    except (ValueError, IndexError):
        raise CheckpointError(f"{source}: g_ema has malformed mapping or ToRGB tensors") from None
    return GeneratorArch(
        img_resolution=res,
        z_dim=int(z_dim),
        w_dim=int(w_dim),
        n_mlp=len(styles),
        channels=channels,
        img_channels=img_channels,
        demod_eps="rosinality",
        extra={"source_format": "rosinality"},
    )


def from_ros_state(g_ema: dict[str, torch.Tensor], arch: GeneratorArch, source: str) -> dict[str, torch.Tensor]:
    """Rename and reshape a rosinality ``g_ema`` into our names; every key must be
    expected (and present) with the expected shape, or ``CheckpointError`` names it."""
    names = ros_names(arch)
    with torch.device("meta"):  # shapes only
        own = Generator(arch)
    shapes = {k: tuple(v.shape) for k, v in own.state_dict().items()}
    expected = {ros: ours for ours, ros in names.items()}
    kernels = set(ros_kernel_keys(arch))
    for key in g_ema:
        if key not in expected and key not in kernels:
            raise CheckpointError(f"{source}: unexpected key {key!r} in g_ema")
    missing = [k for k in list(expected) + sorted(kernels) if k not in g_ema]
    if missing:
        raise CheckpointError(
            f"{source}: g_ema is missing key {missing[0]!r}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    fir4 = fir_kernel_2d() * 4
    for key in kernels:
        if tuple(g_ema[key].shape) != (4, 4) or not torch.allclose(g_ema[key].float(), fir4, atol=1e-6):
            raise CheckpointError(f"{source}: {key} is not the [1,3,3,1] FIR kernel")
    state = {}
    for ros, ours in expected.items():
        want = ros_shape(ours, shapes[ours])
        t = g_ema[ros]
        if tuple(t.shape) != want:
            raise CheckpointError(f"{source}: key {ros!r} has shape {list(t.shape)}, expected {list(want)}")
        state[ours] = t.float().reshape(shapes[ours])
    return state


def check_ros_args(args: Any, arch: GeneratorArch, source: str) -> None:
    """Cross-check a training checkpoint's ``args`` (argparse.Namespace) with the shapes."""
    if not isinstance(args, argparse.Namespace):
        return
    for name, value in (("size", arch.img_resolution), ("latent", arch.w_dim), ("n_mlp", arch.n_mlp)):
        recorded = getattr(args, name, None)
        if recorded is not None and int(recorded) != value:
            raise CheckpointError(f"{source}: args.{name}={recorded} contradicts the g_ema tensors ({value})")


def to_ros_checkpoint(G: Generator) -> dict[str, Any]:
    """``{"g_ema": state, "latent_avg": [w_dim]}`` as rosinality's ``convert_weight.py``
    writes it. Refuses what rosinality's generator cannot express (docs/formats.md §3.3)."""
    arch = G.arch
    problems = []
    if arch.conv_clamp is not None:
        problems.append(f"conv_clamp={arch.conv_clamp} (use the safetensors format, which keeps it)")
    if arch.img_channels != 3:
        problems.append(f"img_channels={arch.img_channels}")
    if not arch.use_noise:
        problems.append("use_noise=False")
    if not math.isclose(arch.lr_multiplier, 0.01):
        problems.append(f"mapping lr_multiplier={arch.lr_multiplier}")
    if arch.z_dim != arch.w_dim or (arch.layer_features or arch.w_dim) != arch.w_dim:
        problems.append("mapping widths differ from w_dim")
    if problems:
        raise CheckpointError("rosinality format cannot represent this generator: " + "; ".join(problems))
    state = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    g_ema = {
        ros: state[ours].reshape(ros_shape(ours, tuple(state[ours].shape))).clone()
        for ours, ros in ros_names(arch).items()
    }
    fir4 = fir_kernel_2d() * 4
    for key in ros_kernel_keys(arch):
        g_ema[key] = fir4.clone()
    return {"g_ema": g_ema, "latent_avg": state["mapping.w_avg"].clone()}
