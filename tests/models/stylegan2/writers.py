"""Test-side writers of the public StyleGAN2 checkpoint layouts, independent of the
library's own renaming code: an NVlabs network pickle emitted with the real class paths
(``torch_utils.persistence._reconstruct_persistent_obj`` records, ``dnnlib.util.EasyDict``
kwargs, numpy float64 gains) and the rosinality ``g_ema`` renaming of docs/formats.md §3.3."""

from __future__ import annotations

import contextlib
import math
import pickle
import re
import sys
import types
from collections import OrderedDict

import numpy as np
import torch

FIR = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


# --------------------------------------------------------------------------- NVlabs pickle
def _make_fake_modules():
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called: only its name is pickled
        raise AssertionError("writer stand-in called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict
    return {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }


@contextlib.contextmanager
def fake_nvlabs_modules():
    """Register stand-in ``torch_utils.persistence`` / ``dnnlib.util`` modules while
    pickling, so that pickle writes their real global names; removed afterwards."""
    mods = _make_fake_modules()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield mods
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Persistent:
    """Pickles as ``_reconstruct_persistent_obj(meta)``, as NVlabs' persistence does."""

    def __init__(
        self,
        class_name,
        params=(),
        buffers=(),
        children=(),
        attrs=None,
        init_args=(),
        init_kwargs=None,
        module_src="# module source placeholder\n",
    ):
        self.class_name, self.module_src = class_name, module_src
        self.params, self.buffers = OrderedDict(params), OrderedDict(buffers)
        self.children, self.attrs = OrderedDict(children), dict(attrs or {})
        self.init_args, self.init_kwargs = tuple(init_args), dict(init_kwargs or {})

    def __reduce__(self):
        mods = sys.modules
        EasyDict = mods["dnnlib.util"].EasyDict

        def easy(v):
            return EasyDict({k: easy(x) for k, x in v.items()}) if isinstance(v, dict) else v

        state = {
            "training": False,
            "_parameters": OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in self.params.items()),
            "_buffers": OrderedDict(self.buffers),
            "_non_persistent_buffers_set": set(),
            "_backward_pre_hooks": OrderedDict(),
            "_backward_hooks": OrderedDict(),
            "_forward_hooks": OrderedDict(),
            "_forward_pre_hooks": OrderedDict(),
            "_state_dict_hooks": OrderedDict(),
            "_load_state_dict_pre_hooks": OrderedDict(),
            "_modules": OrderedDict(self.children),
            **self.attrs,
            "_init_args": self.init_args,
            "_init_kwargs": easy(self.init_kwargs),
        }
        meta = {
            "type": "class",
            "version": 6,
            "module_src": self.module_src,
            "class_name": self.class_name,
            "state": state,
        }
        return (mods["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,))


def nvlabs_generator_record(state: dict, kwargs: dict, conv_clamp=None, flavour="ada", layer_attr_overrides=None):
    """A ``G_ema`` record tree from an NVlabs-named state dict (without the
    ``resample_filter`` buffers, which are added here) and the Generator init kwargs."""
    res, w_dim, img_channels = kwargs["img_resolution"], kwargs["w_dim"], kwargs["img_channels"]
    lr_mult = (kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01)
    over = layer_attr_overrides or {}
    fcs = sorted({int(m.group(1)) for k in state if (m := re.match(r"mapping\.fc(\d+)\.", k))})

    def fc(prefix, lr, act, bias_init=None):
        w = state[f"{prefix}.weight"]
        kw = {"activation": act, "lr_multiplier": lr} if bias_init is None else {"bias_init": bias_init}
        return Persistent(
            "FullyConnectedLayer",
            [("weight", w), ("bias", state[f"{prefix}.bias"])],
            attrs={"activation": act, "weight_gain": np.float64(lr / np.sqrt(w.shape[1])), "bias_gain": lr},
            init_args=(w.shape[1], w.shape[0]),
            init_kwargs=kw,
        )

    mapping = Persistent(
        "MappingNetwork",
        children=[(f"fc{i}", fc(f"mapping.fc{i}", lr_mult, "lrelu")) for i in fcs],
        buffers=[("w_avg", state["mapping.w_avg"])],
        attrs={
            "z_dim": kwargs["z_dim"],
            "c_dim": 0,
            "w_dim": w_dim,
            "num_ws": 2 * int(math.log2(res)) - 2,
            "num_layers": len(fcs),
            "w_avg_beta": 0.995 if flavour == "ada" else 0.998,
        },
        init_kwargs={
            "z_dim": kwargs["z_dim"],
            "c_dim": 0,
            "w_dim": w_dim,
            "num_ws": 2 * int(math.log2(res)) - 2,
            **(kwargs.get("mapping_kwargs") or {}),
        },
    )

    def layer(prefix, r, up):
        w = state[f"{prefix}.weight"]
        params = [("weight", w)]
        buffers = [("resample_filter", FIR.clone())]
        if f"{prefix}.noise_strength" in state:
            params.append(("noise_strength", state[f"{prefix}.noise_strength"]))
            buffers.insert(0, ("noise_const", state[f"{prefix}.noise_const"]))
        params.append(("bias", state[f"{prefix}.bias"]))
        attrs = {
            "resolution": r,
            "up": 2 if up else 1,
            "use_noise": f"{prefix}.noise_strength" in state,
            "activation": "lrelu",
            "conv_clamp": conv_clamp,
            "padding": 1,
            "act_gain": np.float64(np.sqrt(2)),
            **over.get(prefix, {}),
        }
        return Persistent(
            "SynthesisLayer",
            params,
            buffers,
            [("affine", fc(f"{prefix}.affine", 1, "linear", bias_init=1))],
            attrs,
            init_args=(w.shape[1], w.shape[0]),
            init_kwargs={
                "w_dim": w_dim,
                "resolution": r,
                "up": 2 if up else 1,
                "resample_filter": [1, 3, 3, 1],
                "conv_clamp": conv_clamp,
            },
        )

    def torgb(prefix):
        w = state[f"{prefix}.weight"]
        return Persistent(
            "ToRGBLayer",
            [("weight", w), ("bias", state[f"{prefix}.bias"])],
            children=[("affine", fc(f"{prefix}.affine", 1, "linear", bias_init=1))],
            attrs={
                "conv_clamp": conv_clamp,
                "weight_gain": np.float64(1 / np.sqrt(w.shape[1])),
                **over.get(prefix, {}),
            },
            init_args=(w.shape[1], w.shape[0]),
            init_kwargs={"w_dim": w_dim, "conv_clamp": conv_clamp},
        )

    blocks, r = [], 4
    while r <= res:
        p = f"synthesis.b{r}"
        params = [("const", state[f"{p}.const"])] if r == 4 else []
        children = [] if r == 4 else [("conv0", layer(f"{p}.conv0", r, True))]
        children += [("conv1", layer(f"{p}.conv1", r, False)), ("torgb", torgb(f"{p}.torgb"))]
        attrs = {
            "in_channels": 0 if r == 4 else state[f"{p}.conv0.weight"].shape[1],
            "w_dim": w_dim,
            "resolution": r,
            "img_channels": img_channels,
            "is_last": r == res,
            "architecture": "skip",
            "use_fp16": False,
            "channels_last": False,
            "num_conv": 1 if r == 4 else 2,
            "num_torgb": 1,
            **over.get(p, {}),
        }
        blocks.append(
            (f"b{r}", Persistent("SynthesisBlock", params, [("resample_filter", FIR.clone())], children, attrs))
        )
        r *= 2
    synthesis = Persistent(
        "SynthesisNetwork",
        children=blocks,
        attrs={
            "w_dim": w_dim,
            "img_resolution": res,
            "img_channels": img_channels,
            "block_resolutions": [2**i for i in range(2, int(math.log2(res)) + 1)],
            "num_ws": 2 * int(math.log2(res)) - 2,
        },
    )
    return Persistent(
        "Generator",
        children=[("synthesis", synthesis), ("mapping", mapping)],
        attrs={
            "z_dim": kwargs["z_dim"],
            "c_dim": kwargs.get("c_dim", 0),
            "w_dim": w_dim,
            "img_resolution": res,
            "img_channels": img_channels,
            "num_ws": 2 * int(math.log2(res)) - 2,
        },
        init_kwargs=kwargs,
    )


def ada_kwargs(res, z_dim, w_dim, n_mlp, channel_base, channel_max, conv_clamp=None, **mapping):
    return {
        "z_dim": z_dim,
        "w_dim": w_dim,
        "mapping_kwargs": {"num_layers": n_mlp, **mapping},
        "synthesis_kwargs": {
            "channel_base": channel_base,
            "channel_max": channel_max,
            "num_fp16_res": 4,
            "conv_clamp": conv_clamp,
        },
        "c_dim": 0,
        "img_resolution": res,
        "img_channels": 3,
    }


def sg3_kwargs(res, z_dim, w_dim, n_mlp, channel_base, channel_max, **flat):
    """stylegan3's networks_stylegan2 layout: synthesis kwargs flat at the top level."""
    return {
        "z_dim": z_dim,
        "c_dim": 0,
        "w_dim": w_dim,
        "img_resolution": res,
        "img_channels": 3,
        "mapping_kwargs": {"num_layers": n_mlp},
        "channel_base": channel_base,
        "channel_max": channel_max,
        "num_fp16_res": 4,
        "fused_modconv_default": "inference_only",
        **flat,
    }


def dumps_snapshot(G_ema, protocol=4, extra=None, drop=()):
    """Pickle bytes of a training snapshot dict (``G``, ``D``, ``G_ema``, …)."""
    with fake_nvlabs_modules():
        D = Persistent("Discriminator", [("b4.fc.weight", torch.zeros(2, 2))])
        snap = {
            "G": G_ema,
            "D": D,
            "G_ema": G_ema,
            "augment_pipe": None,
            "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": 32},
        }
        snap.update(extra or {})
        for k in drop:
            snap.pop(k)
        return pickle.dumps(snap, protocol=protocol)


def write_nvlabs_pickle(path, state, kwargs, conv_clamp=None, flavour="ada", protocol=4, numpy1_names=False, **kw):
    data = dumps_snapshot(nvlabs_generator_record(state, kwargs, conv_clamp, flavour, **kw), protocol)
    if numpy1_names:  # what numpy 1.x wrote (text GLOBAL opcodes at protocol < 4)
        assert protocol < 4
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray\nscalar" in data
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- rosinality
def nvlabs_to_rosinality(state: dict) -> dict:
    """docs/formats.md §3.3, written out independently of the library: NVlabs names → ``g_ema`` keys."""
    out = {}
    for name, t in state.items():
        if name == "mapping.w_avg":
            continue
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            out[f"style.{int(m.group(1)) + 1}.{m.group(2)}"] = t.clone()
            continue
        if name == "synthesis.b4.const":
            out["input.input"] = t[None].clone()
            continue
        m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb)\.(.+)", name)
        assert m, name
        r, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
        k = int(math.log2(r)) - 3
        if layer == "torgb":
            pre = "to_rgb1" if r == 4 else f"to_rgbs.{k}"
            key = {
                "weight": f"{pre}.conv.weight",
                "affine.weight": f"{pre}.conv.modulation.weight",
                "affine.bias": f"{pre}.conv.modulation.bias",
                "bias": f"{pre}.bias",
            }[leaf]
            val = t[None] if leaf == "weight" else (t.reshape(1, -1, 1, 1) if leaf == "bias" else t)
            out[key] = val.clone()
            continue
        idx = 0 if r == 4 else (2 * k if layer == "conv0" else 2 * k + 1)
        pre = "conv1" if r == 4 else f"convs.{idx}"
        noise_i = 0 if r == 4 else idx + 1
        if leaf == "noise_const":
            out[f"noises.noise_{noise_i}"] = t[None, None].clone()
            continue
        key = {
            "weight": f"{pre}.conv.weight",
            "affine.weight": f"{pre}.conv.modulation.weight",
            "affine.bias": f"{pre}.conv.modulation.bias",
            "noise_strength": f"{pre}.noise.weight",
            "bias": f"{pre}.activate.bias",
        }[leaf]
        val = t[None] if leaf == "weight" else (t.reshape(1) if leaf == "noise_strength" else t)
        out[key] = val.clone()
        if layer == "conv0" and leaf == "weight":
            out[f"{pre}.conv.blur.kernel"] = FIR * 4
            out[f"to_rgbs.{k}.upsample.kernel"] = FIR * 4
    return out
