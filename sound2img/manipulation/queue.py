"""``manipulate.py --jobs FILE``: many edits from one job file, shared out over the ranks
of ``torchrun`` (or run in one process), resumable after a crash.

A job file (``.csv`` or ``.jsonl``) has one row per edit: an ``id`` and any of the
per-edit options of the command line (``jobs.JOB_COLUMNS``); what a row leaves out comes from
the command line and the config. An optional ``batch`` label keeps jobs of different
labels out of each other's batches (to reproduce a given batch composition exactly). Everything is checked before anything runs. ``DIR``
(``--out``) then holds ``DIR/<id>/`` — exactly what ``manipulate.py`` with that row's
options writes into ``--out`` — and ``DIR/ledger.jsonl``, one line per finished job.

Ranks: rank 0 decides which jobs are still to do (a job whose directory is complete is
skipped; ``write_edits`` renames a job's directory into place whole, so a killed job leaves
nothing that counts), the pending jobs are dealt out deterministically, and each rank runs
its share on its own device with the networks built once, each distinct target computed
once, and compatible jobs (same generator and optimiser settings) optimised together in
batches of ``edit.batch_size`` pairs (``plan_batches``: the same batches whatever the
number of ranks; results equal one-at-a-time runs).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sound2img.errors import Sound2ImgError, UserInputError
from sound2img.manipulation.jobs import LEDGER, Job, load_jobs, parse_jobs
from sound2img.manipulation.outputs import EDIT_FILES, package_versions
from sound2img.manipulation.run import (
    EditPlan,
    Source,
    Target,
    assemble_edits,
    check_layer_split,
    image_sources,
    load_sounds,
    optimize_pairs,
    resolve_sources,
    resolve_targets,
    write_edits,
)
from sound2img.utils.files import append_line, check_out_dir

if TYPE_CHECKING:
    from sound2img.config import GeneratorOptions, ManipulateConfig
    from sound2img.factory import Networks

# a test hook: "RANK:K" makes that rank SIGKILL itself after its K-th finished job, to test
# resume after a crash deterministically (tests/manipulation/test_queue.py)
KILL_HOOK_ENV = "SOUND2IMG_QUEUE_TEST_KILL"


class QueueFailed(Sound2ImgError):
    """Some jobs failed (each recorded in the ledger with its reason): exit status 1."""


@dataclass
class QueueSummary:
    """How a queue run ended, the same on every rank."""

    total: int
    done: int  # complete on disk at the end (skipped ones included)
    failed: int
    skipped: int  # found complete at the start
    ledger: Path
    rank: int = 0
    world_size: int = 1
    failed_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.done == self.total

    def line(self) -> str:
        return f"{self.done} done, {self.failed} failed, see {self.ledger}"


# ---- the output directory ------------------------------------------------------------
def job_complete(d: Path) -> bool:
    """Whether a job's directory holds every file of each of its edits (one edit in ``d``
    itself, several in sub-directories, as ``write_edits`` lays them out)."""
    if not d.is_dir():
        return False
    if (d / "metrics.json").exists():
        return all((d / n).is_file() for n in EDIT_FILES)
    subs = [s for s in d.iterdir() if s.is_dir() and not s.name.startswith(".")]
    return bool(subs) and all(all((s / n).is_file() for n in EDIT_FILES) for s in subs)


def read_ledger(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ledger's records, oldest first (a line cut short by a crash is skipped)."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for raw in lines:
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out.append(rec)
    return out


def _check_queue_dir(out: Path, overwrite: bool) -> None:
    check_out_dir(out, overwrite=True)  # a file, or not writable: refused
    if out.is_dir() and not overwrite and not (out / LEDGER).exists() and any(out.iterdir()):
        raise UserInputError(
            f"{out} is not empty and has no {LEDGER}: not an edit queue's directory "
            "(pass --overwrite to write the jobs into it anyway)"
        )


def _clear_leftovers(out: Path, jid: str) -> None:
    """Remove what a killed run left of job ``jid``: ``staged_dir``'s hidden
    ``.<id>.XXXXXXXX.partial`` and an incomplete ``<id>/`` (only this rank writes them)."""
    pattern = re.compile(rf"\.{re.escape(jid)}\.[A-Za-z0-9_]{{8}}\.partial")
    for p in out.iterdir():
        if p.is_dir() and pattern.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)
    if (out / jid).exists():
        shutil.rmtree(out / jid)


def _summary(edits: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    ms = [kw["metrics"] for _, kw in edits]
    keys = ("initial_cosine", "final_cosine")
    if len(ms) == 1:
        return {k: ms[0][k] for k in keys if k in ms[0]}
    return {"edits": len(ms), **{k: [m.get(k) for m in ms] for k in keys}}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, UserInputError) else f"{type(exc).__name__}: {text}"


# ---- networks, built once per rank ---------------------------------------------------
class _RankNetworks:
    """The rank's frozen networks (one ``factory.Networks`` that keeps failures: every job
    that needs a network that failed to build fails with its reason): generators by their
    config, the base config's CLIP, audio encoder and identity loss, the quality scores."""

    def __init__(self, cfg: ManipulateConfig, nets: Networks):
        self.cfg, self.nets, self.device = cfg, nets, nets.device

    def generator(self, gcfg: GeneratorOptions):
        return self.nets.generator(gcfg)

    def clip(self):
        from sound2img.factory import towers_from_encoder

        # the encoder's own CLIP space (clip=from_encoder, peer encoders), as a single edit builds it
        encoder = self.audio()[0] if towers_from_encoder(self.cfg.clip) else None
        return self.nets.clip(self.cfg.clip, encoder)

    def quality(self, faces: bool):
        """The edit-quality scores a single edit records (``metrics.json`` ``quality``)."""
        from sound2img.inversion.command import quality_metrics

        return self.nets.once(
            f"quality:{faces}", lambda: quality_metrics(self.cfg, self.device, faces=faces, clip=self.clip())
        )

    def audio(self):
        return self.nets.encoder(self.cfg.encoder, self.cfg.audio)

    def identity(self):
        from sound2img.factory import identity_source

        return self.nets.identity(identity_source(self.cfg))


