"""End to end with ``preset=tiny`` (small random networks, a tone made on the spot):
what an edit writes, the mixing modes, flags vs overrides, overwrite and interrupt
safety. Not results: the networks are untrained."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from sound2img import factory
from sound2img.cli import to_object
from sound2img.errors import UserInputError
from sound2img.manipulation import command, run
from sound2img.manipulation.outputs import EDIT_FILES
from sound2img.models.stylegan2 import load_latents

TINY = ["preset=tiny", "--steps", "3", "manipulate.strip_every=1", "progress=false", "--device", "cpu"]


def cfg_for(tmp_path, *argv):
    """The config manipulate.py runs with (composed from its flags, then its dataclasses)."""
    cfg, show = command.compose_from_args([*TINY, "--out", str(tmp_path / "out"), *argv])
    assert not show
    return to_object(cfg)


def latents(path):
    return torch.load(path, weights_only=True)


def test_single_edit_writes_every_file(tmp_path):
    cfg = cfg_for(tmp_path, "--audio", "tone:440", "--seed", "3")
    dirs = run.run_edit(cfg)
    assert dirs == [tmp_path / "out"]
    d = dirs[0]
    assert sorted(p.name for p in d.iterdir()) == sorted(EDIT_FILES)
    m = json.loads((d / "metrics.json").read_text())
    assert m["config"]["manipulate"]["steps"] == 3 and m["config"]["edit"]["audio"] == ["tone:440"]
    assert m["edit"]["source"] == {"kind": "seed", "seed": 3, "truncation": 0.7}
    assert m["edit"]["target"]["kind"] == "sound"
    assert set(m["losses"]) == {"total", "d_cos", "sim", "id"} and all(len(v) == 3 for v in m["losses"].values())
    assert -1 <= m["final_cosine"] <= 1 and m["device"] == "cpu"
    assert m["config"]["manipulate"]["precision"] == "auto" and m["precision"] == "fp32"  # the suite pins auto
    assert {"torch", "numpy", "open_clip", "sound2img"} <= set(m["versions"])
    assert m["strip_steps"] == [0, 1, 2, 3] and m["timings"]["step_s_mean"] > 0
    from PIL import Image

    src = Image.open(d / "source.png")
    strip = Image.open(d / "strip.png")
    assert strip.size[0] > 3 * src.size[0] and strip.size[1] == src.size[1]
    num_ws, w_dim = len(m["layer_mask"]), m["config"]["generator"]["tiny"]["w_dim"]
    ws = load_latents(d / "result_latent.pt", num_ws, w_dim)
    assert ws.shape == (1, num_ws, w_dim) and torch.equal(ws, latents(d / "result_latent.pt"))
    # deterministic: the same command gives the same latent, whatever the global RNG did
    torch.manual_seed(1234)
    again = run.run_edit(cfg_for(tmp_path / "again", "--audio", "tone:440", "--seed", "3"))[0]
    assert torch.equal(latents(again / "result_latent.pt"), latents(d / "result_latent.pt"))


def test_several_edits_batched_equal_one_at_a_time(tmp_path):
    argv = ["--audio", "tone:440", "--text", "a red sky", "--seed", "1", "--seed", "2"]
    batched = run.run_edit(cfg_for(tmp_path / "b", *argv))
    single = run.run_edit(cfg_for(tmp_path / "s", *argv, "--batch-size", "1"))
    assert [d.name for d in batched] == [
        "00_seed1_sound-tone440",
        "01_seed1_text-a-red-sky",
        "02_seed2_sound-tone440",
        "03_seed2_text-a-red-sky",
    ]
    for b, s in zip(batched, single):
        assert all((b / f).is_file() for f in EDIT_FILES)
        assert (latents(b / "result_latent.pt") - latents(s / "result_latent.pt")).abs().max() <= 1e-5
        assert json.loads((b / "metrics.json").read_text())["timings"]["batch_size"] == 4


def test_latent_mix_weights_reach_the_latent(tmp_path):
    d = run.run_edit(
        cfg_for(tmp_path, "--audio", "tone:440", "--text", "fire", "--mode", "latent_mix", "--mix-weight", "0.25")
    )[0]
    w_mix, w_a, w_t = (latents(d / f) for f in ("result_latent.pt", "sound_latent.pt", "text_latent.pt"))
    assert not torch.allclose(w_a, w_t)
    assert torch.allclose(w_mix, 0.75 * w_a + 0.25 * w_t, atol=1e-6)
    m = json.loads((d / "metrics.json").read_text())
    assert m["mix"]["alpha"] == 0.25 and set(m["final_cosine"]) == {"sound", "text"}
    assert set(m["runs"]) == {"sound", "text"}


def test_layer_mix_takes_coarse_rows_from_the_sound(tmp_path):
    d = run.run_edit(
        cfg_for(tmp_path, "--audio", "tone:440", "--text", "fire", "--mode", "layer_mix", "edit.layer_split=3")
    )[0]
    w_mix, w_a, w_t = (latents(d / f) for f in ("result_latent.pt", "sound_latent.pt", "text_latent.pt"))
    assert torch.equal(w_mix[:, :3], w_a[:, :3]) and torch.equal(w_mix[:, 3:], w_t[:, 3:])


def test_embedding_mix_and_interpolation_targets(tmp_path):
    cfg = cfg_for(
        tmp_path,
        "--audio",
        "tone:440",
        "--audio",
        "tone:2000",
        "--text",
        "fire",
        "--mode",
        "embedding_mix",
        "--mix-weight",
        "0.4",
    )
    o = run.check_options(cfg)
    encoder, frontend = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, "cpu")
    nets = {"clip": factory.build_clip_from_cfg(cfg.clip), "encoder": encoder, "frontend": frontend}
    parts = run.resolve_targets(replace(o, edit=replace(o.edit, mode="separate")), **nets)
    (mix,) = run.resolve_targets(o, **nets)
    expected = F.normalize(0.3 * parts[0].emb + 0.3 * parts[1].emb + 0.4 * parts[2].emb, dim=-1)
    assert torch.allclose(mix.emb, expected, atol=1e-6) and mix.info["weights"] == pytest.approx([0.3, 0.3, 0.4])

    o2 = replace(o, edit=replace(o.edit, mode="interpolate", text=[], interp_steps=4))
    path = run.resolve_targets(o2, **nets)
    assert [t.label for t in path] == ["interp00", "interp01", "interp02", "interp03"]
    assert torch.allclose(path[0].emb, parts[0].emb, atol=1e-6) and torch.allclose(
        path[-1].emb, parts[1].emb, atol=1e-6
    )


def test_interpolate_mode_writes_one_edit_per_point(tmp_path):
    dirs = run.run_edit(
        cfg_for(tmp_path, "--audio", "tone:440", "--audio", "tone:2000", "--mode", "interpolate", "edit.interp_steps=3")
    )
    assert [d.name for d in dirs] == ["00_seed0_interp00", "01_seed0_interp01", "02_seed0_interp02"]
    ts = [json.loads((d / "metrics.json").read_text())["edit"]["target"]["t"] for d in dirs]
    assert ts == [0.0, 0.5, 1.0]


def test_latent_file_and_mean_sources(tmp_path):
    cfg = cfg_for(tmp_path, "--text", "fire", "--mean-latent")
    o = run.check_options(cfg)
    G = factory.build_generator_from_cfg(cfg.generator)
    (mean,) = run.resolve_sources(o, G)
    assert torch.equal(mean.ws[0, 0], G.w_avg) and mean.ws.shape == (1, G.num_ws, G.w_dim)
    f = tmp_path / "two.pt"
    torch.save(torch.randn(2, G.num_ws, G.w_dim), f)
    srcs = run.resolve_sources(replace(o, edit=replace(o.edit, latents=[str(f)])), G)
    assert [s.label for s in srcs] == ["two-0", "two-1"]
    assert torch.equal(torch.cat([s.ws for s in srcs]), torch.load(f, weights_only=True))


def test_flags_win_over_overrides_and_model_choice(tmp_path):
    cfg, show = command.compose_from_args(
        [
            "--steps",
            "7",
            "manipulate.steps=5",
            "--cfg",
            "job",
            "preset=tiny",
            "--lambda-sim",
            "0.5",
            "--seed",
            "4",
            "--seed",
            "9",
            "--overwrite",
        ]
    )
    assert show and cfg.manipulate.steps == 7 and cfg.manipulate.lambda_sim == 0.5
    assert list(cfg.edit.seeds) == [4, 9] and cfg.overwrite is True
    ckpt = tmp_path / "g.pt"
    ckpt.write_bytes(b"x")
    cfg, _ = command.compose_from_args(["--generator", str(ckpt), "--latent", "a.pt"])
    assert (
        cfg.generator.path == str(ckpt.resolve()) and list(cfg.edit.seeds) == [] and list(cfg.edit.latents) == ["a.pt"]
    )
    cfg, _ = command.compose_from_args(["--generator", "soundclip_landscape", "--encoder", "tiny"])
    assert cfg.generator.path == "soundclip_landscape" and cfg.encoder.arch == "tiny_cnn"
    for bad, match in (
        (["--generator", "nosuchgen"], "unknown generator"),
        (["--generator", "x/none.pt"], "no such file"),
        (["--encoder", "soundclip_landscape"], "not an audio encoder"),
        (["--bogus"], "unrecognised"),
    ):
        with pytest.raises(UserInputError, match=match):
            command.compose_from_args(bad)


def test_cfg_job_prints_the_config(capsys):
    assert command.main(["--cfg", "job", "--audio", "tone:440", "preset=tiny"]) == 0
    out = capsys.readouterr().out
    assert "tone:440" in out and "lambda_sim:" in out and "generator:" in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--steps", "0"], "manipulate.steps must be >= 1"),
        (["--mix-weight", "2"], "edit.mix_weight must be <= 1"),
        (["--mode", "latent_mix"], "exactly one --audio and one --text"),
        (["--mode", "interpolate", "--text", "x"], "exactly two --audio"),
        (["--mode", "blend"], "edit.mode must be one of"),
        (["--text", " "], "prompt is empty"),
        (["manipulate.latent_term=l1"], "latent_term"),
        (["manipulate.precision=fp16"], "manipulate.precision must be one of auto, fp32, bf16"),
        (["--lr", "nan"], "manipulate.lr must be a finite number"),
        (["edit.interp_steps=2.5"], "edit.interp_steps must be an integer"),
        (["--text", "x", "--mode", "layer_mix", "edit.layer_split=99"], "beyond this generator's 8 W\\+ rows"),
    ],
)
def test_bad_options_are_refused_before_work(tmp_path, argv, match):
    # a key's own range fails at composition (sound2img/config.py), a rule across keys in run_edit
    with pytest.raises(UserInputError, match=match):
        run.run_edit(cfg_for(tmp_path, "--audio", "tone:440", *argv))
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path):
    argv = ["--text", "fire"]
    d = run.run_edit(cfg_for(tmp_path, *argv))[0]
    before = (d / "metrics.json").read_bytes()
    with pytest.raises(UserInputError, match="already exists"):
        run.run_edit(cfg_for(tmp_path, *argv, "--steps", "2"))
    assert (d / "metrics.json").read_bytes() == before
    run.run_edit(cfg_for(tmp_path, *argv, "--steps", "2", "--overwrite"))
    assert json.loads((d / "metrics.json").read_text())["config"]["manipulate"]["steps"] == 2


def test_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = run.save_edit
    monkeypatch.setattr(run, "save_edit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.run_edit(cfg_for(tmp_path, "--text", "fire", "--text", "rain"))
    assert list(tmp_path.iterdir()) == []  # no out dir, no hidden partial one


def test_shared_models_are_built_once_and_give_the_same_edit(tmp_path, monkeypatch):
    nets = factory.Networks("cpu")
    first = run.run_edit(cfg_for(tmp_path / "a", "--audio", "tone:440"), nets=nets)[0]
    assert sorted(k.split(":")[0] for k in nets._built) == ["clip", "encoder", "generator"]
    kept = dict(nets._built)
    built = []
    monkeypatch.setattr(factory, "build_generator_from_cfg", lambda *a, **k: built.append(a))
    second = run.run_edit(cfg_for(tmp_path / "b", "--audio", "tone:440"), nets=nets)[0]
    assert not built and nets._built.keys() == kept.keys() and all(nets._built[k] is kept[k] for k in kept)
    assert torch.equal(latents(first / "result_latent.pt"), latents(second / "result_latent.pt"))


def test_stop_from_on_step_writes_nothing(tmp_path):
    from sound2img.manipulation.optimizer import EditStopped

    with pytest.raises(EditStopped):
        run.run_edit(cfg_for(tmp_path, "--audio", "tone:440"), on_step=lambda done, img, cos: done == 1)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_tiny_scores_download_nothing_and_lpips_null_is_accepted(tmp_path, monkeypatch):
    """preset=tiny with an empty cache: the LPIPS score is recorded as unavailable, without
    a download attempt (a VGG16 of 528 MiB for an install check); lpips=null turns it off."""
    import sound2img.weights as weights

    def no_download(*args, **kwargs):
        raise AssertionError("preset=tiny tried to download")

    monkeypatch.setattr(weights, "_download_entry", no_download)
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SOUND2IMG_OFFLINE", raising=False)
    quality = {}
    for lpips in ("torchvision_vgg16", "null"):
        (d,) = run.run_edit(cfg_for(tmp_path / lpips, "--audio", "tone:440", "--steps", "1", f"lpips={lpips}"))
        quality[lpips] = json.loads((d / "metrics.json").read_text())["quality"]
    tiny = quality["torchvision_vgg16"]["lpips"]
    assert tiny["value"] is None and tiny["unavailable"].startswith("preset=tiny downloads nothing for a score")
    assert "vgg16-397923af.pth" in tiny["unavailable"]  # where to put the file to get the score
    assert quality["null"]["lpips"] == {"value": None, "unavailable": "lpips=null"}
    assert all(q["psnr"]["value"] > 0 for q in quality.values())


def test_bf16_edits_and_queues_record_their_precision(tmp_path):
    from sound2img.manipulation import queue

    d = run.run_edit(cfg_for(tmp_path, "--audio", "tone:440", "--seed", "3", "manipulate.precision=bf16"))[0]
    m = json.loads((d / "metrics.json").read_text())
    assert m["precision"] == "bf16" and m["config"]["manipulate"]["precision"] == "bf16"
    assert all(len(v) == 3 for v in m["losses"].values())
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,text,seed\nred,a red car,1\n")
    cfg, _ = command.compose_from_args(
        [*TINY, "--out", str(tmp_path / "q"), "--jobs", str(jobs), "manipulate.precision=bf16"]
    )
    assert queue.run_queue(to_object(cfg), str(jobs)).ok
    assert json.loads((tmp_path / "q" / "red" / "metrics.json").read_text())["precision"] == "bf16"
