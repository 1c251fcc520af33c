"""The edge between a composed ``reproduce`` config and one table or figure on disk: the
registry of tables (each registered once, by its runner: ``list_tables``, ``get_table``),
the config as its schema's dataclasses (``reproduce_config``), networks, datasets, sources
and optimiser arguments (``TableContext``), then the evaluation module's function and
``save_report``."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from sound2img.cli import compose, to_object, to_plain, to_schema
from sound2img.data.prompts import encode_class_texts
from sound2img.errors import UserInputError
from sound2img.evaluation.attribute_classification import supp_table2, supp_table2_report
from sound2img.evaluation.attribute_edits import attribute_job_rows, collect_attribute_edits, parse_attributes
from sound2img.evaluation.edit_figures import (
    FigureEdit,
    fig_audioclip_comparison,
    fig_interpolation,
    fig_lambda_grid,
    fig_volume,
)
from sound2img.evaluation.embed import encode_folds
from sound2img.evaluation.figures import fig_audio_text_tsne, fig_tsne_directions
from sound2img.evaluation.latent_stats import supp_table1, supp_table1_report
from sound2img.evaluation.linear_probe import DEFAULT_CS, run_linear_probe
from sound2img.evaluation.report import Report, classification_report, save_report
from sound2img.evaluation.table_context import TableContext
from sound2img.evaluation.zero_shot import run_zero_shot
from sound2img.registry import Registry
from sound2img.utils.files import atomic_write_text, check_can_write

if TYPE_CHECKING:
    from sound2img.config import EvalOptions, ReproduceConfig

Runner = Callable[[TableContext, list["EvalOptions"]], Report | None]


@dataclass(frozen=True)
class TableSpec:
    """One reproducible table or figure: the ``eval`` configs it composes (one per dataset
    for the zero-shot table), the files it writes, what it reproduces, the runner that
    computes it (``None`` on ranks other than 0 of a distributed run), and what it needs
    (``docs/reproduce.md``): CLIP towers, and the edits it makes (``attributes``: the
    supplement's rows; ``figure``: one sound; ``peer``: two encoders side by side).
    Registered once, in the list at the end of this module."""

    name: str
    evals: tuple[str, ...]
    pngs: tuple[str, ...]
    paper: str
    run: Runner
    uses_clip: bool = True
    edits: str | None = None


TABLES: Registry[TableSpec] = Registry("table", hint="see --list")  # filled below its runners


def list_tables() -> list[str]:
    """Names accepted by ``scripts/reproduce.py``."""
    return [name for name, _ in TABLES.items()]  # in the order of the paper


def get_table(name: str) -> TableSpec:
    """The table called ``name``; an unknown name is a one-line ``UserInputError``."""
    return TABLES.get(name)


def output_paths(name: str, out_dir: str | Path) -> list[Path]:
    """Every file ``name`` writes into ``out_dir``."""
    out = Path(out_dir)
    return [out / f"{name}.md", out / f"{name}.json", *(out / p for p in get_table(name).pngs)]


def compose_table(name: str, overrides: Sequence[str] = ()) -> list:
    """The composed ``reproduce`` config for each of the table's ``eval`` configs (what
    ``--cfg job`` prints)."""
    return [compose("reproduce", [f"eval={e}", *overrides]) for e in get_table(name).evals]


def reproduce_config(cfg) -> ReproduceConfig:
    """A composed ``reproduce`` config as its schema's dataclasses (``cli.to_object``). A
    dataset key left ``???`` (a root not given) becomes null: only a table that reads that
    dataset needs it, and says how to set it."""
    cfg = copy.deepcopy(cfg)
    for data in cfg.datasets.values():
        for k in [k for k in data if OmegaConf.is_missing(data, k)]:
            data[k] = None
    return to_object(cfg)


def reproduce(name: str, cfgs: Sequence, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Run table ``name`` from its composed configs (``compose_table``) and write its
    Markdown, JSON and PNGs into ``out_dir``. Existing outputs are refused before any work
    unless ``overwrite``. Returns the paths written."""
    check_can_write(output_paths(name, out_dir), overwrite)
    report = run_table(name, cfgs, work_dir=Path(out_dir) / f"{name}_edits", overwrite=overwrite)
    if report is None:  # a rank > 0 of torchrun: it did its share of the edits, rank 0 reports
        return []
    return save_report(report, out_dir, overwrite=overwrite)