@dataclass
class _Ready:
    job: Job
    sources: list[Source]
    targets: list[Target]
    seconds: float

    @property
    def pairs(self):
        return [(s, t) for s in self.sources for t in self.targets]


def _target_key(o: EditPlan) -> str:
    """What an edit's targets depend on (jobs agreeing on it share them)."""
    keys = ("audio", "text", "mode", "mix_weight", "gain_db", "interp_steps", "interp_mode")
    return json.dumps({k: getattr(o.edit, k) for k in keys}, sort_keys=True)


def _prepare(job: Job, nets: _RankNetworks, target_cache: dict[str, list[Target]]) -> _Ready:
    """A job's sources and targets (a target already computed on this rank is reused)."""
    t0 = time.perf_counter()
    o = job.o
    G = nets.generator(job.c.generator)
    check_layer_split(o, G)
    sources = image_sources(job.c, o, G, nets.device)  # photos: inverted once, cached on disk
    if o.edit.latents or o.edit.mean_latent or o.edit.seeds:
        sources += resolve_sources(o, G, nets.device)
    key = _target_key(o)
    if key not in target_cache:
        encoder = frontend = wavs = None
        if o.edit.audio:
            encoder, frontend = nets.audio()
            wavs = load_sounds(o, frontend)
        target_cache[key] = resolve_targets(
            o, clip=nets.clip(), encoder=encoder, frontend=frontend, wavs=wavs, device=nets.device
        )
    return _Ready(job, sources, target_cache[key], time.perf_counter() - t0)


def _kill_hook(rank: int, finished: int) -> None:
    spec = os.environ.get(KILL_HOOK_ENV, "")
    if spec and spec == f"{rank}:{finished}":
        os.kill(os.getpid(), signal.SIGKILL)


# ---- the queue ------------------------------------------------------------------------
def run_queue(
    cfg: ManipulateConfig, jobs: str | os.PathLike | list[dict[str, Any]], *, progress: bool | None = None
) -> QueueSummary:
    """Run every job of ``jobs`` (a job file, or its rows) not yet complete in ``cfg.out``
    on this process's share (all of them without torchrun); returns the summary of all
    ranks. Under
    ``torchrun`` it joins the process group (gloo on CPU, NCCL on CUDA, ``cuda:LOCAL_RANK``
    per rank) and leaves it at the end if it joined it."""
    import torch.distributed as dist

    from sound2img.utils.distributed import all_gather_object, broadcast_object, init_distributed, shutdown_distributed

    jobs = parse_jobs(list(enumerate(jobs, start=1)), cfg) if isinstance(jobs, list) else load_jobs(jobs, cfg)
    overwrite = cfg.overwrite
    out = Path(cfg.out or "outputs/edit")
    _check_queue_dir(out, overwrite)
    joined = not (dist.is_available() and dist.is_initialized())
    info = init_distributed(cfg.device or "auto")
    finished = False
    try:
        ledger = out / LEDGER
        complete: list[str] = []
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            complete = [] if overwrite else [j.id for j in jobs if job_complete(out / j.id)]
            recorded = {r["id"] for r in read_ledger(ledger) if r.get("status") == "done"}
            for jid in complete:  # finished, but killed before its ledger line
                if jid not in recorded:
                    append_line(
                        ledger,
                        json.dumps(
                            {
                                "id": jid,
                                "status": "done",
                                "reason": "found complete on disk",
                                "rank": 0,
                                "seconds": 0.0,
                                "metrics": None,
                            }
                        ),
                    )
        complete = broadcast_object(complete, info)
        done_before = set(complete)
        pending = [j for j in jobs if j.id not in done_before]
        batches = plan_batches(pending, cfg.edit.batch_size)
        progress = cfg.progress if progress is None else progress
        done, failed = _run_share(
            cfg, batches[info.rank :: info.world_size], out, info, total=len(pending), progress=progress
        )
        counts = all_gather_object((done, failed), info)
        finished = True
    finally:
        if joined:
            shutdown_distributed(wait_for_peers=finished)
    failed_ids = sorted(itertools.chain.from_iterable(f for _, f in counts))
    n_done = len(done_before) + sum(len(d) for d, _ in counts)
    return QueueSummary(
        len(jobs), n_done, len(failed_ids), len(done_before), ledger, info.rank, info.world_size, failed_ids
    )


