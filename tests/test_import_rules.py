"""The import directions (README, Contributing), checked by parsing every module (ast), so the rule
cannot drift silently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "sound2img"

# package (dotted prefix) -> prefixes it must never import. Every package has a rule; a
# rule for a package that does not exist (yet) simply matches no module.
_ABOVE_MODELS = [
    "sound2img.training",
    "sound2img.manipulation",
    "sound2img.evaluation",
    "sound2img.generation",
    "sound2img.inversion",
    "sound2img.app",
    "sound2img.video",
    "sound2img.metrics",
    "sound2img.cli",
    "sound2img.factory",
    "sound2img.config",
    "hydra",
    "omegaconf",
]
FORBIDDEN = {
    "sound2img.errors": ["sound2img.", "torch", "hydra", "omegaconf"],
    "sound2img.registry": _ABOVE_MODELS
    + [
        "sound2img.utils",
        "sound2img.audio",
        "sound2img.data",  # errors only
        "sound2img.models",
        "sound2img.weights",
        "torch",
    ],
    "sound2img.utils": _ABOVE_MODELS + ["sound2img.audio", "sound2img.models", "sound2img.data", "sound2img.weights"],
    "sound2img.audio": _ABOVE_MODELS + ["sound2img.models", "sound2img.data"],
    "sound2img.data": _ABOVE_MODELS + ["sound2img.models"],
    "sound2img.models": _ABOVE_MODELS + ["sound2img.data"],
    # metrics (issue13): only models, utils, audio (and errors) below it
    "sound2img.metrics": [p for p in _ABOVE_MODELS if p != "sound2img.metrics"]
    + ["sound2img.data", "sound2img.weights"],
    "sound2img.generation": [
        "sound2img.config",
        "sound2img.manipulation",
        "sound2img.training",
        "sound2img.evaluation",
        "sound2img.inversion",
        "sound2img.app",
    ],
    "sound2img.inversion": [
        "sound2img.config",
        "sound2img.manipulation",
        "sound2img.training",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.app",
    ],
    "sound2img.training.losses": ["sound2img.training.loop", "hydra", "omegaconf"],
    "sound2img.training": [
        "sound2img.config",
        "sound2img.manipulation",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
    ],
    "sound2img.manipulation": [
        "sound2img.config",
        "sound2img.training",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.app",
    ],
    "sound2img.evaluation": ["sound2img.config", "sound2img.training", "sound2img.generation", "sound2img.app"],
    # the one place configs become objects: it may read the schema (config) at run time
    "sound2img.factory": [
        "sound2img.training",
        "sound2img.manipulation",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
    ],
    "sound2img.weights": [
        "sound2img.config",
        "sound2img.training",
        "sound2img.manipulation",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
        "sound2img.models",
        "sound2img.data",
        "sound2img.factory",
        "sound2img.cli",
        "hydra",
        "omegaconf",
    ],
    # config (the schemas, used by cli.compose): its choices are the library's registries and
    # tuples (training.optimizer, training.losses, manipulation, models.stylegan2), imported
    # from there; nothing it imports may need it back at run time
    "sound2img.config": [
        "sound2img.cli",
        "sound2img.factory",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
    ],
    "sound2img.cli": [
        "sound2img.training",
        "sound2img.manipulation",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
    ],
}
# the messages about config keys (did you mean …?): read the schemas, as config does
FORBIDDEN["sound2img.config_keys"] = FORBIDDEN["sound2img.config"]
# Library code takes the schema's dataclasses but imports sound2img.config only for type
# annotations (under ``if TYPE_CHECKING:``), which is not an arrow at run time: config
# imports the library's registries, so a run-time import back would be a cycle.
TYPE_ONLY = {"sound2img.config": ["sound2img.training", "sound2img.evaluation", "sound2img.manipulation"]}
TYPE_ONLY["sound2img.config"] += ["sound2img.inversion", "sound2img.generation", "sound2img.app"]
TYPE_ONLY["sound2img.config"] += ["sound2img.needs", "sound2img.video"]
# needs (which weights a command reads): an edge module beside factory and cli
FORBIDDEN["sound2img.needs"] = [
    "sound2img.config",
    "sound2img.training",
    "sound2img.manipulation",
    "sound2img.evaluation",
    "sound2img.generation",
    "sound2img.app",
]
# Sound to video builds on manipulation and inversion; nothing below it imports it (config
# reads its choices, as it reads the other packages' registries).
FORBIDDEN["sound2img.video"] = [
    "sound2img.config",
    "sound2img.training",
    "sound2img.evaluation",
    "sound2img.generation",
    "sound2img.app",
]
for _below in ("sound2img.generation", "sound2img.inversion", "sound2img.training", "sound2img.manipulation"):
    FORBIDDEN[_below] = FORBIDDEN[_below] + ["sound2img.video"]
for _below in ("sound2img.evaluation", "sound2img.factory", "sound2img.weights", "sound2img.cli"):
    FORBIDDEN[_below] = FORBIDDEN[_below] + ["sound2img.video"]
# The web app reaches edits through manipulation only (issue14).
FORBIDDEN["sound2img.app"] = ["sound2img.training", "sound2img.evaluation"]
# Nothing imports the web app (issue14): checked for every module outside sound2img.app.
NOBODY_IMPORTS = ["sound2img.app"]


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imported_names(path: Path, root: Path = ROOT, with_type_only: bool = False) -> list[tuple]:
    """``(line, imported name)`` of every import in ``path``; with ``with_type_only`` a third
    element says whether the import is for type annotations only."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = _type_checking_lines(tree)
    out = []
    mod = module_name(path, root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = mod.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return [(line, name, line in type_only) for line, name in out] if with_type_only else out


def _allowed_for_types(mod: str, ban: str) -> bool:
    """Whether ``mod`` may import ``ban`` for type annotations (``TYPE_ONLY``)."""
    return any(mod == p or mod.startswith(p + ".") for p in TYPE_ONLY.get(ban, []))


def rules_for(mod: str) -> list[str]:
    banned: list[str] = [p for p in NOBODY_IMPORTS if not (mod == p or mod.startswith(p + "."))]
    for prefix, bans in FORBIDDEN.items():
        if mod == prefix or mod.startswith(prefix + "."):
            banned += bans
    return banned


def violations(root: Path = ROOT) -> list[str]:
    """Every forbidden import in the ``sound2img`` package under ``root``."""
    found = []
    for path in sorted((root / "sound2img").rglob("*.py")):
        mod = module_name(path, root)
        for lineno, name, type_only in imported_names(path, root, with_type_only=True):
            for ban in rules_for(mod):
                hit = name.startswith(ban) if ban.endswith(".") else (name == ban or name.startswith(ban + "."))
                if hit and not (type_only and _allowed_for_types(mod, ban)):
                    found.append(f"{path.relative_to(root)}:{lineno} imports {name} ({mod} must not import {ban})")
    return found


def test_import_directions():
    assert violations() == []


def test_every_package_has_a_rule():
    """A new top-level package or module of sound2img must be given its rule here."""
    tops = {module_name(p).split(".")[1] for p in PKG.rglob("*.py") if module_name(p) != "sound2img"}
    missing = sorted(t for t in tops if f"sound2img.{t}" not in FORBIDDEN and f"sound2img.{t}" not in NOBODY_IMPORTS)
    assert missing == [], f"no import rule for {missing}"


def test_checker_catches_a_wrong_arrow(tmp_path):
    """Positive control, on a throw-away package (the real one is never written to): a
    models module importing the trainer and OmegaConf, and a relative import from
    manipulation into training, are reported; an allowed arrow is not."""
    pkg = tmp_path / "sound2img"
    for sub in ("models", "manipulation", "training"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "probe.py").write_text("from sound2img.training import losses\nimport omegaconf\n")
    (pkg / "manipulation" / "probe.py").write_text("import torch\nfrom ..training.losses import info_nce\n")
    (pkg / "training" / "probe.py").write_text("from sound2img.models import audio_encoder\n")
    found = violations(tmp_path)
    assert sorted({f.split(" ")[0] for f in found}) == [
        "sound2img/manipulation/probe.py:2",
        "sound2img/models/probe.py:1",
        "sound2img/models/probe.py:2",
    ]
    assert violations() == []  # the real package is untouched and clean


def test_the_schema_is_imported_for_types_only(tmp_path):
    """Positive control of TYPE_ONLY, on a throw-away package: the trainer may name the
    schema's classes in annotations (``if TYPE_CHECKING:``) but not import it at run time;
    the model library may do neither."""
    pkg = tmp_path / "sound2img"
    for sub in ("models", "training"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sound2img.config import TrainOptions\n"
    (pkg / "training" / "typed.py").write_text(guarded)
    (pkg / "training" / "runtime.py").write_text("from sound2img.config import TrainOptions\n")
    (pkg / "models" / "typed.py").write_text(guarded)
    assert sorted(f.split(" ")[0] for f in violations(tmp_path)) == [
        "sound2img/models/typed.py:3",
        "sound2img/models/typed.py:3",
        "sound2img/training/runtime.py:1",
        "sound2img/training/runtime.py:1",
    ]


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_are_thin(script):
    """No sys.path edits and no work at import time: only a main() guarded call."""
    src = script.read_text(encoding="utf-8")
    assert "sys.path" not in src
    tree = ast.parse(src)
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.If, ast.Expr, ast.Assign)), (
            f"{script.name}: top-level {type(node).__name__} does work at import time"
        )
        if isinstance(node, ast.If):
            assert "__main__" in ast.unparse(node.test)
