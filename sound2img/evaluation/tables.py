"""The edge between a composed ``reproduce`` config and one table or figure on disk: which
tables exist (``list_tables``), config → networks, datasets, sources and optimiser
arguments, then the evaluation module's function and ``save_report``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sound2img.cli import to_plain
from sound2img.errors import UserInputError
from sound2img.evaluation.report import Report, save_report
from sound2img.evaluation.table_context import TableContext
from sound2img.registry import Registry
from sound2img.utils.files import check_can_write


@dataclass(frozen=True)
class TableSpec:
    """One reproducible table or figure: the ``eval`` configs it composes (one per dataset
    for the zero-shot table), the files it writes and what it reproduces."""

    name: str
    evals: tuple[str, ...]
    pngs: tuple[str, ...]
    paper: str


TABLES: Registry[TableSpec] = Registry("table", hint="see --list")
for _spec in (
    TableSpec("zeroshot", ("esc50_zeroshot", "us8k_zeroshot"), (), "paper: zero-shot ESC-50 / US8K"),
    TableSpec("linear_probe", ("linear_probe",), (), "paper: logistic regression on frozen embeddings"),
    TableSpec("supp_table1", ("supp_table1",), (), "supplement Table 1: cosine between w_s, w_a, w_t"),
    TableSpec("supp_table2", ("supp_table2",), (), "supplement Table 2: attribute classification"),
    TableSpec(
        "fig_tsne_directions",
        ("fig_tsne_directions",),
        ("fig_tsne_directions.png",),
        "supplement Fig. 4: t-SNE of manipulation directions",
    ),
    TableSpec(
        "fig_lambda_grid",
        ("fig_lambda_grid",),
        ("fig_lambda_grid.png", "fig_lambda_grid_source.png"),
        "supplement Fig. 2: λ_sim × λ_ID grid",
    ),
    TableSpec("fig_volume", ("fig_volume",), ("fig_volume.png",), "supplement Fig. 8: volume strip"),
    TableSpec(
        "fig_interpolation",
        ("fig_interpolation",),
        ("fig_interpolation.png",),
        "supplement Figs. 10–11: text↔sound latent interpolation",
    ),
    TableSpec(
        "fig_audioclip_comparison",
        ("fig_audioclip_comparison",),
        ("fig_audioclip_comparison.png",),
        "supplement Fig. 3: edits guided by our encoder and by AudioCLIP, side by side",
    ),
    TableSpec(
        "fig_audio_text_tsne",
        ("fig_audio_text_tsne",),
        ("fig_audio_text_tsne.png",),
        "audio embeddings vs CLIP text embeddings (t-SNE)",
    ),
):
    TABLES.register(_spec.name, _spec)
del _spec


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
    """The composed ``reproduce`` config for each of the table's ``eval`` configs."""
    from sound2img.cli import compose

    return [compose("reproduce", [f"eval={e}", *overrides]) for e in get_table(name).evals]


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
    """Compute table ``name``. Tables built from many edits (supplement Tables 1–2, Fig. 4)
    run them through the edit queue (``manipulation.queue``) in ``work_dir`` — resumable,
    shared over the ranks under ``torchrun``; ``None``: a temporary directory. Returns
    ``None`` on ranks other than 0 of a distributed run."""
    import functools

    from sound2img.evaluation.reproduce_doc import ensure_table_weights

    get_table(name)
    ctx = TableContext(cfgs[0])
    ctx.ensure_weights = functools.partial(ensure_table_weights, name, cfgs)
    if work_dir is not None:
        ctx.work_dir, ctx.overwrite = Path(work_dir), overwrite
        return _RUNNERS[name](ctx, [to_plain(c)["eval"] for c in cfgs])
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sound2img-edits-") as tmp:
        ctx.work_dir = Path(tmp)
        return _RUNNERS[name](ctx, [to_plain(c)["eval"] for c in cfgs])


# ---- runners: one per table ----------------------------------------------------------------
def _loader_kwargs(ctx: TableContext, e: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_size": int(e.get("batch_size", 64)),
        "num_workers": int(e.get("num_workers", 0)),
        "device": ctx.device,
        "progress": ctx.progress,
    }


