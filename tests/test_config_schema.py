"""The config schemas (sound2img/config.py): every checked key refuses a bad value with
one line and exit 2 from its script, an unknown key or group option names the closest known ones,
and the schema's choices are the library's (that every option of every group composes,
validated, with its own values is tests/test_configs.py's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from sound2img import config as schema
from sound2img.cli import compose, config_dir
from sound2img.errors import UserInputError

from helpers import load_file_module

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = config_dir()
# how each top-level config is composed by its script: (script, words before the override)
SCRIPTS = {
    "manipulate": ("manipulate.py", ["--cfg", "job", "preset=tiny"]),
    "train_encoder": ("train_encoder.py", ["--cfg", "job", "preset=tiny"]),
    "reproduce": ("reproduce.py", ["supp_table1", "--cfg", "job", "preset=tiny"]),
    "generate": ("generate.py", ["--cfg", "job"]),
    "prepare_data": ("prepare_data.py", ["--cfg", "job"]),
    "embed": ("embed.py", ["--cfg", "job", "preset=tiny"]),
    "video": ("video.py", ["--cfg", "job", "preset=tiny"]),
    "invert": ("invert.py", ["--cfg", "job", "preset=tiny"]),
}


def _checked_keys():
    """(config, dotted key, metadata) for every key with a range or choices, each schema
    field once (the first top-level config holding it)."""
    seen, out = set(), []

    def walk(config, cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            hint, path = hints[f.name], f"{prefix}{f.name}"
            args = typing.get_args(hint)
            if typing.get_origin(hint) is dict and len(args) == 2 and is_dataclass(args[1]):
                walk(config, args[1], f"{path}.faces.")  # reproduce.yaml's domains.faces
                continue
            sub = next((t for t in (hint, *args) if is_dataclass(t)), None)
            if sub is not None:
                walk(config, sub, f"{path}.")
            elif f.metadata and (cls, f.name) not in seen:
                seen.add((cls, f.name))
                out.append((config, path, dict(f.metadata), typing.get_origin(hint) is list))

    for config, root in schema.SCHEMAS.items():
        if config in SCRIPTS:  # demo.yaml's own section (app) is checked below, without a server
            walk(config, root, "")
    return out


def _bad_value(meta: dict):
    if "choices" in meta:
        return "not_a_choice", "one of"
    if "ge" in meta:
        return meta["ge"] - 1, f">= {meta['ge']:g}"
    if "gt" in meta:
        return meta["gt"], f"> {meta['gt']:g}"
    if "le" in meta:
        return meta["le"] + 1, f"<= {meta['le']:g}"
    return meta["lt"], f"< {meta['lt']:g}"


CHECKED = _checked_keys()


def test_the_checked_keys_cover_the_ranges_once_hand_written():
    keys = {k for _, k, _, _ in CHECKED}
    assert {
        "manipulate.steps",
        "manipulate.lr",
        "manipulate.lambda_sim",
        "manipulate.lambda_id",
        "manipulate.latent_term",
        "manipulate.mask_step",
        "manipulate.truncation",
        "manipulate.strip_every",
        "edit.batch_size",
        "edit.mix_weight",
        "edit.interp_steps",
        "edit.mode",
        "edit.seeds",
        "generator.truncation",
        "generator.noise_mode",
        "loss.logit_scale",
        "loss.terms.at",
        "optim.lr",
        "train.batch_size",
        "domains.faces.lambda_sim",
    } <= keys


@pytest.mark.parametrize("config,key,meta,is_list", CHECKED, ids=[f"{c}:{k}" for c, k, _, _ in CHECKED])
def test_a_bad_value_is_one_line_exit_2_from_the_script(config, key, meta, is_list, capsys):
    script, words = SCRIPTS[config]
    value, allowed = _bad_value(meta)
    text = f"[{value}]" if is_list else str(value)
    assert load_file_module(ROOT / "scripts" / script).main([*words, f"{key}={text}"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("error: ") and not captured.out
    assert f"{key} must be {allowed}" in err, err


APP_CHECKED = [(f.name, dict(f.metadata)) for f in fields(schema.AppOptions) if f.metadata]


@pytest.mark.parametrize("name,meta", APP_CHECKED, ids=[n for n, _ in APP_CHECKED])
def test_a_bad_app_value_of_the_web_app_is_one_line(name, meta):
    """demo.yaml's ``app`` section is range-checked when the web app composes it (the
    engine's ``compose("demo")``), before any network is built or the server started."""
    value, allowed = _bad_value(meta)
    with pytest.raises(UserInputError) as exc:
        compose("demo", ["preset=tiny", f"app.{name}={value}"])
    assert f"app.{name} must be {allowed}" in str(exc.value) and "\n" not in str(exc.value)


def test_the_script_process_exits_2_with_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "manipulate.py"),
            "--cfg",
            "job",
            "preset=tiny",
            "manipulate.truncation=1.5",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr == "error: manipulate.truncation must be <= 1, got 1.5\n"


@pytest.mark.parametrize(
    "override,key,suggestion",
    [
        ("manipulate.stpes=3", "manipulate.stpes", "manipulate.steps"),
        ("+manipulate.stpes=3", "manipulate.stpes", "manipulate.steps"),
        ("stpes=3", "stpes", "manipulate.steps"),  # a leaf typed without its section
        ("genrator=lhq256", "genrator", "generator"),
        ("presett=tiny", "presett", "preset"),  # a config group, not a schema key
        ("encoder.pth=x.pt", "encoder.pth", "encoder.path"),  # an open group: keys of the composed config
        ("+generator.truncaton=0.5", "generator.truncaton", "generator.truncation"),  # checked by validate
    ],
)
def test_an_unknown_key_gets_the_closest_known_key(override, key, suggestion):
    with pytest.raises(UserInputError) as info:
        compose("manipulate", [override])
    message = str(info.value)
    assert f"unknown key '{key}': did you mean {suggestion}?" in message, message
    assert "\n" not in message and "a new key is declared" not in message


