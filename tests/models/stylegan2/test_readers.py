"""Readers on checkpoints written here in each public layout from random networks:
rosinality dicts (zip, legacy, train.py-style), NVlabs pickles (ADA nested kwargs, SG3
flat kwargs, protocol 3 with numpy-1 names), our safetensors; strict key/shape checks,
refusals, and the full config-f key sets at 256 and 1024 px (shapes only)."""

from __future__ import annotations

import argparse
import math
import sys

import pytest
import torch

from sound2img.errors import CheckpointError, UserInputError
from sound2img.models.stylegan2 import (
    Generator,
    GeneratorArch,
    channels_for,
    detect_format,
    load_generator,
    save_generator,
)
from sound2img.models.stylegan2.rosinality import from_ros_state, ros_kernel_keys, ros_names, ros_shape

from .conftest import SMALL, small_generator
from .writers import (
    FIR,
    ada_kwargs,
    nvlabs_generator_record,
    nvlabs_to_rosinality,
    sg3_kwargs,
    write_nvlabs_pickle,
)


@pytest.fixture(scope="module")
def G():
    return small_generator(seed=0)


@pytest.fixture(scope="module")
def nv_state(G):
    return {k: v.clone() for k, v in G.state_dict().items()}


@pytest.fixture(scope="module")
def ws(G):
    return G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5)), 0.8)


def kwargs_for(**over):
    return ada_kwargs(
        SMALL["resolution"],
        SMALL["z_dim"],
        SMALL["w_dim"],
        SMALL["n_mlp"],
        SMALL["channel_base"],
        SMALL["channel_max"],
        **over,
    )


def same_images(A, B, ws, tol=1e-4):
    for mode in ("const", "none"):
        diff = (A.synthesis(ws, mode) - B.synthesis(ws, mode)).abs().max().item()
        assert diff <= tol, f"{mode}: max |Δ| {diff}"


