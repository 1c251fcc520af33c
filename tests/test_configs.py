"""Every config composes: each top-level config as shipped and with preset=tiny, and each
option of each group it uses (configs mirror the code; a typo in a yaml file
must fail here, not in a user's run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sound2img.cli import compose, config_dir
from sound2img.errors import UserInputError

CONFIGS = config_dir()
TOP_LEVEL = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def groups_of(config_name: str, keep_preset: bool = False) -> list[tuple[str, str]]:
    """(override key, group directory) for each group in a top-level config's defaults
    list, e.g. ("data@datasets.esc50", "data"); ``preset`` is covered above."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(CONFIGS / f"{config_name}.yaml")
    groups = []
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "keys"):
            continue
        for key in entry.keys():
            key = str(key).removeprefix("optional ").removeprefix("override ").strip()
            group = key.split("@")[0]
            if group != "_self_" and (keep_preset or group != "preset") and (CONFIGS / group).is_dir():
                groups.append((key, group))
    return groups


def test_the_expected_top_level_configs_exist():
    assert {"manipulate", "train_encoder", "reproduce"} <= set(TOP_LEVEL)
    # preset=tiny (random networks, offline) works with every script's config (demo.yaml and
    # video.yaml get it from manipulate.yaml, which they include)
    assert [n for n in TOP_LEVEL if not has_preset(n) and n not in ("demo", "video")] == []


def has_preset(config_name: str) -> bool:
    return "preset" in [key for key, _ in groups_of(config_name, keep_preset=True)]


@pytest.mark.parametrize(
    "name,preset", [(n, p) for n in TOP_LEVEL for p in (None, "tiny") if p is None or has_preset(n) or n == "demo"]
)
def test_top_level_config_composes(name, preset):
    cfg = compose(name, [f"preset={preset}"] if preset else [])
    if preset == "tiny":
        assert cfg.tiny is True
        for group in ("clip", "encoder", "generator"):
            if group in cfg:
                assert cfg[group].get("path") in (None,) or group == "clip", f"{group} is not random under tiny"


# Model groups a config lists only so that preset=tiny applies to it: the script builds no such
# network, so their options are not composed one by one here.
UNUSED = {
    "generate": {"audio", "clip", "encoder"},
    "invert": {"audio", "clip", "encoder"},
    "embed": {"generator"},
    "prepare_data": {"encoder", "generator"},
}
CASES = [
    (name, key, option)
    for name in TOP_LEVEL
    for key, group in groups_of(name)
    if key not in UNUSED.get(name, ())
    for option in group_options(group)
]


def own_values(option_file: Path) -> dict:
    """The values an option file sets itself (its ``defaults`` list and mandatory ``???``
    values left out), as nested plain containers."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(option_file)
    values = {k: v for k, v in OmegaConf.to_container(raw, resolve=False).items() if k != "defaults"}

    def drop_missing(node):
        if isinstance(node, dict):
            return {k: drop_missing(v) for k, v in node.items() if v != "???"}
        return node

    return drop_missing(values)


def assert_contains(node: dict, expected: dict, where: str) -> None:
    """Every value of ``expected`` is in ``node`` (plain containers, interpolations
    unresolved), recursively."""
    for key, want in expected.items():
        assert key in node, f"{where}.{key} is missing from the composed config"
        if isinstance(want, dict) and isinstance(node[key], dict):
            assert_contains(node[key], want, f"{where}.{key}")
        else:
            assert node[key] == want, f"{where}.{key} = {node[key]!r}, but the option file says {want!r}"


@pytest.mark.parametrize("name,key,option", CASES, ids=[f"{n}:{k}={o}" for n, k, o in CASES])
def test_every_group_option_composes(name, key, option):
    """Composing ``key=option`` puts the option file's own values where the key says
    (mandatory values such as dataset roots may stay unset: resolving them is the job's
    first step)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose(name, [f"{key}={option}"]), resolve=False)
    option_file = CONFIGS / key.split("@")[0] / f"{option}.yaml"
    expected = own_values(option_file)
    if "@package _global_" in option_file.read_text(encoding="utf-8").split("\n", 1)[0]:
        assert_contains(cfg, expected, "<root>")  # merged at the top level (experiment=..., manipulate=faces)
        return
    node = cfg
    path = (key.split("@")[1] if "@" in key else key).split(".")
    for part in path:
        node = node[part]
    # a global option chosen by the defaults (manipulate=landscape sets clip.preprocess) wins
    # over a group option on purpose: there the composed value is the global option's
    for sub, value in global_defaults_values(name, path).items():
        expected.pop(sub, None)
        assert node[sub] == value, f"{key}.{sub} = {node[sub]!r}, but the default global option says {value!r}"
    assert_contains(node, expected, key)


def global_defaults_values(config_name: str, path: list[str]) -> dict:
    """The values that the ``@package _global_`` options in ``config_name``'s defaults list
    set below ``path`` (e.g. ``{"preprocess": "styleclip"}`` under ``clip``)."""
    from omegaconf import OmegaConf

    values = {}
    for key, group in groups_of(config_name):
        if "@" in key:
            continue
        option = OmegaConf.select(OmegaConf.load(CONFIGS / f"{config_name}.yaml"), "defaults")
        chosen = next((e[key] for e in option if hasattr(e, "keys") and key in e), None)
        option_file = CONFIGS / group / f"{chosen}.yaml"
        if chosen is None or not option_file.exists():
            continue
        if "@package _global_" not in option_file.read_text(encoding="utf-8").split("\n", 1)[0]:
            continue
        node = own_values(option_file)
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        values.update({k: v for k, v in node.items() if not isinstance(v, dict)})
    return values


def test_a_typo_is_a_one_line_user_error():
    with pytest.raises(UserInputError, match="config: ") as info:
        compose("manipulate", ["generator=no_such_generator"])
    assert "\n" not in str(info.value)
