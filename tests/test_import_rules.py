"""design.md's import directions, checked by parsing every module (ast), so the rule
cannot drift silently."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "sound2img"

# package (dotted prefix) -> prefixes it must never import
FORBIDDEN = {
    "sound2img.models": ["sound2img.training", "sound2img.manipulation", "sound2img.evaluation",
                         "sound2img.cli", "sound2img.factory", "hydra", "omegaconf"],
    "sound2img.audio": ["sound2img.training", "sound2img.manipulation", "sound2img.evaluation",
                        "sound2img.models", "sound2img.cli", "sound2img.factory", "hydra", "omegaconf"],
    "sound2img.data": ["sound2img.training", "sound2img.manipulation", "sound2img.evaluation",
                       "sound2img.cli", "sound2img.factory", "hydra", "omegaconf"],
    "sound2img.training.losses": ["sound2img.training.loop", "sound2img.manipulation", "sound2img.evaluation",
                                  "hydra", "omegaconf"],
    "sound2img.training": ["sound2img.manipulation", "sound2img.evaluation"],
    "sound2img.manipulation": ["sound2img.training", "sound2img.evaluation"],
    "sound2img.utils": ["sound2img.audio", "sound2img.models", "sound2img.data", "sound2img.training",
                        "sound2img.manipulation", "sound2img.evaluation", "sound2img.cli", "hydra", "omegaconf"],
    "sound2img.errors": ["sound2img.", "torch", "hydra", "omegaconf"],
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    mod = module_name(path)
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
    banned: list[str] = []
    for prefix, bans in FORBIDDEN.items():
        if mod == prefix or mod.startswith(prefix + "."):
            banned += bans
    return banned


def violations() -> list[str]:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        for lineno, name in imported_names(path):
            for ban in rules_for(mod):
                hit = name.startswith(ban) if ban.endswith(".") else (name == ban or name.startswith(ban + "."))
                if hit:
                    found.append(f"{path.relative_to(ROOT)}:{lineno} imports {name} ({mod} must not import {ban})")
    return found


def test_import_directions():
    assert violations() == []


def test_checker_catches_a_wrong_arrow(tmp_path, monkeypatch):
    """Positive control: a models module importing the trainer is reported."""
    bad = PKG / "models" / "_tmp_bad_import_probe.py"
    bad.write_text("from sound2img.training import losses\nimport omegaconf\n")
    try:
        found = violations()
    finally:
        bad.unlink()
    assert any("_tmp_bad_import_probe.py:1" in f for f in found)
    assert any("_tmp_bad_import_probe.py:2" in f for f in found)


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_are_thin(script):
    """No sys.path edits and no work at import time: only a main() guarded call."""
    src = script.read_text(encoding="utf-8")
    assert "sys.path" not in src
    tree = ast.parse(src)
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.If, ast.Expr, ast.Assign)), \
            f"{script.name}: top-level {type(node).__name__} does work at import time"
        if isinstance(node, ast.If):
            assert "__main__" in ast.unparse(node.test)


def test_nothing_imports_the_app():
    """``sound2img.app`` (web app, gallery) sits on top: no other module of the package
    imports it, and it reaches the edits only through manipulation's public functions."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        if mod == "sound2img.app" or mod.startswith("sound2img.app."):
            bans = ["sound2img.training", "sound2img.evaluation"]
        else:
            bans = ["sound2img.app"]
        for lineno, name in imported_names(path):
            if any(name == b or name.startswith(b + ".") for b in bans):
                found.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert found == []