# ------------------------------------------------------------------ rosinality
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_rosinality_converted_layout(tmp_path, G, nv_state, ws, zip_format):
    path = tmp_path / "g.pt"
    torch.save(
        {"g_ema": nvlabs_to_rosinality(nv_state), "latent_avg": nv_state["mapping.w_avg"]},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    R = load_generator(path)
    assert R.info["format"] == "rosinality" and not R.info["w_avg_estimated"]
    assert (R.num_ws, R.z_dim, R.w_dim, R.img_resolution) == (G.num_ws, G.z_dim, G.w_dim, G.img_resolution)
    assert R.arch.channels == G.arch.channels and R.arch.n_mlp == SMALL["n_mlp"]
    assert torch.equal(R.w_avg, G.w_avg)
    same_images(R, G, ws)
    assert not R.training and not any(p.requires_grad for p in R.parameters())


def test_rosinality_training_layout_with_namespace(tmp_path, nv_state, G, ws):
    g_ema = nvlabs_to_rosinality(nv_state)
    g = {k: torch.zeros_like(v) for k, v in g_ema.items()}  # the raw training copy differs
    args = argparse.Namespace(size=32, latent=32, n_mlp=3, channel_multiplier=2, lr=0.002, iter=800000)
    path = tmp_path / "100000.pt"
    torch.save(
        {
            "g": g,
            "d": {"convs.0.0.weight": torch.zeros(1)},
            "g_ema": g_ema,
            "g_optim": {"state": {}},
            "d_optim": {"state": {}},
            "args": args,
            "ada_aug_p": 0.0,
        },
        path,
    )
    R = load_generator(path)
    same_images(R, G, ws)  # g_ema was used, not g
    assert R.info["w_avg_estimated"], "no latent_avg in a training checkpoint: the estimate must be recorded"
    z = torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(R.w_avg, G.mapping(z)[:, 0].mean(0), atol=1e-5)

    torch.save({"g_ema": g_ema, "args": argparse.Namespace(size=64, latent=32, n_mlp=3)}, path)
    with pytest.raises(CheckpointError, match="args.size=64"):
        load_generator(path)
    torch.save({"g": g, "args": args}, path)
    with pytest.raises(CheckpointError, match="without 'g_ema'"):
        load_generator(path)


def test_rosinality_bare_g_ema_state_dict(tmp_path, nv_state, G, ws):
    path = tmp_path / "bare.pt"
    torch.save(nvlabs_to_rosinality(nv_state), path)
    same_images(load_generator(path), G, ws)


def test_rosinality_strict_keys_and_shapes(tmp_path, nv_state):
    good = nvlabs_to_rosinality(nv_state)
    path = tmp_path / "bad.pt"
    extra = {**good, "convs.0.conv.extra": torch.zeros(1)}
    torch.save({"g_ema": extra}, path)
    with pytest.raises(CheckpointError, match=r"unexpected key 'convs.0.conv.extra'"):
        load_generator(path)
    missing = {k: v for k, v in good.items() if k != "convs.3.noise.weight"}
    torch.save({"g_ema": missing}, path)
    with pytest.raises(CheckpointError, match=r"missing key 'convs.3.noise.weight'"):
        load_generator(path)
    wrong = {**good, "convs.1.activate.bias": torch.zeros(7)}
    torch.save({"g_ema": wrong}, path)
    with pytest.raises(CheckpointError, match=r"'convs.1.activate.bias' has shape \[7\]"):
        load_generator(path)
    blur = {**good, "convs.0.conv.blur.kernel": torch.ones(4, 4)}
    torch.save({"g_ema": blur}, path)
    with pytest.raises(CheckpointError, match="FIR"):
        load_generator(path)


# ------------------------------------------------------------------ NVlabs
def test_nvlabs_ada_pickle_matches_rosinality_file(tmp_path, nv_state, G, ws):
    """The same random weights as an NVlabs pickle and a rosinality .pt → same images."""
    pkl = write_nvlabs_pickle(tmp_path / "snap.pkl", nv_state, kwargs_for())
    pt = tmp_path / "g.pt"
    torch.save({"g_ema": nvlabs_to_rosinality(nv_state), "latent_avg": nv_state["mapping.w_avg"]}, pt)
    A, R = load_generator(pkl), load_generator(pt)
    assert A.info["format"] == "nvlabs-ada" and A.arch.conv_clamp is None
    same_images(A, R, ws)
    same_images(A, G, ws, tol=1e-6)
    assert torch.allclose(A.mapping(torch.ones(1, G.z_dim), 0.5), R.mapping(torch.ones(1, G.z_dim), 0.5))
    assert "dnnlib" not in sys.modules and "torch_utils" not in sys.modules


def test_nvlabs_protocol3_with_numpy1_names(tmp_path, nv_state, G, ws):
    pkl = write_nvlabs_pickle(tmp_path / "p3.pkl", nv_state, kwargs_for(), protocol=3, numpy1_names=True)
    assert pkl.read_bytes()[:2] == b"\x80\x03"
    same_images(load_generator(pkl), G, ws, tol=1e-6)


def test_nvlabs_conv_clamp_from_layers(tmp_path, nv_state, ws):
    pkl = write_nvlabs_pickle(tmp_path / "c.pkl", nv_state, kwargs_for(conv_clamp=0.5), conv_clamp=0.5)
    C = load_generator(pkl)
    assert C.arch.conv_clamp == 0.5
    unclamped = load_generator(write_nvlabs_pickle(tmp_path / "u.pkl", nv_state, kwargs_for()))
    img = C.synthesis(ws)
    assert (img - unclamped.synthesis(ws)).abs().max() > 1e-2  # the clamp bites at 0.5 here


def test_sg3_flat_kwargs_and_flavour_defaults(tmp_path, nv_state, ws):
    # stylegan3's StyleGAN2 config: flat kwargs; conv_clamp absent means 256 there.
    kw = sg3_kwargs(
        SMALL["resolution"], SMALL["z_dim"], SMALL["w_dim"], SMALL["n_mlp"], SMALL["channel_base"], SMALL["channel_max"]
    )
    S = load_generator(write_nvlabs_pickle(tmp_path / "sg3.pkl", nv_state, kw, conv_clamp=256, flavour="sg3"))
    assert S.info["format"] == "nvlabs-sg3" and S.arch.conv_clamp == 256
    # layers that say None contradict SG3's default of 256: ambiguous, refused
    with pytest.raises(CheckpointError, match="conv_clamp"):
        load_generator(write_nvlabs_pickle(tmp_path / "sg3b.pkl", nv_state, kw, conv_clamp=None, flavour="sg3"))
    # …while the same layers under ADA's nested layout (default None) are fine
    A = load_generator(
        write_nvlabs_pickle(tmp_path / "ada.pkl", nv_state, {k: v for k, v in kwargs_for().items()}, conv_clamp=None)
    )
    assert A.arch.conv_clamp is None


def test_nvlabs_without_noise(tmp_path, nv_state, G, ws):
    state = {k: v for k, v in nv_state.items() if "noise" not in k}
    N = load_generator(write_nvlabs_pickle(tmp_path / "nn.pkl", state, kwargs_for()))
    assert not N.arch.use_noise
    assert torch.allclose(N.synthesis(ws, "const"), G.synthesis(ws, "none"), atol=1e-5)


@pytest.mark.parametrize(
    "case, match",
    [
        ("c_dim", "conditional"),
        ("resnet", "architecture"),
        ("alias_free", "StyleGAN3 alias-free"),
        ("no_G_ema", "no 'G_ema'"),
        ("discriminator", "expected a 'Generator'"),
        ("lr_mismatch", "lr_multiplier"),
        ("filter", "resample_filter"),
    ],
)
def test_nvlabs_refusals(tmp_path, nv_state, case, match):
    from .writers import Persistent, dumps_snapshot

    kw = kwargs_for()
    over = {}
    if case == "c_dim":
        kw["c_dim"] = 10
    elif case == "resnet":
        kw["synthesis_kwargs"]["architecture"] = "resnet"
    elif case == "lr_mismatch":
        kw["mapping_kwargs"]["lr_multiplier"] = 0.1
        over = {}
    elif case == "filter":
        kw["synthesis_kwargs"]["resample_filter"] = [1, 2, 1]
    path = tmp_path / f"{case}.pkl"
    record = nvlabs_generator_record(nv_state, kw, layer_attr_overrides=over)
    if case == "lr_mismatch":  # records keep 0.01, kwargs claim 0.1
        for fc in record.children["mapping"].children.values():
            fc.attrs["bias_gain"] = 0.01
    if case == "alias_free":
        synthesis = Persistent(
            "SynthesisNetwork",
            children=[
                ("input", Persistent("SynthesisInput", [("freqs", torch.zeros(4, 2))])),
                ("L0_36_512", Persistent("SynthesisLayer", [("weight", torch.zeros(2, 2, 3, 3))])),
            ],
        )
        record.children["synthesis"] = synthesis
    if case == "discriminator":
        record.class_name = "Discriminator"
    path.write_bytes(dumps_snapshot(record, drop=("G_ema",) if case == "no_G_ema" else ()))
    with pytest.raises(CheckpointError, match=match):
        load_generator(path)


def test_nvlabs_state_dict_pt_is_refused_with_advice(tmp_path, nv_state):
    path = tmp_path / "G_ema_state_dict.pt"
    torch.save(nv_state, path)
    with pytest.raises(CheckpointError, match="network pickle"):
        load_generator(path)


# ------------------------------------------------------------------ our safetensors
def test_safetensors_round_trip_keeps_clamp_and_provenance(tmp_path, ws):
    G = small_generator(seed=3, conv_clamp=0.5)
    G.info["w_avg_estimated"] = True
    path = save_generator(G, tmp_path / "g.safetensors")
    assert detect_format(path) == "safetensors"
    S = load_generator(path)
    assert S.arch.to_dict() == G.arch.to_dict() and S.arch.conv_clamp == 0.5
    assert S.info["w_avg_estimated"] and S.info["converted_from"] == "random"
    for mode in ("const", "none"):
        assert torch.equal(S.synthesis(ws, mode), G.synthesis(ws, mode))
    with pytest.raises(UserInputError, match="already exists"):
        save_generator(G, path)
    save_generator(G, path, overwrite=True)


def test_safetensors_without_our_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="without sound2img generator metadata"):
        load_generator(path)


