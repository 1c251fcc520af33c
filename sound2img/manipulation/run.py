"""The edge between a composed ``manipulate`` config and edits on disk: check every input
and output first, build the frozen networks, turn sounds/prompts into targets and seeds/
files into sources, optimise all (source, target) pairs in batches, write each edit."""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sound2img.errors import UserInputError
from sound2img.manipulation import guidance
from sound2img.manipulation.optimizer import EditResult, optimize_latents, optimizer_kwargs
from sound2img.manipulation.outputs import save_edit
from sound2img.models.stylegan2 import load_source_latents, mean_source_latents, sample_source_latents
from sound2img.utils.files import check_out_dir, staged_dir
from sound2img.utils.versions import package_versions

if TYPE_CHECKING:
    from sound2img.config import EditOptions, ManipulateConfig, ManipulateOptions
    from sound2img.factory import Networks

MODES = ("separate", "embedding_mix", "latent_mix", "layer_mix", "interpolate")
MIX_MODES = ("latent_mix", "layer_mix")
MIX_STRIP_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
FREE_OBJECTIVE = "d_cos alone (free generation: no λ_sim, no masking, no λ_ID)"


@dataclass
class Target:
    """One guidance target: ``emb [D]`` (normalised) and a record of where it came from."""

    label: str
    emb: torch.Tensor
    info: dict[str, Any]


@dataclass
class Source:
    """One source latent ``ws [1,num_ws,w_dim]`` and how it was made."""

    label: str
    ws: torch.Tensor
    info: dict[str, Any]


@dataclass
class PairResult:
    """One (source, target) pair's slice of an ``EditResult``."""

    source: Source
    target: Target
    ws: torch.Tensor  # [1,num_ws,w_dim]
    source_img: torch.Tensor  # [3,H,W]
    result_img: torch.Tensor  # [3,H,W]
    losses: dict[str, list[float]]
    initial_cosine: float
    final_cosine: float
    snapshots: dict[int, torch.Tensor]  # step → [3,H,W]
    layer_mask: list[float] | None
    timing: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"  # the optimiser's resolved compute precision


@dataclass
class EditPlan:
    """An edit's checked options (``check_options``): the config's ``edit`` and
    ``manipulate`` sections, and ``optim``, the ``optimize_latents`` keyword arguments."""

    edit: EditOptions
    manipulate: ManipulateOptions
    optim: dict[str, Any]


def check_options(cfg: ManipulateConfig) -> EditPlan:
    """The ``edit`` and ``manipulate`` sections of a config as one ``EditPlan``. Each key's
    type and range was checked at composition (``sound2img/config.py``); here only what
    relates several keys: a source to edit from and the targets the mode needs."""
    e, m = cfg.edit, cfg.manipulate
    if e.mean_latent:
        # Free generation optimises d_cos alone, as the authors' (StyleCLIP's) free_generation
        # mode does: there is no source image to stay near, so no λ_sim, masking or λ_ID.
        m = dataclasses.replace(m, lambda_sim=0.0, lambda_id=0.0)
    o = EditPlan(e, m, optimizer_kwargs(dataclasses.asdict(m)))
    if any(not t.strip() for t in e.text):
        raise UserInputError("edit.text: a prompt is empty")
    if not (e.latents or e.mean_latent or e.seeds or e.images):
        raise UserInputError(
            "no source: give a seed (--seed), latent files (--latent), photos (--image) or edit.mean_latent=true"
        )
    n_audio, n_text = len(e.audio), len(e.text)
    mode = e.mode
    if mode == "separate" and n_audio + n_text == 0:
        raise UserInputError("nothing to edit towards: give --audio and/or --text")
    if mode == "embedding_mix" and n_audio + n_text < 2:
        raise UserInputError("edit.mode=embedding_mix needs at least two of --audio/--text to mix")
    if mode in MIX_MODES and (n_audio, n_text) != (1, 1):
        raise UserInputError(f"edit.mode={mode} needs exactly one --audio and one --text, got {n_audio} and {n_text}")
    if mode == "interpolate" and (n_audio, n_text) != (2, 0):
        raise UserInputError(
            f"edit.mode=interpolate needs exactly two --audio and no --text, got {n_audio} and {n_text}"
        )
    return o