def run_table(
    name: str, cfgs: Sequence, *, work_dir: str | Path | None = None, overwrite: bool = False
) -> Report | None:
    """Compute table ``name`` from its composed configs. Tables built from many edits
    (supplement Tables 1–2, Fig. 4) run them through the edit queue
    (``manipulation.queue``) in ``work_dir`` — resumable, shared over the ranks under
    ``torchrun``; ``None``: a temporary directory. Returns ``None`` on ranks other than 0
    of a distributed run."""
    import functools

    from sound2img.evaluation.reproduce_doc import ensure_table_weights

    spec = get_table(name)
    typed = [reproduce_config(c) for c in cfgs]
    ctx = TableContext(typed[0])
    ctx.ensure_weights = functools.partial(ensure_table_weights, name, cfgs)
    evals = [c.eval for c in typed]
    if work_dir is not None:
        ctx.work_dir, ctx.overwrite = Path(work_dir), overwrite
        return spec.run(ctx, evals)
    with tempfile.TemporaryDirectory(prefix="sound2img-edits-") as tmp:
        ctx.work_dir = Path(tmp)
        return spec.run(ctx, evals)


# ---- runners: one per table ------------------------------------------------------------------
def _loader_kwargs(ctx: TableContext, e: EvalOptions) -> dict[str, Any]:
    return {
        "batch_size": e.batch_size or 64,
        "num_workers": e.num_workers,
        "device": ctx.device,
        "progress": ctx.cfg.progress,
    }


