"""The converter (NVlabs → rosinality → load gives the same images; what rosinality
cannot hold is refused, safetensors keeps it), scripts/convert_generator.py and
scripts/generate.py end to end, and the generator config files."""

from __future__ import annotations

import json
import runpy

import numpy as np
import pytest
import torch
import yaml

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2 import build_generator, convert_generator, load_generator, load_latents, save_generator

from .conftest import PROJECT_ROOT, SMALL, small_generator
from .writers import ada_kwargs, write_nvlabs_pickle

SCRIPTS = PROJECT_ROOT / "scripts"
CONFIGS = PROJECT_ROOT / "configs"


def script_main(name):
    return runpy.run_path(str(SCRIPTS / name), run_name="not_main")["main"]


@pytest.fixture(scope="module")
def nv_pickle(tmp_path_factory):
    G = small_generator(seed=7)
    kw = ada_kwargs(
        SMALL["resolution"], SMALL["z_dim"], SMALL["w_dim"], SMALL["n_mlp"], SMALL["channel_base"], SMALL["channel_max"]
    )
    return write_nvlabs_pickle(tmp_path_factory.mktemp("nv") / "snap.pkl", G.state_dict(), kw)


def test_nvlabs_to_rosinality_round_trip(tmp_path, nv_pickle):
    A = load_generator(nv_pickle)
    out = convert_generator(nv_pickle, tmp_path / "g.pt")
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg"} and "style.1.weight" in ckpt["g_ema"]
    R = load_generator(out)
    assert R.info["format"] == "rosinality" and torch.equal(R.w_avg, A.w_avg)
    ws = A.mapping(torch.randn(3, A.z_dim), 0.7)
    for mode in ("const", "none"):
        assert (R.synthesis(ws, mode) - A.synthesis(ws, mode)).abs().max() <= 1e-4
    S = load_generator(convert_generator(out, tmp_path / "g.safetensors"))  # rosinality → ours
    assert torch.equal(S.synthesis(ws), R.synthesis(ws))
    with pytest.raises(Exception, match="already exists"):
        convert_generator(nv_pickle, out)


