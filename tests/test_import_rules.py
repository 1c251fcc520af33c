"""The import directions (README, Contributing), checked by parsing every module (ast), so the rule
cannot drift silently."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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
    banned: list[str] = []
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
    assert sorted({f.split(" ")[0] for f in found}) == ["sound2img/manipulation/probe.py:2",
                                                      "sound2img/models/probe.py:1", "sound2img/models/probe.py:2"]
    assert violations() == []  # the real package is untouched and clean


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
