"""Edits per hour through ``manipulate.py --jobs`` (the edit queue): one process vs
``torchrun`` with 2 ranks × 1 thread, end to end (interpreter start, networks built once
per rank, the edits, their files and the ledger), each run a fresh subprocess.

Cases: ``tiny`` — 16 jobs with ``preset=tiny``; ``256`` — 4 jobs at 256 px with random
weights at full size (StyleGAN2 config-f widths, CLIP ViT-B/32, the ResNet-18 audio
encoder), few steps unless ``--steps-256`` says otherwise. Besides the wall time, the
ledger's per-job seconds (the rank's optimisation share plus writing) are summarised.
(Named ``edit_queue``, not ``queue``: a script's folder comes first on ``sys.path``, and a
``queue.py`` there shadows the standard library's for every benchmark, torch's imports included.)

    python benchmarks/edit_queue.py                          # both cases
    python benchmarks/edit_queue.py --cases tiny --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "manipulate.py"
FULL_256 = [
    "generator=tiny",
    "generator.tiny.resolution=256",
    "generator.tiny.z_dim=512",
    "generator.tiny.w_dim=512",
    "generator.tiny.n_mlp=8",
    "generator.tiny.channel_base=32768",
    "generator.tiny.channel_max=512",
    "clip.pretrained=null",
    "encoder.path=null",
]


def _jobs(path: Path, n: int) -> Path:
    rows = [
        {
            "id": f"job{i:02d}",
            **({"audio": f"tone:{200 + 37 * i}"} if i % 2 == 0 else {"text": f"prompt {i}"}),
            "seed": i,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(case: str, ranks: int, threads: int, n_jobs: int, steps: int, batch: int, tmp: Path) -> dict:
    jobs = _jobs(tmp / f"{case}-{ranks}x{threads}.jsonl", n_jobs)
    # A folder of its own per run: the queue resumes into an existing one, and a run that
    # found every job complete would time only the start-up.
    out = tmp / f"{case}-{ranks}x{threads}-out"
    if out.exists():
        raise RuntimeError(f"{out} exists: each run needs a fresh output folder")
    args = [
        "--jobs",
        str(jobs),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--batch-size",
        str(batch),
        "--device",
        "cpu",
        "progress=false",
        *(["preset=tiny"] if case == "tiny" else FULL_256),
    ]
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(ranks),
            "--master_port",
            str(_free_port()),
        ]
        if ranks > 1
        else [sys.executable]
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"case": case, "ranks": ranks, "error": proc.stderr.strip().splitlines()[-1:]}
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    if len(ledger) != n_jobs or any(r["status"] != "done" or r.get("reason") for r in ledger):
        return {"case": case, "ranks": ranks, "error": [f"expected {n_jobs} edits done by this run: {ledger}"]}
    per_job = sorted(r["seconds"] for r in ledger)
    return {
        "case": case,
        "ranks": ranks,
        "threads_per_rank": threads,
        "jobs": n_jobs,
        "steps": steps,
        "batch_size": batch,
        "wall_s": round(wall, 2),
        "edits_per_hour": round(3600 * n_jobs / wall, 1),
        "ledger_s_median": per_job[len(per_job) // 2],
        "ledger_s_sum": round(sum(per_job), 2),
        "done": sum(r["status"] == "done" for r in ledger),
        "loadavg_1min": [load0, os.getloadavg()[0]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["tiny", "256"], choices=["tiny", "256"])
    p.add_argument("--steps-tiny", type=int, default=20)
    p.add_argument("--steps-256", type=int, default=3, help="steps per 256-px edit (300 in the paper)")
    p.add_argument(
        "--threads-one", type=int, nargs="+", default=[1, 2], help="torch threads of the single process (one run each)"
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmp:
        for case in args.cases:
            n, steps, batch = (16, args.steps_tiny, 8) if case == "tiny" else (4, args.steps_256, 2)
            rows = [run(case, 1, t, n, steps, batch, Path(tmp)) for t in args.threads_one]
            rows.append(run(case, 2, 1, n, steps, batch, Path(tmp)))
            for r in rows:
                results.append(r)
                print(json.dumps(r), flush=True)
            for r in rows[:-1]:
                if "error" not in r and "error" not in rows[-1]:
                    print(
                        f"{case}: 2 ranks x 1 thread / 1 process x {r['threads_per_rank']} thread(s) = "
                        f"{rows[-1]['edits_per_hour'] / r['edits_per_hour']:.2f}x edits/hour",
                        flush=True,
                    )
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "cpu_count": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
