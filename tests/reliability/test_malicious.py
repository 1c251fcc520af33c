"""Malicious checkpoints: ``.pt`` (zip), ``.pth`` (legacy) and ``.pkl`` files whose
unpickling runs code are refused by every loader and script, and their marker never
appears (while plain unpickling does run them); right keys with wrong shapes give a
one-line error naming the key, for every loader."""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest
import torch

from sound2img.cli import run_cli
from sound2img.errors import CheckpointError
from sound2img.models.arcface import build_arcface, load_arcface
from sound2img.models.audio_encoder import build_audio_encoder, load_audio_encoder, save_audio_encoder
from sound2img.models.clip import load_clip
from sound2img.models.stylegan2 import build_generator, load_generator, load_latents, save_generator
from sound2img.training.checkpoint import load_training_state

from .helpers import assert_user_error, run_script, script_main, temp_leftovers
from .payloads import CONTAINERS, PAYLOADS, unpickle_unsafely, write_all, write_malicious

TINY_G = dict(resolution=32, z_dim=16, w_dim=16, n_mlp=2, channel_base=64, channel_max=16)
TINY_OPENCLIP = "reliability-tiny"


@pytest.fixture(scope="module")
def tiny_openclip(tmp_path_factory):
    """A small open_clip model config registered under its own name, so that
    ``load_clip(<name>, <file>)`` takes the real open_clip path in milliseconds."""
    import open_clip

    d = tmp_path_factory.mktemp("open_clip_configs")
    (d / f"{TINY_OPENCLIP}.json").write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
            }
        )
    )
    open_clip.add_model_config(d)
    return TINY_OPENCLIP


def _write_sha(path):
    from sound2img.training.checkpoint import _digest_path
    from sound2img.utils.files import sha256_file

    _digest_path(path).write_text(sha256_file(path) + "\n")


def _training_state(path):
    _write_sha(path)  # a matching digest: the check that must refuse is the unpickling itself
    return load_training_state(path)


LOADERS = {
    "load_generator": load_generator,
    "load_audio_encoder": load_audio_encoder,
    "load_arcface": load_arcface,
    "load_latents": lambda p: load_latents(p, 4, 16),
    "load_clip": lambda p: load_clip(TINY_OPENCLIP, str(p)),
    "training_resume": _training_state,
}


def _one_line_naming(exc: BaseException, path) -> str:
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_payloads_are_live(tmp_path):
    """Positive control: the very files the loaders get, unpickled plainly in a child
    process, write their markers."""
    files = write_all(tmp_path, "control")
    assert not any(m.marker.exists() for m in files)
    unpickle_unsafely([m.path for m in files])
    assert [m.path.name for m in files if not m.marker.exists()] == []
    assert len(files) == len(PAYLOADS) * len(CONTAINERS)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_refuses_code(loader, tmp_path, tiny_openclip):
    """Refused with one line naming the file, and nothing else said (no library warning
    printed before it)."""
    files = write_all(tmp_path, loader)
    for m in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError) as info:
                LOADERS[loader](m.path)
        _one_line_naming(info.value, m.path)
        assert [str(w.message) for w in caught] == [], m.path.name
    assert [m.marker.name for m in files if m.marker.exists()] == []


# ---- scripts --------------------------------------------------------------------------


def _manipulate(flag):
    def args(path, out):
        return [
            flag,
            str(path),
            "--audio",
            "tone:440",
            "--out",
            str(out),
            "--steps",
            "1",
            "preset=tiny",
            "progress=false",
        ]

    return args


SCRIPT_CASES = {
    "manipulate --generator": ("manipulate.py", _manipulate("--generator")),
    "manipulate --encoder": ("manipulate.py", _manipulate("--encoder")),
    "manipulate --latent": ("manipulate.py", _manipulate("--latent")),
    "convert_generator": ("convert_generator.py", lambda path, out: [str(path), str(out / "g.safetensors")]),
}
# one payload per container keeps the script runs few; the loaders above see all nine
SCRIPT_FILES = (("os_system", "torch_zip"), ("exec", "torch_legacy"), ("subprocess", "raw_pickle"))


