"""``scripts/report.py``: one self-contained HTML page (images, sounds and plots embedded
as data URIs, no network resource) for an outputs directory: a card per edit that
``manipulate.py`` wrote (any directory holding ``metrics.json`` beside ``result.png``),
sortable by any of its numbers, its quality scores included; a card per video of
``video.py`` (``metrics.json`` beside ``video.mp4``: the video and its contact sheet); the
other pictures (``reproduce.py``'s figures); and for a training run (``metrics.jsonl``), a
plot of each logged quantity against the step. Each distinct sound is stored once in the
page and every card that plays it refers to it."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from sound2img.errors import UserInputError
from sound2img.utils.files import atomic_write_text, check_can_write

EDIT_IMAGES = ("source.png", "result.png", "strip.png")
# metrics.json entries that are records, not numbers of the edit
NOT_METRICS = {"config", "versions", "edit", "losses", "layer_mask", "strip_steps", "runs", "mix", "device"}
AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".opus": "audio/ogg",
    ".webm": "audio/webm",
}
MAX_EMBED_BYTES = 20 * 2**20  # a sound file larger than this is linked relatively, not embedded


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _score(value: Any) -> float | None:
    """A number, or a score record's (``{"value": x}``, as ``metrics.QualityMetrics`` writes)."""
    return _number(value.get("value")) if isinstance(value, dict) else _number(value)


def edit_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The sortable numbers of one edit: top-level numbers, numbers and score records one
    level down in dicts (``final_cosine.sound``, ``timings.optimise_s``, ``quality.psnr``,
    ``quality.lpips``), and each loss term's last value (``loss.total``)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in NOT_METRICS:
            continue
        if isinstance(value, dict) and "value" not in value:
            for sub, v in value.items():
                if (n := _score(v)) is not None:
                    out[f"{key}.{sub}"] = n
        elif (n := _score(value)) is not None:
            out[key] = n
    for name, values in (metrics.get("losses") or {}).items():
        if values and (n := _number(values[-1])) is not None:
            out[f"loss.{name}"] = n
    return out