def test_an_unknown_key_without_a_close_one_lists_its_section():
    with pytest.raises(UserInputError) as info:
        compose("manipulate", ["+edit.colour=red"])
    message = str(info.value)
    assert "unknown key 'edit.colour'" in message and "did you mean" not in message
    assert "edit has: audio, batch_size," in message and "class EditOptions in sound2img/config.py" in message


@pytest.mark.parametrize(
    "config,override,message",
    [
        (
            "manipulate",
            "generator=lhq265",
            "generator=lhq265: no such option in configs/generator/ (did you mean lhq256?",
        ),
        (
            "manipulate",
            "manipulate=face",
            "manipulate=face: no such option in configs/manipulate/ (did you mean faces?",
        ),
        ("train_encoder", "data=vgsound", "data=vgsound: no such option in configs/data/ (did you mean vggsound?"),
    ],
)
def test_an_unknown_group_option_gets_the_closest_option(config, override, message):
    with pytest.raises(UserInputError) as info:
        compose(config, [override])
    assert message in str(info.value) and "options: " in str(info.value)


def test_an_unknown_key_in_a_yaml_file_fails_at_composition(tmp_path, monkeypatch, capsys):
    tree = tmp_path / "configs"
    shutil.copytree(CONFIGS, tree)
    (tree / "optim" / "typo.yaml").write_text("name: sgd\nlr: 0.1\nmomentun: 0.9\n", encoding="utf-8")
    monkeypatch.setenv("SOUND2IMG_CONFIG_DIR", str(tree))
    main = load_file_module(ROOT / "scripts" / "train_encoder.py").main
    assert main(["--cfg", "job", "optim=typo"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optim.momentun': did you mean optim.momentum?" in err and err.count("\n") == 1


def test_a_wrong_type_names_the_key():
    with pytest.raises(UserInputError, match=r"^config: edit.interp_steps must be an integer, got '2.5'$"):
        compose("manipulate", ["edit.interp_steps=2.5"])
    with pytest.raises(UserInputError, match=r"^config: train.channels_last must be true or false"):
        compose("train_encoder", ["train.channels_last=maybe"])


def test_keys_related_by_a_rule_are_checked_together():
    with pytest.raises(UserInputError, match="at least one of at, av, aa needs a positive weight"):
        compose("train_encoder", ["loss.terms.at=0", "loss.terms.av=0", "loss.terms.aa=0"])


def test_the_schema_choices_are_the_library_choices():
    """Each string setting accepts exactly the values of the library tuple that reads it."""
    from sound2img.manipulation.masking import LATENT_TERMS
    from sound2img.manipulation.run import MODES
    from sound2img.models.stylegan2 import NOISE_MODES
    from sound2img.training.losses import SCALE_MODES, TERMS
    from sound2img.utils.precision import PRECISIONS
    from sound2img.video.keyframes import INTERPOLATIONS
    from sound2img.video.run import MODES as VIDEO_MODES

    def choices(cls, name):
        return set(next(f for f in fields(cls) if f.name == name).metadata["choices"])

    assert choices(schema.ManipulateOptions, "latent_term") == set(LATENT_TERMS) == {"l2", "adaptive"}
    assert choices(schema.EditOptions, "mode") == set(MODES) and "layer_mix" in MODES
    assert choices(schema.GeneratorOptions, "noise_mode") == set(NOISE_MODES) == {"const", "random", "none"}
    assert choices(schema.LossOptions, "logit_scale") == set(SCALE_MODES) and "legacy" in SCALE_MODES
    assert [f.name for f in fields(schema.LossTerms)] == list(TERMS) == ["at", "av", "aa"]
    assert choices(schema.VideoOptions, "mode") == set(VIDEO_MODES) == {"both", "semantic", "reactive"}
    assert choices(schema.VideoOptions, "interpolation") == set(INTERPOLATIONS) == {"cubic", "linear"}
    assert choices(schema.ManipulateOptions, "precision") == set(PRECISIONS) == {"auto", "fp32", "bf16"}


def test_the_schema_choices_are_the_registries_names():
    """A name a registry holds is a valid config value, and only those: the schema reads
    the registry (sound2img.registry.Registry) rather than a list of its own."""
    from sound2img.training.losses import DIRECTIONS
    from sound2img.training.optimizer import AMP_MODES, OPTIMIZERS, SCHEDULES

    def choices(cls, name):
        return set(next(f for f in fields(cls) if f.name == name).metadata["choices"])

    assert choices(schema.OptimOptions, "name") == set(OPTIMIZERS.names()) == {"sgd", "adamw"}
    assert choices(schema.OptimOptions, "schedule") == set(SCHEDULES.names()) == {"cosine_restarts", "cyclic"}
    assert choices(schema.TrainOptions, "amp") == set(AMP_MODES)
    assert choices(schema.LossOptions, "directions") == set(DIRECTIONS)


def test_the_library_gets_plain_data():
    from sound2img.cli import to_plain

    c = to_plain(compose("manipulate", ["preset=tiny"]))
    assert type(c) is dict and type(c["manipulate"]) is dict and type(c["edit"]["seeds"]) is list
