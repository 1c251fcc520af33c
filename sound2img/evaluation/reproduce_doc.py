"""What each table needs before it can run — checkpoints (registry names → URLs, cache
paths), datasets (config keys, layout) and sound files — read from the composed configs,
rendered as the Markdown of ``docs/reproduce.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sound2img.evaluation.tables import compose_table, get_table, list_tables, reproduce_config

DATASETS = {
    "esc50": (
        "ESC-50",
        "https://github.com/karolpiczak/ESC-50 (archive: https://github.com/karolpiczak/ESC-50/archive/master.zip)",
        "the unpacked `ESC-50-master/` (it holds `meta/esc50.csv` and `audio/*.wav`)",
    ),
    "us8k": (
        "UrbanSound8K",
        "https://urbansounddataset.weebly.com/urbansound8k.html (also https://zenodo.org/record/1203745)",
        "the unpacked `UrbanSound8K/` (it holds `metadata/UrbanSound8K.csv` and `audio/fold1..fold10/`)",
    ),
}


@dataclass
class Requirements:
    """What one table reads: registry names, dataset keys and user-provided files."""

    weights: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def add_weights(self, name: Any) -> None:
        from sound2img.errors import UserInputError
        from sound2img.weights import get_entry

        if not name:
            return
        try:
            entry = get_entry(str(name))
        except UserInputError:  # a file path the user gave: nothing to download
            if str(name) not in self.files:
                self.files.append(str(name))
            return
        if entry.name not in self.weights:
            self.weights.append(entry.name)

    def add_sound(self, spec: str) -> None:
        if spec.startswith("tone:"):
            return
        if spec.startswith("sample:"):
            self.add_weights(spec)
        elif spec not in self.files:
            self.files.append(spec)


def table_requirements(name: str, cfgs: Sequence) -> Requirements:
    """The checkpoints, datasets and files table ``name`` uses under its composed configs
    (the same choices ``tables.run_table`` makes)."""
    spec = get_table(name)
    typed = [reproduce_config(c) for c in cfgs]
    c, evals = typed[0], [t.eval for t in typed]
    req = Requirements()
    req.add_weights((c.encoder or {}).get("path"))
    if spec.uses_clip and c.clip is not None:
        pretrained = c.clip.pretrained
        if pretrained == "openai" and str(c.clip.model).replace("/", "-") == "ViT-B-32":
            pretrained = "openai_vit_b32"
        if c.clip.model != "tiny" and pretrained:
            req.add_weights(pretrained)
    for e in evals:
        for d in e.datasets or ([e.dataset] if e.dataset else []):
            if d not in req.datasets:
                req.datasets.append(d)

    def use_domain(domain_name: str | None, extra_lambda_id: float = 0.0) -> None:
        d = c.domains.get(domain_name) if domain_name else None
        g = c.generator
        req.add_weights((d and d.generator) or g.path or (None if g.name == "tiny" else g.name))
        lambda_id = d.lambda_id if d is not None and d.lambda_id is not None else c.manipulate.lambda_id
        if max(float(lambda_id), extra_lambda_id) > 0:
            req.add_weights(c.identity or "ir_se50")

    e = evals[0]
    if spec.edits == "attributes":
        for row in c.attributes:  # records {name, domain, sound, text}
            if not e.attributes or row.get("name") in e.attributes:
                use_domain(row.get("domain"))
                req.add_sound(str(row["sound"]))
    elif spec.edits == "figure":
        use_domain(e.domain, max(e.lambda_ids or [0]))
        req.add_sound(str(e.sound))
    elif spec.edits == "peer":
        use_domain(e.domain)
        req.add_weights(e.peer.encoder)  # its CLIP towers are in the same file
        for sound in e.sounds:
            req.add_sound(str(sound))
    return req


# what a registry file is for, by its format (the table's message names each missing file)
PURPOSES = {
    "rosinality_pt": "generator",
    "nvlabs_pkl": "generator",
    "soundclip_pth": "sound encoder",
    "audioclip_pt": "sound encoder",
    "wav2clip_pt": "sound encoder",
    "openai_clip": "CLIP",
    "arcface_pth": "identity loss",
    "audio": "sound",
}


def ensure_table_weights(table: str, cfgs) -> None:
    """Every registry file the table reads (``reproduce_doc.table_requirements``, the list of
    docs/reproduce.md) fetched before it starts; offline, one message names all missing ones.
    CLIP's towers already in open_clip's own cache count as there; under preset=tiny only
    the sample sounds are needed (the networks are random)."""
    from sound2img.evaluation.reproduce_doc import table_requirements
    from sound2img.factory import clip_source
    from sound2img.needs import Needs, ensure_weights
    from sound2img.weights import get_entry

    needs = Needs()
    c = reproduce_config(cfgs[0])
    towers = clip_source(c.clip)
    for name in table_requirements(table, cfgs).weights:
        entry = get_entry(name)
        if c.tiny and entry.format != "audio":  # preset=tiny: random networks, real sounds
            continue
        if entry.format != "openai_clip" or towers is not None:
            needs.add(name, PURPOSES.get(entry.format, entry.format))
    ensure_weights(needs)


def _table_section(name: str, req: Requirements) -> list[str]:
    from sound2img.weights import cached_path, get_entry

    spec = get_table(name)
    lines = [f"### `{name}` — {spec.paper}", ""]
    if req.weights:
        lines += [
            "Checkpoints and sample sounds (fetched into the cache on first use; offline, download each URL "
            "yourself and put the file at the cache path):",
            "",
            "| registry name | put it at | URL |",
            "|---|---|---|",
        ]
        for w in req.weights:
            entry = get_entry(w)
            where = f"`~/.cache/sound2img/{cached_path(entry).name}`"
            lines.append(f"| `{entry.name}` | {where} | {entry.url} |")
        lines.append("")
    for d in req.datasets:
        title, url, layout = DATASETS[d]
        lines.append(f"- Dataset {title}: {url}. Point `datasets.{d}.root` at {layout}.")
    for f in req.files:
        lines.append(f"- Your own file: `{f}` (a clip of that sound; put it there or pass `sounds_dir=PATH`).")
    if req.datasets or req.files:
        lines.append("")
    args = " ".join([f"datasets.{d}.root=PATH" for d in req.datasets] + (["sounds_dir=PATH"] if req.files else []))
    lines += ["```", f"python scripts/reproduce.py {name} {args}".rstrip() + " --out outputs/reproduce", "```", ""]
    return lines


def render_reproduce_doc(overrides: Sequence[str] = ()) -> str:
    """``docs/reproduce.md``: per table, exactly which checkpoints (registry name → URL) and
    datasets it needs, where to put them and the command, under the default configs
    (plus ``overrides``)."""
    lines = [
        "# Reproducing the paper's tables and figures",
        "",
        "`python scripts/reproduce.py TABLE` runs one table or figure end to end and writes `TABLE.md`, "
        "`TABLE.json` (and PNGs for figures) into `--out`, with the paper's numbers beside ours and a line "
        "naming the weights (file + sha256 prefix), data (root, folds, counts), audio front end and CLIP "
        "preprocessing used. `--list` names the tables; `--cfg job` prints the resolved config; any "
        "`key=value` overrides it (e.g. `encoder.path=my_encoder.safetensors` to evaluate your own encoder, "
        "`eval.n_latents=20` for a quicker run).",
        "",
        "Weights are looked up by registry name in the cache (`$SOUND2IMG_CACHE`, else "
        "`~/.cache/sound2img`) and downloaded there on first use; `python scripts/fetch_weights.py NAME ...` "
        "fetches them ahead of time and `--list` shows which are cached. Datasets are never downloaded for "
        "you: unpack them anywhere and pass their roots.",
        "",
        "Without any weights or data, `python scripts/reproduce.py fig_volume preset=tiny eval.sound=tone:440 "
        "--out outputs/tiny` runs the whole pipeline on small random networks in seconds — an install check, "
        "never a result.",
        "",
        "Sound files of the supplement's attributes: the registry has the authors' sample clips for six of "
        "them; `nose blowing` and `underwater bubbling` need clips of your own (the paper used VGGSound "
        "clips not seen in training) at `sounds_dir/nose_blowing.wav` and `sounds_dir/underwater_bubbling.wav` "
        "(`sounds_dir=PATH`, default `data/sounds`).",
        "",
        "TediGAN (supplement Table 2) is not run: its row shows the paper's number only.",
        "",
    ]
    for name in list_tables():
        lines += _table_section(name, table_requirements(name, compose_table(name, overrides)))
    return "\n".join(lines).rstrip() + "\n"


def save_reproduce_doc(path: str | Path | None = None) -> Path:
    """(Re)write ``docs/reproduce.md`` (or ``path``) atomically from the current configs."""
    from sound2img.utils.files import atomic_write_text

    path = Path(path) if path is not None else Path(__file__).resolve().parents[2] / "docs" / "reproduce.md"
    atomic_write_text(path, render_reproduce_doc())
    return path