def _run_classification(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.linear_probe import DEFAULT_CS, run_linear_probe
    from sound2img.evaluation.report import classification_report
    from sound2img.evaluation.zero_shot import run_zero_shot

    specs_per_eval = [ctx.dataset_specs(e["datasets"]) for e in evals]
    encoder, frontend = ctx.encoder()
    results: dict[str, Any] = {}
    table = evals[0]["table"]
    for e, specs in zip(evals, specs_per_eval):
        if table == "zeroshot":
            results |= run_zero_shot(
                specs, encoder, frontend, ctx.clip(), templates=e.get("templates"), **_loader_kwargs(ctx, e)
            )
        else:
            results |= run_linear_probe(
                specs,
                encoder,
                frontend,
                C=e.get("C"),
                Cs=tuple(e.get("Cs") or DEFAULT_CS),
                max_iter=int(e.get("max_iter", 1000)),
                **_loader_kwargs(ctx, e),
            )
    if table == "zeroshot":
        title, extra = "Zero-shot audio classification", ()
        method = (
            "Class names through the zero-shot prompt templates; per class the normalised text embeddings "
            "are averaged and renormalised; prediction = highest cosine to the L2-normalised audio embedding."
        )
    else:
        title, extra = "Linear probe: logistic regression on frozen audio embeddings", ("C",)
        method = (
            "scikit-learn logistic regression (L-BFGS) on standardised L2-normalised audio embeddings, trained "
            "on the other folds and tested on each fold; C "
            + (
                "fixed"
                if evals[0].get("C") is not None
                else "chosen per fold from " + str(evals[0].get("Cs") or list(DEFAULT_CS)) + " by a fold-grouped "
                "cross-validation inside the training folds"
            )
            + " (column C)."
        )
    return classification_report(
        table, title, results, ctx.provenance(images=False), extra_columns=extra, method=method
    )


def _attribute_edits(ctx: TableContext, e: dict[str, Any]):
    """Edit ``eval.n_latents`` sources per attribute by sound and by text (each
    attribute in its domain: generator and λ values) through the edit queue in
    ``ctx.work_dir``; ``(edits, n)``, or ``(None, n)`` on ranks other than 0."""
    from sound2img.evaluation.attribute_edits import attribute_job_rows, collect_attribute_edits, parse_attributes

    rows = ctx.c.get("attributes") or []
    wanted = e.get("attributes")
    if wanted:
        unknown = sorted(set(wanted) - {r.get("name") for r in rows})
        if unknown:
            raise UserInputError(f"eval.attributes names {unknown}, which are not in the attributes list")
        rows = [r for r in rows if r.get("name") in wanted]
    attrs = parse_attributes(rows)
    domains = {a.name: r.get("domain") for a, r in zip(attrs, rows)}
    n, seed = int(e.get("n_latents", 150)), int(e.get("seed", 0))
    if n < 1:
        raise UserInputError(f"eval.n_latents must be >= 1, got {n}")
    batch_size = int(e.get("batch_size", 8))
    truncation = float(ctx.c["manipulate"].get("truncation", 0.7))
    jobs = []
    for k, a in enumerate(attrs):
        domain, optim = ctx.domain_optim(domains[a.name])
        jobs += attribute_job_rows(k, a, n, seed, optim, truncation, None if ctx.tiny else domain.get("generator"))
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


# the keys of a reproduce config the edit queue reads (the rest would only bloat each metrics.json)
_QUEUE_KEYS = ("audio", "clip", "encoder", "generator", "manipulate", "identity", "tiny", "device")


def _run_edit_jobs(ctx: TableContext, jobs: list[dict[str, Any]], batch_size: int) -> bool:
    """Run ``jobs`` (rows of ``manipulate.py --jobs``) through the edit queue into
    ``ctx.work_dir/edits`` (``jobs.jsonl`` and ``settings.json`` beside it record what was
    asked; other settings than those of the edits already there need ``--overwrite``).
    True on rank 0; a failed job raises ``QueueFailed`` (exit 1) on every rank."""
    import json

    from omegaconf import OmegaConf

    from sound2img.cli import compose
    from sound2img.manipulation.queue import LEDGER, QueueFailed, run_queue
    from sound2img.utils.files import atomic_write_text

    ctx.check_weights()  # the queue builds its own networks: every file first, in one message

    edit = to_plain(compose("manipulate").edit)
    qc = {k: ctx.c.get(k) for k in _QUEUE_KEYS}
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
    summary = run_queue(
        OmegaConf.create({**qc, "out": str(root / "edits"), "overwrite": ctx.overwrite, "progress": ctx.progress}), jobs
    )
    if not summary.ok:
        raise QueueFailed(f"{summary.line()}; rerun the same command to redo the missing edits")
    return summary.rank == 0


def _run_supp_table1(ctx: TableContext, evals: list[dict[str, Any]]) -> Report | None:
    from sound2img.evaluation.latent_stats import supp_table1, supp_table1_report

    edits, n = _attribute_edits(ctx, evals[0])
    if edits is None:
        return None
    return supp_table1_report(supp_table1(edits), ctx.provenance(), n)


def _run_supp_table2(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.attribute_classification import supp_table2, supp_table2_report

    e = evals[0]
    edits, n = _attribute_edits(ctx, e)
    if edits is None:
        return None
    results = supp_table2(edits, n_splits=int(e.get("n_splits", 5)), C=float(e.get("C", 1.0)))
    return supp_table2_report(results, ctx.provenance(), n)


def _run_fig_tsne_directions(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.figures import fig_tsne_directions

    e = evals[0]
    edits, _ = _attribute_edits(ctx, e)
    if edits is None:
        return None
    return fig_tsne_directions(
        edits, ctx.provenance(), perplexity=float(e.get("perplexity", 30)), seed=int(e.get("seed", 0))
    )


def _edit_figure_args(ctx: TableContext, e: dict[str, Any]) -> dict[str, Any]:
    encoder, frontend = ctx.encoder()
    G, optim, identity = ctx.domain_setup(e.get("domain"))
    return {
        "source_ws": ctx.sources(G, 1, int(e.get("seed", 0))),
        "generator": G,
        "clip": ctx.clip(),
        "encoder": encoder,
        "frontend": frontend,
        "optim": optim,
        "identity": identity,
        "device": ctx.device,
    }


def _run_fig_lambda_grid(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.edit_figures import fig_lambda_grid

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    lambda_ids = [float(v) for v in e["lambda_ids"]]
    if max(lambda_ids, default=0) > 0 and args["identity"] is None:
        args["identity"] = ctx.identity()
    return fig_lambda_grid(
        str(e["sound"]),
        lambda_sims=[float(v) for v in e["lambda_sims"]],
        lambda_ids=lambda_ids,
        provenance=ctx.provenance(),
        **args,
    )


def _run_fig_volume(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.edit_figures import fig_volume

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    return fig_volume(str(e["sound"]), gains_db=[float(g) for g in e["gains_db"]], provenance=ctx.provenance(), **args)


def _run_fig_interpolation(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.evaluation.edit_figures import fig_interpolation

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    return fig_interpolation(
        str(e["sound"]), str(e["text"]), alphas=[float(a) for a in e["alphas"]], provenance=ctx.provenance(), **args
    )


def _run_fig_audioclip_comparison(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img import factory
    from sound2img.evaluation.edit_figures import fig_audioclip_comparison

    e = evals[0]
    args = _edit_figure_args(ctx, e)
    source_ws = ctx.sources(args["generator"], int(e.get("n_sources", 1)), int(e.get("seed", 0)))
    peer = dict(e.get("peer") or {})
    if not peer.get("encoder"):
        raise UserInputError("fig_audioclip_comparison: set eval.peer.encoder (e.g. audioclip_partial)")
    peer_encoder, peer_frontend = factory.build_encoder_from_cfg({"path": peer["encoder"]}, None, ctx.device)
    peer_clip = factory.build_clip_for_encoder(peer.get("clip") or {"model": "from_encoder"}, peer_encoder, ctx.device)
    ctx.weights["peer audio encoder"] = ctx._describe(peer["encoder"], "")
    guides = [
        {"label": "ours", "encoder": args["encoder"], "frontend": args["frontend"], "clip": args["clip"]},
        {
            "label": str(peer.get("label") or peer["encoder"]),
            "encoder": peer_encoder,
            "frontend": peer_frontend,
            "clip": peer_clip,
        },
    ]
    return fig_audioclip_comparison(
        [str(s) for s in e["sounds"]],
        source_ws,
        generator=args["generator"],
        guides=guides,
        optim=args["optim"],
        identity=args["identity"],
        provenance=ctx.provenance(),
        device=ctx.device,
    )


def _run_fig_audio_text_tsne(ctx: TableContext, evals: list[dict[str, Any]]) -> Report:
    from sound2img.data.prompts import encode_class_texts
    from sound2img.evaluation.embed import encode_folds
    from sound2img.evaluation.figures import fig_audio_text_tsne

    e = evals[0]
    spec = ctx.dataset_specs([e["dataset"]], e.get("folds"))[0]
    encoder, frontend = ctx.encoder()
    emb = encode_folds(spec, encoder, frontend, **_loader_kwargs(ctx, e))
    text_emb = encode_class_texts(ctx.clip().encode_text, emb.class_names, e.get("templates"))
    return fig_audio_text_tsne(
        emb,
        spec,
        text_emb,
        ctx.provenance(images=False),
        perplexity=float(e.get("perplexity", 30)),
        seed=int(e.get("seed", 0)),
    )


_RUNNERS: dict[str, Callable[[TableContext, list[dict[str, Any]]], Report]] = {
    "zeroshot": _run_classification,
    "linear_probe": _run_classification,
    "supp_table1": _run_supp_table1,
    "supp_table2": _run_supp_table2,
    "fig_tsne_directions": _run_fig_tsne_directions,
    "fig_lambda_grid": _run_fig_lambda_grid,
    "fig_audioclip_comparison": _run_fig_audioclip_comparison,
    "fig_volume": _run_fig_volume,
    "fig_interpolation": _run_fig_interpolation,
    "fig_audio_text_tsne": _run_fig_audio_text_tsne,
}