def _slug(text: str, limit: int = 32) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit].lower() or "x"


def load_sounds(o: EditPlan, frontend) -> list[torch.Tensor]:
    """``o.edit.audio`` → wavs [S] at the front end's rate (only the part it looks at of a
    long file)."""
    e = o.edit
    return [guidance.load_sound_for_frontend(spec, frontend, full_seconds=e.full_file_seconds) for spec in e.audio]


def resolve_targets(
    o: EditPlan,
    *,
    clip,
    encoder=None,
    frontend=None,
    wavs: list[torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> list[Target]:
    """Sounds (``wavs``, read by :func:`load_sounds` when not given) and prompts → the
    targets of ``o.edit.mode``, each computed once."""
    e = o.edit
    sounds = []
    if e.audio:
        wavs = load_sounds(o, frontend) if wavs is None else wavs
        embs = guidance.encode_sounds(wavs, encoder, frontend, gain_db=e.gain_db, device=device)
        sounds = [
            Target(f"sound-{guidance.describe_sound(s)}", embs[i], {"kind": "sound", "spec": s, "gain_db": e.gain_db})
            for i, s in enumerate(e.audio)
        ]
    texts = []
    if e.text:
        embs = guidance.encode_texts(list(e.text), clip).to(device)
        texts = [Target(f"text-{_slug(t)}", embs[i], {"kind": "text", "prompt": t}) for i, t in enumerate(e.text)]
    mode = e.mode
    if mode in ("separate", *MIX_MODES):
        return sounds + texts
    if mode == "embedding_mix":
        alpha = e.mix_weight if sounds and texts else (0.0 if sounds else 1.0)
        weights = [(1 - alpha) / len(sounds)] * len(sounds) + [alpha / max(len(texts), 1)] * len(texts)
        parts = sounds + texts
        emb = guidance.mix_embeddings(torch.stack([p.emb for p in parts]), weights)
        return [Target("mix", emb, {"kind": "embedding_mix", "parts": [p.info for p in parts], "weights": weights})]
    a, b = sounds
    embs = guidance.interpolate_embeddings(a.emb, b.emb, e.interp_steps, e.interp_mode)
    n = e.interp_steps
    return [
        Target(
            f"interp{k:02d}",
            embs[k],
            {"kind": "interpolation", "from": a.info, "to": b.info, "t": k / (n - 1), "mode": e.interp_mode},
        )
        for k in range(n)
    ]


def resolve_sources(o: EditPlan, generator, device: torch.device | str = "cpu") -> list[Source]:
    """Latent files, else the mean latent, else one source per seed."""
    e, truncation = o.edit, o.manipulate.truncation
    if e.latents:
        out = []
        for path in e.latents:
            ws = load_source_latents([path], generator).to(device)
            stem = _slug(Path(path).stem)
            for i in range(ws.shape[0]):
                label = stem if ws.shape[0] == 1 else f"{stem}-{i}"
                out.append(Source(label, ws[i : i + 1], {"kind": "latent_file", "path": str(path), "index": i}))
        return out
    if e.mean_latent:
        info = {"kind": "mean_latent", "objective": FREE_OBJECTIVE}
        return [Source("mean", mean_source_latents(generator).to(device), info)]
    ws = sample_source_latents(generator, list(e.seeds), truncation, device)
    return [
        Source(f"seed{s}", ws[i : i + 1], {"kind": "seed", "seed": s, "truncation": truncation})
        for i, s in enumerate(e.seeds)
    ]


def image_sources(
    cfg: ManipulateConfig, o: EditPlan, generator, device, progress: bool = False, on_progress=None
) -> list[Source]:
    """``--image`` photos → sources, each inverted once and cached (``inversion.command``;
    ``on_progress(stage, done, total)``: the inversion's progress, a true return stops it)."""
    if not o.edit.images:
        return []
    from sound2img.inversion.command import invert_for_edit

    out = []
    images = list(o.edit.images)
    for ws, info in invert_for_edit(cfg, images, generator, device, progress=progress, on_progress=on_progress):
        out.append(Source(f"photo-{_slug(Path(info['path']).stem)}", ws, info))
    return out


def edit_quality(quality, r: PairResult) -> dict[str, Any]:
    """Source↔result scores of one edit (``metrics.QualityMetrics``: PSNR, LPIPS, identity
    for face generators), the CLIP cosines to the target and the per-layer latent
    distance from the source."""
    from sound2img.metrics import layer_distance

    out = quality.compare(r.source_img[None], r.result_img[None])
    out["clip_cosine_source"] = {"value": r.initial_cosine}
    out["clip_cosine_result"] = {"value": r.final_cosine}
    out["layer_distance"] = [float(x) for x in layer_distance(r.ws.cpu(), r.source.ws.cpu())[0]]
    return out


def optimize_pairs(
    pairs: list[tuple[Source, Target]],
    o: EditPlan,
    *,
    generator,
    clip,
    identity=None,
    noise_mode: str = "const",
    progress: bool = False,
    on_step=None,
) -> list[PairResult]:
    """Run every (source, target) pair through the optimiser, ``o.edit.batch_size`` at a
    time (``on_step``: the optimiser's per-step callback, called for each batch)."""
    every, batch = o.manipulate.strip_every, o.edit.batch_size
    snaps = tuple(range(every, o.manipulate.steps, every)) if every else ()
    out = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        res: EditResult = optimize_latents(
            generator,
            clip.encode_image,
            torch.cat([s.ws for s, _ in chunk]),
            torch.stack([t.emb for _, t in chunk]),
            **o.optim,
            identity=identity,
            snapshot_steps=snaps,
            noise_mode=noise_mode,
            progress=progress,
            on_step=on_step,
        )
        seconds = sum(res.step_seconds)
        for i, (s, t) in enumerate(chunk):
            out.append(
                PairResult(
                    s,
                    t,
                    res.ws[i : i + 1],
                    res.source_img[i],
                    res.result_img[i],
                    {k: [float(x) for x in v[:, i]] for k, v in res.losses.items()},
                    float(res.initial_cosine[i]),
                    float(res.final_cosine[i]),
                    {k: v[i] for k, v in res.snapshots.items()},
                    None if res.layer_mask is None else [float(x) for x in res.layer_mask[i]],
                    {"optimise_s": seconds, "step_s_mean": seconds / len(res.step_seconds), "batch_size": len(chunk)},
                    res.precision,
                )
            )
    return out


@torch.no_grad()
def _render(generator, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
    device = next(iter(generator.parameters())).device
    return generator.synthesis(ws.to(device), noise_mode=noise_mode).cpu()


@torch.no_grad()
def _cosine(clip, img: torch.Tensor, emb: torch.Tensor) -> float:
    return float((clip.encode_image(img) * emb.to(clip.device)).sum(-1)[0])


def _run_record(r: PairResult) -> dict[str, Any]:
    return {
        "target": r.target.info,
        "losses": r.losses,
        "initial_cosine": r.initial_cosine,
        "final_cosine": r.final_cosine,
        "layer_mask": r.layer_mask,
        "timings": r.timing,
    }


def _finish_mix(sound: PairResult, text: PairResult, o: EditPlan, *, generator, clip, noise_mode: str):
    """Supplement §C: combine the sound-guided and text-guided results of one source."""
    e = o.edit
    if e.mode == "latent_mix":
        alpha = e.mix_weight
        ws = guidance.mix_latents(sound.ws, text.ws, alpha)
        frames_ws = torch.cat([guidance.mix_latents(sound.ws, text.ws, a) for a in MIX_STRIP_ALPHAS])
        strip = [sound.source_img, *_render(generator, frames_ws, noise_mode)]
        detail = {"alpha": alpha, "strip": ["source"] + [f"alpha={a}" for a in MIX_STRIP_ALPHAS]}
    else:
        split = e.layer_split if e.layer_split is not None else generator.num_ws // 2
        coarse, fine = (sound, text) if e.coarse_from == "sound" else (text, sound)
        ws = guidance.mix_layers(coarse.ws, fine.ws, split)
        strip = [sound.source_img, sound.result_img, text.result_img, _render(generator, ws, noise_mode)[0]]
        detail = {
            "layer_split": split,
            "coarse_from": e.coarse_from,
            "strip": ["source", "sound", "text", "layer_mix"],
        }
    result_img = _render(generator, ws, noise_mode)[0]
    cos = {
        "sound": _cosine(clip, result_img[None], sound.target.emb),
        "text": _cosine(clip, result_img[None], text.target.emb),
    }
    record = {"mix": detail, "final_cosine": cos, "runs": {"sound": _run_record(sound), "text": _run_record(text)}}
    return ws, result_img, strip, record


def check_layer_split(o: EditPlan, generator) -> None:
    """``edit.layer_split`` must fall inside the generator's W+ rows (known once it is built)."""
    split = o.edit.layer_split
    if o.edit.mode == "layer_mix" and split is not None and split > generator.num_ws:
        raise UserInputError(f"edit.layer_split={split} is beyond this generator's {generator.num_ws} W+ rows")


def run_edit(
    cfg: ManipulateConfig, *, progress: bool | None = None, nets: Networks | None = None, on_step=None, on_invert=None
) -> list[Path]:
    """Run the edits a ``manipulate`` config describes; returns the edit directories
    written (``cfg.out`` itself for a single edit, else one per edit inside it). Every
    input and the output directory are checked before the optimisation; nothing is
    written before all edits are done, and a new ``out`` appears whole or not at all.

    ``nets``: the caller's ``factory.Networks`` (the web app: one for every request), so
    networks are built once and reused; without it a fresh one on ``cfg.device``.
    ``on_step``: the optimiser's per-step callback (progress; a true return stops the run
    with ``EditStopped`` and nothing is written). ``on_invert(stage, done, total)``: the
    same for a photo's inversion (``inversion.run.invert_image``; stops with
    ``InversionStopped``)."""
    from sound2img import factory
    from sound2img.needs import edit_needs, ensure_weights

    t0 = time.perf_counter()
    o = check_options(cfg)
    out = check_out_dir(cfg.out or "outputs/edit", cfg.overwrite)
    nets = factory.Networks(cfg.device) if nets is None else nets
    device = nets.device
    progress = cfg.progress if progress is None else progress
    noise_mode = cfg.generator.noise_mode

    # every weight file first: offline, one message names all that are missing
    ensure_weights(edit_needs(cfg), progress=progress)

    # Cheapest checks first: the sounds and latent files fail before CLIP is built.
    encoder = frontend = wavs = None
    if o.edit.audio:
        encoder, frontend = nets.encoder(cfg.encoder, cfg.audio)
        wavs = load_sounds(o, frontend)
    G = nets.generator(cfg.generator)
    check_layer_split(o, G)
    sources = image_sources(cfg, o, G, device, progress, on_invert)
    if o.edit.latents or o.edit.mean_latent or o.edit.seeds:
        sources += resolve_sources(o, G, device)
    if encoder is None and factory.towers_from_encoder(cfg.clip):
        encoder, _ = nets.encoder(cfg.encoder, cfg.audio)
    clip = nets.clip(cfg.clip, encoder)
    targets = resolve_targets(o, clip=clip, encoder=encoder, frontend=frontend, wavs=wavs, device=device)
    del encoder, wavs  # the targets are fixed from here on
    identity = nets.identity(factory.identity_source(cfg)) if o.manipulate.lambda_id > 0 else None
    setup_s = time.perf_counter() - t0

    pairs = [(s, t) for s in sources for t in targets]
    results = optimize_pairs(
        pairs, o, generator=G, clip=clip, identity=identity, noise_mode=noise_mode, progress=progress, on_step=on_step
    )

    from sound2img.inversion.command import quality_metrics

    quality = quality_metrics(cfg, device, faces=cfg.generator.faces, clip=clip)
    common = {"config": dataclasses.asdict(cfg), "device": str(device), "versions": package_versions()}
    edits = assemble_edits(
        o,
        sources,
        results,
        generator=G,
        clip=clip,
        noise_mode=noise_mode,
        setup_s=setup_s,
        common=common,
        quality=quality,
    )
    return write_edits(out, edits, overwrite=cfg.overwrite)


def assemble_edits(
    o: EditPlan,
    sources: list[Source],
    results: list[PairResult],
    *,
    generator,
    clip,
    noise_mode: str,
    setup_s: float,
    common: dict[str, Any],
    quality=None,
) -> list[tuple[str, dict[str, Any]]]:
    """Optimised pairs (in ``sources × targets`` order) → ``(label, save_edit kwargs)`` per
    edit: one per pair, or one per source in the mixing modes (``common``: the metrics
    every edit records — config, device, versions; ``quality``: the
    ``metrics.QualityMetrics`` behind each edit's ``quality`` block)."""
    edits, mode, steps = [], o.edit.mode, o.manipulate.steps
    if mode in MIX_MODES:
        for k, s in enumerate(sources):
            sound, text = results[2 * k], results[2 * k + 1]
            ws, result_img, strip, record = _finish_mix(
                sound, text, o, generator=generator, clip=clip, noise_mode=noise_mode
            )
            metrics = {
                "edit": {"mode": mode, "source": s.info},
                "precision": sound.precision,
                **record,
                "timings": {"setup_s": setup_s},
                **common,
            }
            edits.append(
                (
                    f"{s.label}_{mode}",
                    dict(
                        source_img=sound.source_img,
                        result_img=result_img,
                        strip=strip,
                        ws=ws,
                        metrics=metrics,
                        extra_latents={"sound_latent.pt": sound.ws, "text_latent.pt": text.ws},
                    ),
                )
            )
    else:
        for r in results:
            strip = [r.source_img, *(r.snapshots[k] for k in sorted(r.snapshots)), r.result_img]
            metrics = {
                "edit": {"mode": mode, "source": r.source.info, "target": r.target.info},
                **({"quality": edit_quality(quality, r)} if quality is not None else {}),
                "steps": steps,
                "precision": r.precision,
                "losses": r.losses,
                "initial_cosine": r.initial_cosine,
                "final_cosine": r.final_cosine,
                "layer_mask": r.layer_mask,
                "strip_steps": [0, *sorted(r.snapshots), steps],
                "timings": {"setup_s": setup_s, **r.timing},
                **common,
            }
            edits.append(
                (
                    f"{r.source.label}_{r.target.label}",
                    dict(source_img=r.source_img, result_img=r.result_img, strip=strip, ws=r.ws, metrics=metrics),
                )
            )
    return edits


def write_edits(out: Path, edits: list[tuple[str, dict[str, Any]]], *, overwrite: bool = False) -> list[Path]:
    """Write ``assemble_edits``' edits: one edit's files in ``out`` itself, several in one
    ``NN_label`` sub-directory each; a new ``out`` appears whole or not at all."""
    # an index keeps labels unique when a seed, file or sound is given twice
    names = [""] if len(edits) == 1 else [f"{i:02d}_{label}" for i, (label, _) in enumerate(edits)]
    with staged_dir(out) as root:
        for name, (_, kwargs) in zip(names, edits):
            save_edit(root / name if name else root, overwrite=overwrite, **kwargs)
    return [out / name if name else out for name in names]