# ------------------------------------------------------------------ format detection and garbage
def test_detect_format_and_unrecognised_files(tmp_path, nv_state):
    p = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, p)
    assert detect_format(p) == "torch"
    torch.save({"a": torch.zeros(1)}, p, _use_new_zipfile_serialization=False)
    assert detect_format(p) == "torch"
    assert detect_format(write_nvlabs_pickle(tmp_path / "n.pkl", nv_state, kwargs_for())) == "pickle"
    for name, data in [
        ("garbage.pkl", b"this is not a checkpoint\n" * 10),
        ("empty.pt", b""),
        ("trunc.pkl", b"\x80\x04\x95\x00\x00"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_generator(tmp_path / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing.pkl")
    torch.save([1, 2, 3], p)
    with pytest.raises(CheckpointError, match="not a rosinality StyleGAN2 checkpoint"):
        load_generator(p)


# ------------------------------------------------------------------ full-size key sets (shapes only)
def expected_ros_shapes(res: int, m: int = 2) -> dict[str, tuple]:
    """docs/formats.md §3.2 written out: rosinality config-f keys and shapes."""
    C = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}
    S, out = 512, {}
    for i in range(1, 9):
        out[f"style.{i}.weight"], out[f"style.{i}.bias"] = (S, S), (S,)
    out["input.input"] = (1, C[4], 4, 4)
    out.update(
        {
            "conv1.conv.weight": (1, C[4], C[4], 3, 3),
            "conv1.conv.modulation.weight": (C[4], S),
            "conv1.conv.modulation.bias": (C[4],),
            "conv1.noise.weight": (1,),
            "conv1.activate.bias": (C[4],),
            "to_rgb1.conv.weight": (1, 3, C[4], 1, 1),
            "to_rgb1.conv.modulation.weight": (C[4], S),
            "to_rgb1.conv.modulation.bias": (C[4],),
            "to_rgb1.bias": (1, 3, 1, 1),
        }
    )
    L2 = int(math.log2(res))
    for k in range(L2 - 2):
        r = 2 ** (k + 3)
        for j, cin in ((2 * k, C[r // 2]), (2 * k + 1, C[r])):
            out.update(
                {
                    f"convs.{j}.conv.weight": (1, C[r], cin, 3, 3),
                    f"convs.{j}.conv.modulation.weight": (cin, S),
                    f"convs.{j}.conv.modulation.bias": (cin,),
                    f"convs.{j}.noise.weight": (1,),
                    f"convs.{j}.activate.bias": (C[r],),
                }
            )
        out[f"convs.{2 * k}.conv.blur.kernel"] = (4, 4)
        out.update(
            {
                f"to_rgbs.{k}.conv.weight": (1, 3, C[r], 1, 1),
                f"to_rgbs.{k}.conv.modulation.weight": (C[r], S),
                f"to_rgbs.{k}.conv.modulation.bias": (C[r],),
                f"to_rgbs.{k}.bias": (1, 3, 1, 1),
                f"to_rgbs.{k}.upsample.kernel": (4, 4),
            }
        )
    for i in range(2 * L2 - 3):
        R = 2 ** ((i + 5) // 2)
        out[f"noises.noise_{i}"] = (1, 1, R, R)
    return out


@pytest.mark.parametrize("res, n_params, n_buffers", [(256, 110, 34), (1024, 138, 44)])
def test_config_f_key_sets_are_complete_and_bijective(res, n_params, n_buffers):
    arch = GeneratorArch(res, 512, 512, 8, channels_for(res, 32768, 512), demod_eps="rosinality")
    with torch.device("meta"):
        G = Generator(arch)
    ours = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    # NVlabs names: ours + the constant resample_filter buffers (docs/formats.md §4.4 counts)
    L2 = int(math.log2(res))
    filters = ["synthesis.b4.resample_filter", "synthesis.b4.conv1.resample_filter"] + [
        f"synthesis.b{2**i}.{n}"
        for i in range(3, L2 + 1)
        for n in ("resample_filter", "conv0.resample_filter", "conv1.resample_filter")
    ]
    n_buf_ours = sum(1 for k in ours if k.endswith(("noise_const", "w_avg")))
    assert len(ours) - n_buf_ours == n_params and n_buf_ours + len(filters) == n_buffers
    assert sum(v.numel() for v in G.parameters()) == pytest.approx({256: 30.0e6, 1024: 30.4e6}[res], rel=0.01)

    expected = expected_ros_shapes(res)
    names = ros_names(arch)
    assert len(set(names.values())) == len(names), "mapping must be injective"
    mapped = {names[k]: ros_shape(k, s) for k, s in ours.items() if k != "mapping.w_avg"}
    mapped.update({k: (4, 4) for k in ros_kernel_keys(arch)})
    assert mapped == expected

    # and the reader accepts exactly that key set and returns exactly our names and shapes
    g_ema = {
        k: (FIR * 4 if s == (4, 4) and "kernel" in k else torch.empty(s, device="meta")) for k, s in expected.items()
    }
    state = from_ros_state(g_ema, arch, "config-f")
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: s for k, s in ours.items() if k != "mapping.w_avg"}


def test_nvlabs_missing_or_misshapen_tensor_is_named(tmp_path, nv_state):
    from .writers import dumps_snapshot

    record = nvlabs_generator_record(nv_state, kwargs_for())
    del record.children["synthesis"].children["b16"].children["torgb"].params["bias"]
    path = tmp_path / "missing.pkl"
    path.write_bytes(dumps_snapshot(record))
    with pytest.raises(CheckpointError, match=r"missing key 'synthesis.b16.torgb.bias'"):
        load_generator(path)
    record = nvlabs_generator_record(nv_state, kwargs_for())
    record.children["synthesis"].children["b8"].children["conv1"].params["bias"] = torch.zeros(5)
    path.write_bytes(dumps_snapshot(record))
    with pytest.raises(CheckpointError, match=r"'synthesis.b8.conv1.bias' has shape \[5\]"):
        load_generator(path, device="auto")