def _run_zeroshot(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    specs_per_eval = [ctx.dataset_specs(e.datasets) for e in evals]
    encoder, frontend = ctx.encoder()
    results: dict[str, Any] = {}
    for e, specs in zip(evals, specs_per_eval):
        results |= run_zero_shot(specs, encoder, frontend, ctx.clip(), templates=e.templates, **_loader_kwargs(ctx, e))
    method = (
        "Class names through the zero-shot prompt templates; per class the normalised text embeddings "
        "are averaged and renormalised; prediction = highest cosine to the L2-normalised audio embedding."
    )
    title = "Zero-shot audio classification"
    return classification_report("zeroshot", title, results, ctx.provenance(images=False), method=method)


def _run_linear_probe(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    specs_per_eval = [ctx.dataset_specs(e.datasets) for e in evals]
    encoder, frontend = ctx.encoder()
    results: dict[str, Any] = {}
    for e, specs in zip(evals, specs_per_eval):
        Cs = tuple(e.Cs or DEFAULT_CS)
        results |= run_linear_probe(
            specs, encoder, frontend, C=e.C, Cs=Cs, max_iter=e.max_iter, **_loader_kwargs(ctx, e)
        )
    e = evals[0]
    method = (
        "scikit-learn logistic regression (L-BFGS) on standardised L2-normalised audio embeddings, trained "
        "on the other folds and tested on each fold; C "
        + (
            "fixed"
            if e.C is not None
            else "chosen per fold from " + str(e.Cs or list(DEFAULT_CS)) + " by a fold-grouped "
            "cross-validation inside the training folds"
        )
        + " (column C)."
    )
    title = "Linear probe: logistic regression on frozen audio embeddings"
    prov = ctx.provenance(images=False)
    return classification_report("linear_probe", title, results, prov, extra_columns=("C",), method=method)


def _attribute_edits(ctx: TableContext, e: EvalOptions):
    """Edit ``eval.n_latents`` sources per attribute by sound and by text (each
    attribute in its domain: generator and λ values) through the edit queue in
    ``ctx.work_dir``; ``(edits, n)``, or ``(None, n)`` on ranks other than 0."""
    rows = ctx.cfg.attributes  # records {name, domain, sound, text}
    if e.attributes:
        unknown = sorted(set(e.attributes) - {r.get("name") for r in rows})
        if unknown:
            raise UserInputError(f"eval.attributes names {unknown}, which are not in the attributes list")
        rows = [r for r in rows if r.get("name") in e.attributes]
    attrs = parse_attributes(rows)
    domains = {a.name: r.get("domain") for a, r in zip(attrs, rows)}
    n, seed = e.n_latents, e.seed
    if n < 1:
        raise UserInputError(f"eval.n_latents must be >= 1, got {n}")
    batch_size = e.batch_size or 8
    jobs = []
    for k, a in enumerate(attrs):
        domain, optim = ctx.domain_optim(domains[a.name])
        generator = None if ctx.cfg.tiny or domain is None else domain.generator
        jobs += attribute_job_rows(k, a, n, seed, optim, ctx.cfg.manipulate.truncation, generator)
    if not _run_edit_jobs(ctx, jobs, batch_size):
        return None, n
    encoder, frontend = ctx.encoder()
    clip = ctx.clip()
    edits = []
    for k, a in enumerate(attrs):
        G, optim, _ = ctx.domain_setup(domains[a.name])
        edits.append(
            collect_attribute_edits(
                k,
                a,
                ctx.work_dir / "edits",
                ctx.sources(G, n, seed),
                generator=G,
                clip=clip,
                encoder=encoder,
                frontend=frontend,
                noise_mode=optim["noise_mode"],
                batch_size=batch_size,
                device=ctx.device,
            )
        )
    return edits, n


# the groups of a reproduce config the edit queue reads (the rest would only bloat each metrics.json)
_QUEUE_KEYS = ("audio", "clip", "encoder", "generator", "manipulate", "identity", "tiny", "device")


def _run_edit_jobs(ctx: TableContext, jobs: list[dict[str, Any]], batch_size: int) -> bool:
    """Run ``jobs`` (rows of ``manipulate.py --jobs``) through the edit queue into
    ``ctx.work_dir/edits`` (``jobs.jsonl`` and ``settings.json`` beside it record what was
    asked; other settings than those of the edits already there need ``--overwrite``).
    True on rank 0; a failed job raises ``QueueFailed`` (exit 1) on every rank."""

    from sound2img.manipulation.queue import LEDGER, QueueFailed, run_queue

    ctx.check_weights()  # the queue builds its own networks: every file first, in one message

    edit = to_plain(compose("manipulate").edit)
    # the queue's own config, written out as settings.json: here a dict really is the data
    qc = {k: _plain_group(getattr(ctx.cfg, k)) for k in _QUEUE_KEYS}
    qc["manipulate"] = {**qc["manipulate"], "strip_every": 0}  # no intermediate frames: only results are read
    qc["edit"] = {**edit, "batch_size": batch_size}
    settings = json.dumps({k: qc[k] for k in qc if k != "device"}, indent=1, sort_keys=True) + "\n"
    job_text = "".join(json.dumps(r) + "\n" for r in jobs)
    root = ctx.work_dir
    if (root / "edits" / LEDGER).exists() and not ctx.overwrite:
        old_settings = (root / "settings.json").read_text() if (root / "settings.json").exists() else None
        old_jobs = {}
        if (root / "jobs.jsonl").exists():
            old_jobs = {r["id"]: r for r in map(json.loads, (root / "jobs.jsonl").read_text().splitlines())}
        if old_settings != settings or any(old_jobs.get(r["id"], r) != r for r in jobs):
            raise UserInputError(
                f"{root} holds edits made with other settings (see its settings.json and "
                "jobs.jsonl); pass --overwrite to redo them, or choose another --out"
            )
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_text(root / "settings.json", settings)
        atomic_write_text(root / "jobs.jsonl", job_text)
    progress = ctx.cfg.progress
    queue_cfg = {**qc, "out": str(root / "edits"), "overwrite": ctx.overwrite, "progress": progress}
    summary = run_queue(to_schema("manipulate", queue_cfg), jobs)
    if not summary.ok:
        raise QueueFailed(f"{summary.line()}; rerun the same command to redo the missing edits")
    return summary.rank == 0


def _plain_group(group: Any) -> Any:
    """A config group as plain data (a schema dataclass as its dict)."""
    return dataclasses.asdict(group) if dataclasses.is_dataclass(group) else group


def _run_supp_table1(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    edits, n = _attribute_edits(ctx, evals[0])
    if edits is None:
        return None
    return supp_table1_report(supp_table1(edits), ctx.provenance(), n)


def _run_supp_table2(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    e = evals[0]
    edits, n = _attribute_edits(ctx, e)
    if edits is None:
        return None
    results = supp_table2(edits, n_splits=e.n_splits, C=1.0 if e.C is None else e.C)
    return supp_table2_report(results, ctx.provenance(), n)


def _run_fig_tsne_directions(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    e = evals[0]
    edits, _ = _attribute_edits(ctx, e)
    if edits is None:
        return None
    return fig_tsne_directions(edits, ctx.provenance(), perplexity=e.perplexity, seed=e.seed)


def _figure_edit(ctx: TableContext, e: EvalOptions, n_sources: int = 1) -> tuple[Any, FigureEdit]:
    """``(source_ws [n,num_ws,w_dim], FigureEdit)`` of an edit figure's domain."""
    encoder, frontend = ctx.encoder()
    G, optim, identity = ctx.domain_setup(e.domain)
    edit = FigureEdit(G, ctx.clip(), encoder, frontend, optim, identity, ctx.device)
    return ctx.sources(G, n_sources, e.seed), edit


def _run_fig_lambda_grid(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    e = evals[0]
    source_ws, edit = _figure_edit(ctx, e)
    if max(e.lambda_ids, default=0) > 0 and edit.identity is None:
        edit = dataclasses.replace(edit, identity=ctx.identity())
    grid = {"lambda_sims": list(e.lambda_sims), "lambda_ids": list(e.lambda_ids)}
    return fig_lambda_grid(str(e.sound), source_ws, edit, **grid, provenance=ctx.provenance())


def _run_fig_volume(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    source_ws, edit = _figure_edit(ctx, evals[0])
    return fig_volume(str(evals[0].sound), source_ws, edit, gains_db=evals[0].gains_db, provenance=ctx.provenance())


def _run_fig_interpolation(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    e = evals[0]
    source_ws, edit = _figure_edit(ctx, e)
    return fig_interpolation(str(e.sound), str(e.text), source_ws, edit, alphas=e.alphas, provenance=ctx.provenance())


def _run_fig_audioclip_comparison(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    e = evals[0]
    source_ws, ours = _figure_edit(ctx, e, e.n_sources)
    if not e.peer.encoder:
        raise UserInputError("fig_audioclip_comparison: set eval.peer.encoder (e.g. audioclip_partial)")
    peer_encoder, peer_frontend = ctx.networks.encoder({"path": e.peer.encoder}, None)
    peer_clip = ctx.networks.clip(e.peer.clip or {"model": "from_encoder"}, peer_encoder)
    ctx.weights["peer audio encoder"] = ctx._describe(e.peer.encoder, "")
    guides = [
        {"label": "ours", "encoder": ours.encoder, "frontend": ours.frontend, "clip": ours.clip},
        {
            "label": str(e.peer.label or e.peer.encoder),
            "encoder": peer_encoder,
            "frontend": peer_frontend,
            "clip": peer_clip,
        },
    ]
    return fig_audioclip_comparison(
        [str(s) for s in e.sounds],
        source_ws,
        generator=ours.generator,
        guides=guides,
        optim=ours.optim,
        identity=ours.identity,
        provenance=ctx.provenance(),
        device=ctx.device,
    )


def _run_fig_audio_text_tsne(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    e = evals[0]
    spec = ctx.dataset_specs([e.dataset], e.folds)[0]
    encoder, frontend = ctx.encoder()
    emb = encode_folds(spec, encoder, frontend, **_loader_kwargs(ctx, e))
    text_emb = encode_class_texts(ctx.clip().encode_text, emb.class_names, e.templates)
    prov = ctx.provenance(images=False)
    return fig_audio_text_tsne(emb, spec, text_emb, prov, perplexity=e.perplexity, seed=e.seed)


# The tables, in the paper's order (what --list and docs/reproduce.md show).
for _spec in (
    TableSpec("zeroshot", ("esc50_zeroshot", "us8k_zeroshot"), (), "paper: zero-shot ESC-50 / US8K", _run_zeroshot),
    TableSpec(
        "linear_probe",
        ("linear_probe",),
        (),
        "paper: logistic regression on frozen embeddings",
        _run_linear_probe,
        uses_clip=False,
    ),
    TableSpec(
        "supp_table1",
        ("supp_table1",),
        (),
        "supplement Table 1: cosine between w_s, w_a, w_t",
        _run_supp_table1,
        edits="attributes",
    ),
    TableSpec(
        "supp_table2",
        ("supp_table2",),
        (),
        "supplement Table 2: attribute classification",
        _run_supp_table2,
        edits="attributes",
    ),
    TableSpec(
        "fig_tsne_directions",
        ("fig_tsne_directions",),
        ("fig_tsne_directions.png",),
        "supplement Fig. 4: t-SNE of manipulation directions",
        _run_fig_tsne_directions,
        edits="attributes",
    ),
    TableSpec(
        "fig_lambda_grid",
        ("fig_lambda_grid",),
        ("fig_lambda_grid.png", "fig_lambda_grid_source.png"),
        "supplement Fig. 2: λ_sim × λ_ID grid",
        _run_fig_lambda_grid,
        edits="figure",
    ),
    TableSpec(
        "fig_volume",
        ("fig_volume",),
        ("fig_volume.png",),
        "supplement Fig. 8: volume strip",
        _run_fig_volume,
        edits="figure",
    ),
    TableSpec(
        "fig_interpolation",
        ("fig_interpolation",),
        ("fig_interpolation.png",),
        "supplement Figs. 10–11: text↔sound latent interpolation",
        _run_fig_interpolation,
        edits="figure",
    ),
    TableSpec(
        "fig_audioclip_comparison",
        ("fig_audioclip_comparison",),
        ("fig_audioclip_comparison.png",),
        "supplement Fig. 3: edits guided by our encoder and by AudioCLIP, side by side",
        _run_fig_audioclip_comparison,
        edits="peer",
    ),
    TableSpec(
        "fig_audio_text_tsne",
        ("fig_audio_text_tsne",),
        ("fig_audio_text_tsne.png",),
        "audio embeddings vs CLIP text embeddings (t-SNE)",
        _run_fig_audio_text_tsne,
    ),
):
    TABLES.register(_spec.name, _spec)
del _spec
