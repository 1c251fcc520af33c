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
    "sound2img.factory": [
        "sound2img.config",
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
    # config (the schemas, used by cli.compose): imports nothing of ours but errors
    "sound2img.config": [
        "sound2img.cli",
        "sound2img.utils",
        "sound2img.audio",
        "sound2img.data",
        "sound2img.models",
        "sound2img.weights",
        "sound2img.factory",
        "sound2img.training",
        "sound2img.manipulation",
        "sound2img.evaluation",
        "sound2img.generation",
        "sound2img.inversion",
        "sound2img.app",
        "sound2img.metrics",
        "sound2img.registry",
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
# Sound to video (issue28) builds on manipulation and inversion; nothing below it imports it.
FORBIDDEN["sound2img.video"] = [
    "sound2img.config",
    "sound2img.training",
    "sound2img.evaluation",
    "sound2img.generation",
    "sound2img.app",
]
for _below in ("sound2img.generation", "sound2img.inversion", "sound2img.training", "sound2img.manipulation"):
    FORBIDDEN[_below] = FORBIDDEN[_below] + ["sound2img.video"]
for _below in ("sound2img.evaluation", "sound2img.factory", "sound2img.weights", "sound2img.config", "sound2img.cli"):
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


def imported_names(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
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
    return out


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
        for lineno, name in imported_names(path, root):
            for ban in rules_for(mod):
                hit = name.startswith(ban) if ban.endswith(".") else (name == ban or name.startswith(ban + "."))
                if hit:
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