def _targets(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target record of an edit (a mix's parts and both runs included)."""
    found = []

    def walk(t):
        if isinstance(t, dict):
            if t.get("kind") in ("sound", "text"):
                found.append(t)
            for key in ("parts", "from", "to"):
                for sub in t.get(key) if isinstance(t.get(key), list) else [t.get(key)]:
                    walk(sub)

    walk((metrics.get("edit") or {}).get("target"))
    for run in (metrics.get("runs") or {}).values():
        walk(run.get("target"))
    return found


def sound_source(spec: str, base: Path, out_dir: Path) -> tuple[str, str] | None:
    """(src, note) for an <audio> of a sound spec: a file embedded (or linked relatively
    when large), a registry sample from the local cache (never downloaded here), a
    ``tone:HZ`` made again; None when it cannot be found."""
    import soundfile as sf

    if spec.startswith("tone:"):
        from sound2img.manipulation.guidance import load_sound

        buf = io.BytesIO()
        sf.write(buf, load_sound(spec, 16000).numpy(), 16000, format="WAV", subtype="PCM_16")
        return data_uri(buf.getvalue(), "audio/wav"), spec
    if spec.startswith("sample:"):
        from sound2img.weights import resolve_weights

        try:
            path = resolve_weights("sample_" + spec[len("sample:") :], allow_download=False)
        except UserInputError:
            return None
    else:
        path = Path(spec)
        if not path.is_absolute():
            path = next((p for p in (Path.cwd() / path, base / path) if p.is_file()), path)
        if not path.is_file():
            return None
    mime = AUDIO_TYPES.get(path.suffix.lower())
    if mime is None:  # a video's sound track: not played here
        return None
    if path.stat().st_size > MAX_EMBED_BYTES:
        return os.path.relpath(path.resolve(), out_dir.resolve()), f"{spec} (linked, not embedded)"
    return data_uri(path.read_bytes(), mime), spec


def unavailable_scores(metrics: dict[str, Any]) -> dict[str, str]:
    """``quality.<name>`` → why that score is missing (its network was not there)."""
    quality = metrics.get("quality") or {}
    return {
        f"quality.{k}": str(v["unavailable"])
        for k, v in quality.items()
        if isinstance(v, dict) and v.get("unavailable") is not None
    }


class SoundStore:
    """The page's sounds, each stored once (base64) and played by every card that refers
    to it: a card's ``<audio data-sound=ID>`` gets its source from the store when the page
    loads (one Blob per sound, ``SCRIPT``)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # data URI → id
        self.data: dict[str, list[str]] = {}  # id → [mime, base64]

    def player(self, src: str) -> str:
        """The ``<audio>`` of a source: a data URI (stored once) or a relative link."""
        if not src.startswith("data:"):
            return f'<audio controls preload="none" src="{html.escape(src)}"></audio>'
        if src not in self.ids:
            head, b64 = src.split(",", 1)
            self.ids[src] = sid = f"s{len(self.ids)}"
            self.data[sid] = [head[len("data:") :].split(";")[0], b64]
        return f'<audio controls preload="none" data-sound="{self.ids[src]}"></audio>'

    def script(self) -> str:
        """The stored sounds as a JSON block (base64 holds no ``<``, so it cannot end the tag)."""
        return f'<script type="application/json" id="sounds">{json.dumps(self.data)}</script>'


def find_edits(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) that hold one edit."""
    dirs = [p.parent for p in root.rglob("metrics.json") if (p.parent / "result.png").is_file()]
    return sorted(dirs, key=lambda p: p.relative_to(root).as_posix())


def find_videos(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) that hold one finished video."""
    dirs = [p.parent for p in root.rglob("metrics.json") if (p.parent / "video.mp4").is_file()]
    return sorted(dirs, key=lambda p: p.relative_to(root).as_posix())


def video_card(d: Path, root: Path, out_dir: Path) -> str:
    """One video's card (HTML): the video (embedded, or linked relatively when large), its
    contact sheet, the sound, its settings and numbers."""
    try:
        metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{d / 'metrics.json'}: not readable JSON ({exc})") from exc
    name = d.relative_to(root).as_posix() if d != root else d.name
    mp4 = d / "video.mp4"
    src = (
        os.path.relpath(mp4.resolve(), out_dir.resolve())
        if mp4.stat().st_size > MAX_EMBED_BYTES
        else data_uri(mp4.read_bytes(), "video/mp4")
    )
    v = metrics.get("video") or {}
    parts = [
        f'<article class="video" data-name="{html.escape(name)}">',
        f"<h2>{html.escape(name)}</h2>",
        f'<div class="pics"><video controls preload="metadata" src="{html.escape(src)}"></video>',
    ]
    if (d / "contact_sheet.png").is_file():
        sheet = data_uri((d / "contact_sheet.png").read_bytes(), "image/png")
        parts.append(
            f'<figure class="strip"><img alt="contact sheet" src="{sheet}"><figcaption>keyframes</figcaption></figure>'
        )
    parts.append("</div>")
    spec = (metrics.get("sound") or {}).get("spec")
    if spec:
        parts.append(f"<p>sound: {html.escape(str(spec))}</p>")
    for warning in metrics.get("warnings") or []:
        parts.append(f'<p class="warning">warning: {html.escape(str(warning))}</p>')
    keyframes = metrics.get("keyframes") or []
    numbers = {k: v[k] for k in ("mode", "fps", "frames", "duration_s", "interpolation") if k in v}
    numbers["source"] = ", ".join(f"{k}={x}" for k, x in (metrics.get("source") or {}).items())
    numbers["keyframes"] = len(keyframes)
    for key in ("cosine_source", "cosine_after"):
        values = [k[key] for k in keyframes if _number(k.get(key)) is not None]
        if values:
            numbers[f"mean {key}"] = _fmt(sum(values) / len(values))
    if _number(metrics.get("frames_per_s")) is not None:
        numbers["frames rendered per second"] = _fmt(metrics["frames_per_s"])
    parts.append(
        '<table class="metrics">'
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(x))}</td></tr>" for k, x in numbers.items())
        + "</table></article>"
    )
    return "\n".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def edit_card(d: Path, root: Path, out_dir: Path, store: SoundStore | None = None) -> tuple[str, list[str]]:
    """One edit's card (HTML) and the names of its numbers (its sounds go to ``store``)."""
    store = SoundStore() if store is None else store
    try:
        metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{d / 'metrics.json'}: not readable JSON ({exc})") from exc
    name = d.relative_to(root).as_posix() if d != root else d.name
    numbers = edit_numbers(metrics)
    cfg = metrics.get("config") or {}
    settings = {k: v for k, v in (cfg.get("manipulate") or {}).items()}
    edit = metrics.get("edit") or {}
    settings["mode"] = edit.get("mode")
    src = edit.get("source") or {}
    settings["source"] = ", ".join(f"{k}={v}" for k, v in src.items())
    settings["generator"] = (cfg.get("generator") or {}).get("path") or (cfg.get("generator") or {}).get("name")
    targets = _targets(metrics)
    prompts = [t["prompt"] for t in targets if t.get("kind") == "text"]
    sounds = [t["spec"] for t in targets if t.get("kind") == "sound"]
    attrs = " ".join(f'data-m-{_attr(k)}="{v!r}"' for k, v in numbers.items())
    parts = [
        f'<article class="card" data-name="{html.escape(name)}" {attrs}>',
        f"<h2>{html.escape(name)}</h2>",
        '<div class="pics">',
    ]
    for img in EDIT_IMAGES:
        if (d / img).is_file():
            cls = "strip" if img == "strip.png" else "pic"
            parts.append(
                f'<figure class="{cls}"><img alt="{img}" src="{data_uri((d / img).read_bytes(), "image/png")}">'
                f"<figcaption>{img[:-4]}</figcaption></figure>"
            )
    parts.append("</div>")
    for spec in dict.fromkeys(sounds):
        found = sound_source(spec, d, out_dir)
        if found:
            parts.append(f"<p>sound: {html.escape(found[1])}<br>{store.player(found[0])}</p>")
        else:
            parts.append(f"<p>sound: {html.escape(spec)} (file not found here)</p>")
    if prompts:
        parts.append("<p>prompt: " + "; ".join(f"“{html.escape(p)}”" for p in prompts) + "</p>")
    parts.append(
        "<details><summary>settings</summary><table>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in settings.items()
            if v is not None
        )
        + "</table></details>"
    )
    parts.append(
        '<table class="metrics">'
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in numbers.items())
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td>unavailable: {html.escape(why)}</td></tr>"
            for k, why in unavailable_scores(metrics).items()
        )
        + "</table>"
    )
    parts.append("</article>")
    return "\n".join(parts), list(numbers)