def test_rosinality_refuses_what_it_cannot_represent(tmp_path):
    G = build_generator(16, z_dim=8, w_dim=8, n_mlp=2, channel_base=64, channel_max=8, conv_clamp=256)
    with pytest.raises(CheckpointError, match="conv_clamp=256"):
        save_generator(G, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
    assert load_generator(save_generator(G, tmp_path / "c.safetensors")).arch.conv_clamp == 256
    G4 = build_generator(16, z_dim=8, w_dim=8, n_mlp=2, channel_base=64, channel_max=8, img_channels=4)
    with pytest.raises(CheckpointError, match="img_channels=4"):
        save_generator(G4, tmp_path / "four.pt")
    assert load_generator(save_generator(G4, tmp_path / "four.safetensors"))(torch.randn(1, 8)).shape[1] == 4


def test_convert_script(tmp_path, nv_pickle, capsys):
    main = script_main("convert_generator.py")
    out = tmp_path / "conv.safetensors"
    assert main([str(nv_pickle), str(out)]) == 0
    assert load_generator(out).info["converted_from"] == "nvlabs-ada"
    assert main([str(nv_pickle), str(out)]) == 2  # exists, no --overwrite
    assert main([str(nv_pickle), str(out), "--overwrite"]) == 0
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a network\n")
    capsys.readouterr()
    assert main([str(garbage), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "garbage.pkl" in err
    assert main(["--cfg", "job", str(nv_pickle), str(out)]) == 0


def test_generate_script_end_to_end(tmp_path, capsys):
    G = build_generator(16, z_dim=8, w_dim=8, n_mlp=2, channel_base=64, channel_max=8, seed=1)
    gen = save_generator(G, tmp_path / "g.safetensors")
    out = tmp_path / "out"
    main = script_main("generate.py")
    argv = ["--generator", str(gen), "--seeds", "0-2,5", "--truncation", "0.5", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["contact_sheet.png", "generate.json"] + [
        f"seed{s:04d}.{e}" for s in (0, 1, 2, 5) for e in ("npy", "png")
    ]
    meta = json.loads((out / "generate.json").read_text())
    assert meta["seeds"] == [0, 1, 2, 5] and meta["truncation"] == 0.5
    ws = load_latents(out / "seed0005.npy", G.num_ws, G.w_dim)
    z = torch.randn(1, 8, generator=torch.Generator().manual_seed(5))  # manipulate.py's seed → z
    assert torch.allclose(ws, G.mapping(z, 0.5), atol=1e-6)
    from PIL import Image

    img = np.asarray(Image.open(out / "seed0005.png"))
    ref = ((G.synthesis(ws).clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).numpy()
    assert img.shape == (16, 16, 3) and np.abs(img - ref).max() <= 1
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width >= 4 * 16 and sheet.height > 16

    capsys.readouterr()
    assert main(argv) == 2, "an existing output directory is not overwritten without --overwrite"
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    for bad in (tmp_path / "missing.pkl", tmp_path / "g.txt"):
        if bad.suffix == ".txt":
            bad.write_text("garbage")
        capsys.readouterr()
        assert main(["--generator", str(bad), "--out", str(tmp_path / "o2")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and bad.name in err
    assert not (tmp_path / "o2").exists()
    assert main(["--seeds", "3-1", "--out", str(tmp_path / "o3"), "generator=tiny"]) == 2


def test_generate_accepts_preset_tiny_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    assert script_main("generate.py")(["--seeds", "0-1", "--out", str(out), "--device", "cpu", "preset=tiny"]) == 0
    meta = json.loads((out / "generate.json").read_text())
    assert meta["seeds"] == [0, 1] and (out / "seed0001.png").is_file()


def test_generate_cfg_job_prints_resolved_options(capsys):
    main = script_main("generate.py")
    assert main(["--cfg", "job", "generator=tiny", "--seeds", "4", "--noise-mode", "none"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["seeds"] == "4" and cfg["generator"]["noise_mode"] == "none" and cfg["generator"]["name"] == "tiny"


GENERATOR_CONFIGS = sorted(p.stem for p in (CONFIGS / "generator").glob("*.yaml"))


@pytest.mark.parametrize("option", GENERATOR_CONFIGS)
def test_generator_configs(option):
    from sound2img.weights import get_entry

    cfg = yaml.safe_load((CONFIGS / "generator" / f"{option}.yaml").read_text())
    assert set(cfg) == {"name", "path", "truncation", "noise_mode", "tiny", "faces", "inversion"}
    assert isinstance(cfg["faces"], bool)
    assert cfg["inversion"]["method"] in ("projector", "e4e", "psp")
    assert cfg["path"] is None and cfg["noise_mode"] == "const" and 0 < cfg["truncation"] <= 1
    if option == "tiny":
        G = build_generator(**cfg["tiny"])
        ws = G.mapping(torch.randn(1, G.z_dim)).requires_grad_(True)
        G.synthesis(ws).sum().backward()
        assert ws.grad is not None and G.num_ws == 8
    else:
        assert cfg["tiny"] is None
        assert get_entry(cfg["name"]).format in ("rosinality_pt", "nvlabs_pkl")


def test_expected_generator_configs_exist():
    assert {"lhq256", "ffhq1024", "afhqdog512", "metfaces1024", "lsun_church256", "tiny"} <= set(GENERATOR_CONFIGS)
    names = {o: yaml.safe_load((CONFIGS / "generator" / f"{o}.yaml").read_text())["name"] for o in GENERATOR_CONFIGS}
    assert names["lhq256"] == "soundclip_landscape" and names["ffhq1024"] == "rosinality_ffhq1024"