def pairs_per_job(o: EditPlan) -> int:
    """How many (source, target) pairs a job optimises, from its options (a latent file
    counts as one source, as does a photo)."""
    e = o.edit
    sources = len(e.images) + (len(e.latents) or (1 if e.mean_latent else len(e.seeds)))
    targets = {"embedding_mix": 1, "interpolate": e.interp_steps}.get(e.mode, len(e.audio) + len(e.text))
    return sources * targets


def plan_batches(jobs: list[Job], batch_size: int) -> list[list[Job]]:
    """Jobs → batches optimised together: compatible jobs (``Job.group``) in file order,
    cut when ``batch_size`` pairs are reached. Batches are dealt to the ranks round-robin,
    so which jobs share a batch does not depend on the number of ranks."""
    out: list[list[Job]] = []
    ordered = sorted(range(len(jobs)), key=lambda i: (jobs[i].group, i))
    for _, group in itertools.groupby((jobs[i] for i in ordered), key=lambda j: j.group):
        batch, pairs = [], 0
        for job in group:
            batch.append(job)
            pairs += pairs_per_job(job.o)
            if pairs >= batch_size:
                out.append(batch)
                batch, pairs = [], 0
        if batch:
            out.append(batch)
    return out


def _run_share(
    cfg: ManipulateConfig, batches: list[list[Job]], out: Path, info, *, total: int, progress: bool
) -> tuple[list[str], list[str]]:
    """This rank's batches of jobs; returns (done ids, failed ids)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    from sound2img.factory import Networks

    nets = _RankNetworks(cfg, Networks(info.device, keep_failures=True))
    target_cache: dict[str, list[Target]] = {}
    ledger = out / LEDGER
    done: list[str] = []
    failed: list[str] = []
    desc = f"rank {info.rank}/{info.world_size}" + (f" ({total} jobs in all)" if info.is_main else "")
    bar = tqdm(
        total=sum(map(len, batches)), desc=desc, unit="job", position=info.rank, disable=not progress, leave=True
    )
    common = {"device": str(info.device), "versions": package_versions()}

    def record(job: Job, status: str, seconds: float, reason: str = "", metrics=None) -> None:
        append_line(
            ledger,
            json.dumps(
                {
                    "id": job.id,
                    "status": status,
                    "reason": reason,
                    "rank": info.rank,
                    "seconds": round(seconds, 3),
                    "metrics": metrics,
                }
            ),
        )
        (done if status == "done" else failed).append(job.id)
        bar.update(1)
        _kill_hook(info.rank, len(done) + len(failed))

    def flush(batch: list[_Ready]) -> None:
        if not batch:
            return
        first = batch[0].job
        pairs = [p for r in batch for p in r.pairs]
        t1 = time.perf_counter()
        try:
            results = optimize_pairs(
                pairs,
                first.o,
                generator=nets.generator(first.c.generator),
                clip=nets.clip(),
                identity=nets.identity() if first.o.manipulate.lambda_id > 0 else None,
                noise_mode=first.c.generator.noise_mode,
            )
        except Exception as exc:  # noqa: BLE001 - the batch's jobs fail, the queue goes on
            for r in batch:
                record(r.job, "failed", r.seconds, _one_line(exc))
            return
        share = (time.perf_counter() - t1) / len(pairs)
        start = 0
        for r in batch:
            t2 = time.perf_counter()
            n = len(r.pairs)
            mine_results, start = results[start : start + n], start + n
            gcfg = r.job.c.generator
            # the config the job ran with, as the single edit records it (without the queue's ``jobs``)
            config = {k: v for k, v in dataclasses.asdict(r.job.c).items() if k != "jobs"}
            try:
                edits = assemble_edits(
                    r.job.o,
                    r.sources,
                    mine_results,
                    generator=nets.generator(gcfg),
                    clip=nets.clip(),
                    noise_mode=gcfg.noise_mode,
                    setup_s=setup_s,
                    common={"config": {**config, "out": str(out / r.job.id)}, **common},
                    quality=nets.quality(gcfg.faces),
                )
                _clear_leftovers(out, r.job.id)
                write_edits(out / r.job.id, edits)
            except Exception as exc:  # noqa: BLE001
                record(r.job, "failed", r.seconds + n * share + time.perf_counter() - t2, _one_line(exc))
                continue
            record(r.job, "done", r.seconds + n * share + time.perf_counter() - t2, metrics=_summary(edits))

    setup_s = 0.0
    for batch in batches:
        ready: list[_Ready] = []
        for job in batch:
            try:
                ready.append(_prepare(job, nets, target_cache))
            except Exception as exc:  # noqa: BLE001 - a missing sound or latent fails this job only
                record(job, "failed", 0.0, _one_line(exc))
        setup_s = setup_s or time.perf_counter() - t0
        flush(ready)
    bar.close()
    return done, failed