def _attr(name: str) -> str:
    """A metric name as an HTML data-attribute suffix (lower case, [a-z0-9-])."""
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def run_plots(run_dir: Path) -> str:
    """A training run's ``metrics.jsonl`` → one embedded PNG: each logged number against
    the step (losses, logit scale, learning rate, skipped samples, zero-shot accuracy)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:  # a torn last line of a killed run
                continue
    series: dict[str, tuple[list[float], list[float]]] = {}
    for rec in records:
        step = _number(rec.get("step"))
        if step is None:
            continue
        for key, value in rec.items():
            if key in ("step", "epoch") or (n := _number(value)) is None:
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(step)
            ys.append(n)
    if not series:
        return f"<p>{html.escape(str(run_dir))}: metrics.jsonl has no numbers yet</p>"
    cols = 3
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows), dpi=90)
    FigureCanvasAgg(fig)
    for i, (key, (xs, ys)) in enumerate(sorted(series.items())):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return (
        f'<figure class="plots"><img alt="training curves" src="{data_uri(buf.getvalue(), "image/png")}">'
        f"<figcaption>{len(records)} records, {len(series)} quantities</figcaption></figure>"
    )


SCRIPT = """
function sortCards() {
  const key = document.getElementById('sort-key').value, dir = document.getElementById('sort-dir').value;
  const box = document.getElementById('cards');
  const cards = [...box.querySelectorAll('.card')];
  const val = c => key === 'name' ? c.dataset.name : parseFloat(c.getAttribute('data-m-' + key));
  cards.sort((a, b) => {
    const x = val(a), y = val(b);
    if (key !== 'name') {  // cards without the number go last
      if (isNaN(x) && isNaN(y)) return 0; if (isNaN(x)) return 1; if (isNaN(y)) return -1;
    }
    const c = x < y ? -1 : x > y ? 1 : 0;
    return dir === 'desc' ? -c : c;
  });
  cards.forEach(c => box.appendChild(c));
}
// every sound is stored once (#sounds); each player gets one shared Blob URL of it
document.addEventListener('DOMContentLoaded', () => {
  const store = document.getElementById('sounds');
  if (!store) return;
  const data = JSON.parse(store.textContent), urls = {};
  for (const a of document.querySelectorAll('audio[data-sound]')) {
    const id = a.dataset.sound;
    if (!(id in urls)) {
      const [mime, b64] = data[id], bin = atob(b64), bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      urls[id] = URL.createObjectURL(new Blob([bytes], {type: mime}));
    }
    a.src = urls[id];
  }
});
"""
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.card,.video{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:.8em 0}
video{width:384px;max-width:100%;image-rendering:pixelated}.warning{color:#a40}
.card h2,.video h2{font-size:1em;margin:0 0 .5em}.pics{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-end}
figure{margin:0}figure.pic img{width:192px;image-rendering:pixelated}figure.strip img{height:192px;max-width:100%}
figure.plots img{max-width:100%}figcaption{font-size:.8em;color:#666}
table{border-collapse:collapse;font-size:.85em}th,td{padding:.1em .6em;text-align:left;border-bottom:1px solid #eee}
"""