@pytest.mark.parametrize("runner", ["in_process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", list(SCRIPT_CASES))
def test_scripts_refuse_code(case, runner, tmp_path, capsys):
    script, make_args = SCRIPT_CASES[case]
    for payload, container in SCRIPT_FILES:
        m = write_malicious(tmp_path / "files", "evil", payload, container)
        out = tmp_path / f"out-{container}"
        args = make_args(m.path, out)
        if runner == "subprocess":
            proc = run_script(script, args, cwd=tmp_path)
        else:
            status = script_main(script)(args)
            captured = capsys.readouterr()
            proc = subprocess.CompletedProcess(args, status, captured.out, captured.err)
        assert_user_error(proc, str(m.path))
        assert not m.marker.exists() and not out.exists()
    assert temp_leftovers(tmp_path) == []


# ---- right keys, wrong shapes -----------------------------------------------------------


def _shape_error(load, path, key: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = _one_line_naming(info.value, path)
    assert key in msg and "shape" in msg, msg
    return msg


def _swap_dims(t: torch.Tensor) -> torch.Tensor:
    """Same number of elements, another shape (a transposed or flattened weight)."""
    if t.dim() == 1:
        return t.reshape(-1, 1).clone()
    if t.shape[0] != t.shape[1]:
        return t.reshape(t.shape[1], t.shape[0], *t.shape[2:]).clone()
    return t.reshape(-1).clone()


def test_generator_wrong_shape_names_the_key(tmp_path):
    G = build_generator(**TINY_G, seed=0)
    ros = save_generator(G, tmp_path / "g.pt")  # rosinality {"g_ema", "latent_avg"}
    ckpt = torch.load(ros, weights_only=True)
    key = next(k for k in ckpt["g_ema"] if k.startswith("convs.") and k.endswith(".conv.modulation.weight"))
    ckpt["g_ema"][key] = _swap_dims(ckpt["g_ema"][key])
    torch.save(ckpt, tmp_path / "bad.pt")
    _shape_error(load_generator, tmp_path / "bad.pt", f"key {key!r} has shape")  # the file's own key name

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    st = save_generator(G, tmp_path / "g.safetensors")
    state = load_file(str(st))
    with safe_open(str(st), "pt") as fh:
        meta = fh.metadata()
    key = next(k for k in state if k.endswith("affine.weight"))
    state[key] = _swap_dims(state[key])
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    _shape_error(load_generator, tmp_path / "bad.safetensors", key)


def test_audio_encoder_wrong_shape_names_the_key(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    enc = build_audio_encoder("tiny_cnn", embed_dim=16)
    path = save_audio_encoder(tmp_path / "enc.safetensors", enc, {"name": "logmel"})
    state = load_file(str(path))
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    key = next(k for k, v in state.items() if v.dim() == 4)
    state[key] = _swap_dims(state[key])
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    _shape_error(load_audio_encoder, tmp_path / "bad.safetensors", key)

    legacy = build_audio_encoder("resnet18_legacy", embed_dim=512).state_dict()  # the authors' .pth layout
    legacy["conv.weight"] = torch.zeros(3, 1, 5, 5)
    torch.save(legacy, tmp_path / "bad.pth")
    _shape_error(load_audio_encoder, tmp_path / "bad.pth", "conv.weight")


def test_arcface_wrong_shape_names_the_key(tmp_path):
    state = build_arcface("tiny").state_dict()
    key = "output_layer.3.weight"
    state[key] = _swap_dims(state[key])
    torch.save(state, tmp_path / "bad.pth")
    _shape_error(load_arcface, tmp_path / "bad.pth", key)


def test_latents_of_the_wrong_shape_are_refused(tmp_path):
    torch.save({"w": torch.zeros(1, 5, 16)}, tmp_path / "bad.pt")
    msg = _shape_error(lambda p: load_latents(p, 4, 16), tmp_path / "bad.pt", "[1, 5, 16]")
    assert "[4, 16]" in msg  # what would have fitted


def test_clip_file_wrong_shape_names_the_key(tmp_path, tiny_openclip):
    import open_clip

    state = open_clip.create_model(tiny_openclip).state_dict()
    key = "visual.proj"
    state[key] = _swap_dims(state[key])
    torch.save(state, tmp_path / "bad.pt")
    _shape_error(lambda p: load_clip(tiny_openclip, str(p)), tmp_path / "bad.pt", key)


# ---- training resume through the script ----------------------------------------------------

TRAIN = [
    "preset=tiny",
    "tiny_run.train.max_steps=2",
    "tiny_run.train.checkpoint_every=1",
    "validation.data=null",
    "train.progress=false",
]


def _train(argv, capsys):
    from sound2img.training.run import train_encoder_cli

    status = run_cli(train_encoder_cli, argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, status, captured.out, captured.err)


def _last_line_error(proc, *fragments):
    """Exit 2 and the one ``error:`` line last (Python warnings about skipped checkpoints
    may come before it), no traceback."""
    from .helpers import error_lines

    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])


def test_resume_with_another_encoder_shape_names_the_key(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(["--out", str(run), *TRAIN], capsys).returncode == 0
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    proc = _train(["--out", str(run), "--resume", *TRAIN, "+encoder.channels=[8,16,16]"], capsys)
    _last_line_error(proc, "state-000000002.pt", "key 'encoder.", "shape")
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before  # nothing replaced


def test_resume_refuses_a_planted_code_running_checkpoint(tmp_path, capsys):
    """The only checkpoint in the run is a payload with a matching digest: the script
    refuses to resume in one line and the payload never runs."""
    run = tmp_path / "run"
    assert _train(["--out", str(run), *TRAIN], capsys).returncode == 0
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    m = write_malicious(tmp_path / "files", "state", "os_system", "torch_zip")
    planted = run / "checkpoints" / "state-000000002.pt"
    planted.write_bytes(m.path.read_bytes())
    _write_sha(planted)
    with pytest.warns(UserWarning, match="state-000000002.pt: refused"):
        proc = _train(["--out", str(run), "--resume", *TRAIN], capsys)
    _last_line_error(proc, "none of the 1 checkpoint(s) is readable")
    assert not m.marker.exists()
