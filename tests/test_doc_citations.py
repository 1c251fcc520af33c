"""Citations stay inside the repository: no file of the package, scripts, configs,
benchmarks, tests, docs or README cites a note that a clone does not have, and every
``docs/method.md §N`` / ``docs/formats.md §N`` citation and every link into those
documents names a section that exists, and every code path the documents name exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("sound2img", "scripts", "configs", "benchmarks", "tests", "docs")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml", "CITATION.cff", ".ci/run")
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".toml", ".cff", ".txt", ".cfg", ""}
# Notes that live outside the repository. Tests may *read* reference data from the
# fixtures folder beside the checkout, but they build that path from its parts.
OUTSIDE = ("paper.md", "checkpoint-formats", "style.md", "design.md", "seed-supplementary", "../shared", "specs/")
DOCS = {"method": ROOT / "docs" / "method.md", "formats": ROOT / "docs" / "formats.md"}
CITATION = re.compile(r"docs/(method|formats)\.md\s+§(\d+(?:\.\d+)?)((?:\s*(?:,|and|–|-)\s*§?\d+(?:\.\d+)?)*)")
# A repository-relative path in prose: not part of a longer path (``~/.cache/sound2img/…``)
# and not a pattern (``configs/encoder/<name>.yaml``, ``fold{N}``, ``fig_*``).
CODE_PATH = re.compile(r"(?<![\w/.~-])((?:sound2img|configs|tests|scripts|benchmarks)/[\w/.-]*\w)(?![\w/]*[<{*])")
LINK = re.compile(r"\]\((method|formats)?(?:\.md)?#([^)\s]+)\)")


def scanned_files() -> list[Path]:
    files = [ROOT / f for f in SCANNED_FILES if (ROOT / f).is_file()]
    for d in SCANNED_DIRS:
        files += [
            p for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
        ]
    return sorted(set(files) - {Path(__file__).resolve()})


def sections(doc: Path) -> set[str]:
    """'3', '1.2', … for the numbered headings '## 3. …' and '### 1.2 …'."""
    return set(re.findall(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s", doc.read_text(encoding="utf-8"), flags=re.M))


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces → '-'."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", doc.read_text(encoding="utf-8"), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", ""))
        out.add(slug.replace(" ", "-"))
    return out


def test_the_documents_exist_and_are_numbered():
    for doc in DOCS.values():
        assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
        assert {"1", "2", "3"} <= sections(doc)


def test_nothing_cites_a_file_outside_the_repository():
    found = []
    for path in scanned_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{n} cites {word!r}" for word in OUTSIDE if word in line]
    assert not found, "notes outside the repository are cited (cite docs/method.md or docs/formats.md): " + "; ".join(
        found[:10]
    )


def test_every_section_citation_resolves():
    known = {name: sections(doc) for name, doc in DOCS.items()}
    broken = []
    for path in scanned_files() + list(DOCS.values()):
        for m in CITATION.finditer(path.read_text(encoding="utf-8", errors="replace")):
            numbers = [m.group(2)] + re.findall(r"\d+(?:\.\d+)?", m.group(3))
            broken += [
                f"{path.relative_to(ROOT)}: docs/{m.group(1)}.md §{n}" for n in numbers if n not in known[m.group(1)]
            ]
    assert not broken, "citations of sections that do not exist: " + "; ".join(broken[:10])


def test_every_link_into_the_documents_resolves():
    known = {name: anchors(doc) for name, doc in DOCS.items()}
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in LINK.finditer(path.read_text(encoding="utf-8")):
            target = m.group(1) or (path.stem if path.stem in DOCS else None)
            if target in known and m.group(2) not in known[target]:
                broken.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not broken, "links to missing anchors: " + "; ".join(broken)


def test_every_code_location_in_the_docs_exists():
    """docs/*.md and the README name code by path (``sound2img/manipulation/masking.py``,
    ``configs/audio/logmel.yaml``, ``tests/...``): each one must exist, so a moved module
    cannot leave the documents pointing at nothing."""
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in CODE_PATH.finditer(doc.read_text(encoding="utf-8")):
            if not (ROOT / m.group(1)).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {m.group(1)}")
    assert not missing, "documents name paths that do not exist: " + "; ".join(sorted(set(missing)))


def test_the_checker_sees_a_bad_citation(tmp_path):
    """Positive control for the patterns above."""
    assert CITATION.search("see docs/method.md §2, §7").groups()[:2] == ("method", "2")
    assert "99" not in sections(DOCS["method"])
    assert "3-adaptive-layer-masking" in anchors(DOCS["method"])
    assert any(word in "as in ../shared/specs/paper.md §4" for word in OUTSIDE)
    found = [
        m.group(1)
        for m in CODE_PATH.finditer(
            "`sound2img/gone.py`, ~/.cache/sound2img/x.pth, configs/encoder/<name>.yaml, tests/data/"
        )
    ]
    assert found == ["sound2img/gone.py", "tests/data"]