def build_report(root: str | os.PathLike, out: str | os.PathLike) -> str:
    """The report page of ``root`` (HTML text); ``out`` is where it will live (for the
    relative links of large sounds)."""
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"{root}: no such directory")
    out_dir = Path(out).resolve().parent
    edits = find_edits(root)
    videos = find_videos(root)
    runs = sorted({p.parent for p in root.rglob("metrics.jsonl")})
    edit_dirs = set(edits) | set(videos)
    figures = sorted(p for p in root.rglob("*.png") if p.parent not in edit_dirs)
    if not (edits or videos or runs or figures):
        raise UserInputError(
            f"{root}: no edits (metrics.json + result.png), videos (metrics.json + video.mp4), "
            "training runs (metrics.jsonl) or pictures found"
        )
    body, keys, sounds = [], {}, SoundStore()
    for d in edits:
        card, names = edit_card(d, root, out_dir, sounds)
        body.append(card)
        keys.update(dict.fromkeys(names))
    sections = [
        f"<h1>sound2img report — {html.escape(root.resolve().name)}</h1>",
        f"<p>{len(edits)} edits, {len(videos)} videos, {len(runs)} training runs, {len(figures)} other pictures</p>",
    ]
    for run in runs:
        name = run.relative_to(root).as_posix() if run != root else run.name
        sections.append(f'<section class="run"><h2>training run {html.escape(name)}</h2>{run_plots(run)}</section>')
    if edits:
        options = "".join(f'<option value="{_attr(k)}">{html.escape(k)}</option>' for k in keys)
        sections.append(
            '<p>sort by <select id="sort-key" onchange="sortCards()"><option value="name">name</option>'
            f'{options}</select> <select id="sort-dir" onchange="sortCards()"><option value="asc">'
            'ascending</option><option value="desc">descending</option></select></p>'
        )
        sections.append('<div id="cards">' + "\n".join(body) + "</div>")
        if sounds.data:
            sections.append(sounds.script())
    if videos:
        sections.append('<div id="videos">' + "\n".join(video_card(d, root, out_dir) for d in videos) + "</div>")
    for p in figures:
        sections.append(
            f'<figure class="plots"><img alt="{html.escape(p.name)}" '
            f'src="{data_uri(p.read_bytes(), "image/png")}"><figcaption>'
            f"{html.escape(p.relative_to(root).as_posix())}</figcaption></figure>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>sound2img report</title>'
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def main(argv) -> int:
    """``scripts/report.py DIR --out report.html``."""
    from sound2img.cli import script_parser

    p = script_parser(
        "report.py",
        "One self-contained HTML page (works offline) for an outputs "
        "directory: a card per edit of manipulate.py, sortable by any metric; a card per "
        "video of video.py; reproduce.py's figures; plots of a training run's metrics.jsonl.",
        "examples:\n  python scripts/report.py outputs/edit-rain --out rain.html\n"
        "  python scripts/report.py runs/esc50 --out esc50.html",
    )
    p.add_argument("dir", help="an outputs directory of manipulate.py, video.py or reproduce.py, or a training run")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (default: off)")
    args = p.parse_args(list(argv))
    print(write_report(args.dir, args.out, overwrite=args.overwrite))
    return 0


def write_report(root: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check ``out``, build the page, write it atomically."""
    out = Path(out)
    check_can_write([out], overwrite)
    page = build_report(root, out)
    atomic_write_text(out, page)
    return out
