"""The edge between a composed ``reproduce`` config and one table or figure on disk: the
registry of tables (each registered once, by its runner: ``list_tables``, ``get_table``),
the config as its schema's dataclasses (``reproduce_config``), networks, datasets, sources
and optimiser arguments (``TableContext``), then the evaluation module's function and
``save_report``."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound2img.errors import UserInputError
from sound2img.evaluation.report import Report, save_report
from sound2img.evaluation.table_context import TableContext
from sound2img.registry import Registry
from sound2img.utils.files import check_can_write

if TYPE_CHECKING:
    from sound2img.config import EvalOptions, ReproduceConfig

Runner = Callable[[TableContext, list["EvalOptions"]], Report | None]


@dataclass(frozen=True)
class TableSpec:
    """One reproducible table or figure: the ``eval`` configs it composes (one per dataset
    for the zero-shot table), the files it writes, what it reproduces, the runner that
    computes it (``None`` on ranks other than 0 of a distributed run), and what it needs
    (``docs/reproduce.md``): CLIP towers, and the edits it makes (``attributes``: the
    supplement's rows; ``figure``: one sound; ``peer``: two encoders side by side)."""

    name: str
    evals: tuple[str, ...]
    pngs: tuple[str, ...]
    paper: str
    run: Runner
    uses_clip: bool = True
    edits: str | None = None


TABLES: Registry[TableSpec] = Registry("table", hint="see --list")


def table(
    name: str, paper: str, *, evals: Sequence[str] = (), pngs: Sequence[str] = (), uses_clip=True, edits=None
) -> Callable[[Runner], Runner]:
    """Register the decorated runner as table ``name`` (``evals``: its eval configs, by
    default ``[name]``); tables are listed in the order they are registered, the paper's."""

    def register(run: Runner) -> Runner:
        TABLES.register(name, TableSpec(name, tuple(evals or (name,)), tuple(pngs), paper, run, uses_clip, edits))
        return run

    return register


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
    from sound2img.cli import compose

    return [compose("reproduce", [f"eval={e}", *overrides]) for e in get_table(name).evals]


def reproduce_config(cfg) -> ReproduceConfig:
    """A composed ``reproduce`` config as its schema's dataclasses (``cli.to_object``). A
    dataset key left ``???`` (a root not given) becomes null: only a table that reads that
    dataset needs it, and says how to set it."""
    from omegaconf import OmegaConf

    from sound2img.cli import to_object

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
    spec = get_table(name)
    typed = [reproduce_config(c) for c in cfgs]
    ctx = TableContext(typed[0])
    evals = [c.eval for c in typed]
    if work_dir is not None:
        ctx.work_dir, ctx.overwrite = Path(work_dir), overwrite
        return spec.run(ctx, evals)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sound2img-edits-") as tmp:
        ctx.work_dir = Path(tmp)
        return spec.run(ctx, evals)


# ---- runners: one per table, in the paper's order ---------------------------------------------
def _loader_kwargs(ctx: TableContext, e: EvalOptions) -> dict[str, Any]:
    return {
        "batch_size": e.batch_size or 64,
        "num_workers": e.num_workers,
        "device": ctx.device,
        "progress": ctx.cfg.progress,
    }


@table("zeroshot", "paper: zero-shot ESC-50 / US8K", evals=("esc50_zeroshot", "us8k_zeroshot"))
def _run_zeroshot(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.report import classification_report
    from sound2img.evaluation.zero_shot import run_zero_shot

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


@table("linear_probe", "paper: logistic regression on frozen embeddings", uses_clip=False)
def _run_linear_probe(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.linear_probe import DEFAULT_CS, run_linear_probe
    from sound2img.evaluation.report import classification_report

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
    from sound2img.evaluation.attribute_edits import attribute_job_rows, collect_attribute_edits, parse_attributes

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
    import json

    from omegaconf import OmegaConf

    from sound2img.cli import compose, to_plain
    from sound2img.manipulation.queue import LEDGER, QueueFailed, run_queue
    from sound2img.utils.files import atomic_write_text

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
    summary = run_queue(
        OmegaConf.create({**qc, "out": str(root / "edits"), "overwrite": ctx.overwrite, "progress": progress}), jobs
    )
    if not summary.ok:
        raise QueueFailed(f"{summary.line()}; rerun the same command to redo the missing edits")
    return summary.rank == 0


def _plain_group(group: Any) -> Any:
    """A config group as plain data (a schema dataclass as its dict)."""
    return dataclasses.asdict(group) if dataclasses.is_dataclass(group) else group


@table("supp_table1", "supplement Table 1: cosine between w_s, w_a, w_t", edits="attributes")
def _run_supp_table1(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    from sound2img.evaluation.latent_stats import supp_table1, supp_table1_report

    edits, n = _attribute_edits(ctx, evals[0])
    if edits is None:
        return None
    return supp_table1_report(supp_table1(edits), ctx.provenance(), n)


@table("supp_table2", "supplement Table 2: attribute classification", edits="attributes")
def _run_supp_table2(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    from sound2img.evaluation.attribute_classification import supp_table2, supp_table2_report

    e = evals[0]
    edits, n = _attribute_edits(ctx, e)
    if edits is None:
        return None
    results = supp_table2(edits, n_splits=e.n_splits, C=1.0 if e.C is None else e.C)
    return supp_table2_report(results, ctx.provenance(), n)


@table(
    "fig_tsne_directions",
    "supplement Fig. 4: t-SNE of manipulation directions",
    pngs=("fig_tsne_directions.png",),
    edits="attributes",
)
def _run_fig_tsne_directions(ctx: TableContext, evals: list[EvalOptions]) -> Report | None:
    from sound2img.evaluation.figures import fig_tsne_directions

    e = evals[0]
    edits, _ = _attribute_edits(ctx, e)
    if edits is None:
        return None
    return fig_tsne_directions(edits, ctx.provenance(), perplexity=e.perplexity, seed=e.seed)


def _edit_figure_args(ctx: TableContext, e: EvalOptions) -> dict[str, Any]:
    encoder, frontend = ctx.encoder()
    G, optim, identity = ctx.domain_setup(e.domain)
    return {
        "source_ws": ctx.sources(G, 1, e.seed),
        "generator": G,
        "clip": ctx.clip(),
        "encoder": encoder,
        "frontend": frontend,
        "optim": optim,
        "identity": identity,
        "device": ctx.device,
    }


@table(
    "fig_lambda_grid",
    "supplement Fig. 2: λ_sim × λ_ID grid",
    pngs=("fig_lambda_grid.png", "fig_lambda_grid_source.png"),
    edits="figure",
)
def _run_fig_lambda_grid(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.edit_figures import fig_lambda_grid

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    if max(e.lambda_ids, default=0) > 0 and args["identity"] is None:
        args["identity"] = ctx.identity()
    return fig_lambda_grid(
        str(e.sound),
        lambda_sims=list(e.lambda_sims),
        lambda_ids=list(e.lambda_ids),
        provenance=ctx.provenance(),
        **args,
    )


@table("fig_volume", "supplement Fig. 8: volume strip", pngs=("fig_volume.png",), edits="figure")
def _run_fig_volume(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.edit_figures import fig_volume

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    return fig_volume(str(e.sound), gains_db=list(e.gains_db), provenance=ctx.provenance(), **args)


@table(
    "fig_interpolation",
    "supplement Figs. 10–11: text↔sound latent interpolation",
    pngs=("fig_interpolation.png",),
    edits="figure",
)
def _run_fig_interpolation(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.edit_figures import fig_interpolation

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    return fig_interpolation(str(e.sound), str(e.text), alphas=list(e.alphas), provenance=ctx.provenance(), **args)


@table(
    "fig_audioclip_comparison",
    "supplement Fig. 3: edits guided by our encoder and by AudioCLIP, side by side",
    pngs=("fig_audioclip_comparison.png",),
    edits="peer",
)
def _run_fig_audioclip_comparison(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.evaluation.edit_figures import fig_audioclip_comparison

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    source_ws = ctx.sources(args["generator"], e.n_sources, e.seed)
    peer = e.peer
    if not peer.encoder:
        raise UserInputError("fig_audioclip_comparison: set eval.peer.encoder (e.g. audioclip_partial)")
    peer_encoder, peer_frontend = ctx.networks.encoder({"path": peer.encoder}, None)
    peer_clip = ctx.networks.clip(peer.clip or {"model": "from_encoder"}, peer_encoder)
    ctx.weights["peer audio encoder"] = ctx._describe(peer.encoder, "")
    guides = [
        {"label": "ours", "encoder": args["encoder"], "frontend": args["frontend"], "clip": args["clip"]},
        {
            "label": str(peer.label or peer.encoder),
            "encoder": peer_encoder,
            "frontend": peer_frontend,
            "clip": peer_clip,
        },
    ]
    return fig_audioclip_comparison(
        [str(s) for s in e.sounds],
        source_ws,
        generator=args["generator"],
        guides=guides,
        optim=args["optim"],
        identity=args["identity"],
        provenance=ctx.provenance(),
        device=ctx.device,
    )


@table(
    "fig_audio_text_tsne",
    "audio embeddings vs CLIP text embeddings (t-SNE)",
    pngs=("fig_audio_text_tsne.png",),
)
def _run_fig_audio_text_tsne(ctx: TableContext, evals: list[EvalOptions]) -> Report:
    from sound2img.data.prompts import encode_class_texts
    from sound2img.evaluation.embed import encode_folds
    from sound2img.evaluation.figures import fig_audio_text_tsne

    e = evals[0]
    spec = ctx.dataset_specs([e.dataset], e.folds)[0]
    encoder, frontend = ctx.encoder()
    emb = encode_folds(spec, encoder, frontend, **_loader_kwargs(ctx, e))
    text_emb = encode_class_texts(ctx.clip().encode_text, emb.class_names, e.templates)
    prov = ctx.provenance(images=False)
    return fig_audio_text_tsne(emb, spec, text_emb, prov, perplexity=e.perplexity, seed=e.seed)
