"""Training-data throughput: the file reader (VGGSound layout, each sample's mp4 decoded
by PyAV: its audio track, resampled, and its middle frame) against the shard reader
(the same clips prepared once by ``prepare_data.py`` into WebDataset shards: FLAC audio
at the front end's rate, a JPEG frame), both returning the training items of the loop
(10-s crop at 16 kHz, 224² frame, prompt).

Clips are generated in the real layout: ``vggsound.csv`` + ``video/{ytid}_{start:06d}.mp4``,
each ``--seconds`` long with H.264 video (``--size``, ``--fps``, moving gradients) and a
stereo 44.1-kHz AAC track, written with PyAV. Measured:

* samples/s of one pass over every clip through a DataLoader with 1 and 2 workers (worker
  start-up included), for each reader, and the per-sample cost in the main process;
* the time a training step at batch 32 spends blocked waiting for its batch (the loop's
  own ``make_sampler`` / ``epoch_loader``), next to the step's compute time, with the
  encoder ``--encoder`` on the ``logmel`` front end (no CLIP: a↔â only, which does not
  change what the loader must deliver). The default ``tiny_cnn`` is the fastest step, so
  the worst case for waiting; the paper's ``resnet50`` takes far longer per step on a CPU.

    python benchmarks/data.py                          # 200 clips, 1 and 2 workers
    python benchmarks/data.py --clips 100 --steps 3 --out data.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def write_clip(path: Path, seconds: float, fps: int, size: tuple[int, int], sr: int, seed: int) -> None:
    """An H.264 + stereo AAC mp4 (what VGGSound scrapes are) with moving gradient frames."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0 : 2 * w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    # one wide gradient picture, panned a few pixels per frame (cheap to draw, real motion)
    wide = np.clip(np.stack([base[c] + 60 * np.sin(xx / 23 + yy / 31 + c) for c in range(3)], -1), 0, 255)
    wide = wide.astype(np.uint8)
    n_audio = int(seconds * sr)
    t = np.arange(n_audio) / sr
    audio = np.stack(
        [0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(n_audio) for _ in range(2)]
    ).astype(np.float32)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "g": str(2 * fps)}
        as_ = out.add_stream("aac", rate=sr)
        as_.layout = "stereo"
        for i in range(int(seconds * fps)):
            x0 = (4 * i) % w
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, x0 : x0 + w]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        n = as_.codec_context.frame_size or 1024
        for start in range(0, n_audio, n):
            chunk = np.zeros((2, n), np.float32)
            seg = audio[:, start : start + n]
            chunk[:, : seg.shape[1]] = seg
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts, af.time_base = sr, start, Fraction(1, sr)
            for p in as_.encode(af):
                out.mux(p)
        for p in as_.encode():
            out.mux(p)


def make_tree(root: Path, n: int, seconds: float, fps: int, size: tuple[int, int]) -> None:
    (root / "video").mkdir(parents=True, exist_ok=True)
    labels = ["dog barking", "rain", "church bell ringing", "engine", "people cheering"]
    rows = []
    for i in range(n):
        ytid = f"clip{i:05d}"
        write_clip(root / "video" / f"{ytid}_000000.mp4", seconds, fps, size, 44100, i)
        rows.append([ytid, 0, labels[i % len(labels)], "train"])
    with open(root / "vggsound.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def one_pass(dataset, workers: int) -> float:
    """Seconds for one DataLoader pass over every item (worker start-up included)."""
    from torch.utils.data import DataLoader

    from sound2img.data.streams import ClipStream

    if isinstance(dataset, ClipStream):
        dataset.plan(0, 1, 0)
        dataset.start(0)
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    else:
        loader = DataLoader(
            dataset, batch_size=None, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0)
        )
    t0 = time.perf_counter()
    count = sum(1 for _ in loader)
    if count != len(dataset):
        raise RuntimeError(f"read {count} of {len(dataset)} items")
    return time.perf_counter() - t0


def per_sample_cost(dataset, k: int) -> float:
    """Median seconds per item read in this process (no workers)."""
    from sound2img.data.streams import ClipStream

    times = []
    if isinstance(dataset, ClipStream):
        dataset.plan(0, 1, 0)
        dataset.start(0)
        it = iter(dataset)
        for _ in range(k):
            t0 = time.perf_counter()
            next(it)
            times.append(time.perf_counter() - t0)
    else:
        for i in range(k):
            t0 = time.perf_counter()
            dataset[i]
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] if len(times) > 2 else times)


def step_wait(dataset, workers: int, steps: int, encoder_name: str, batch: int = 32) -> dict:
    """Per step: seconds blocked in the loader and seconds of compute (front end, views,
    encoder forward/backward, SGD), for ``steps`` steps after the first batch (start-up).
    Few steps flatter a slow reader (its prefetched batches hide it): compare the reader's
    samples/s with ``batch / compute`` for the steady state."""
    from sound2img.audio.augment import build_augment
    from sound2img.audio.frontend import build_frontend
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.training.batches import epoch_loader, make_sampler
    from sound2img.training.losses import ContrastiveLoss, LogitScale
    from sound2img.training.step import ContrastiveModel, make_views

    frontend = build_frontend("logmel", sample_rate=16000)
    augment = build_augment()
    student = ContrastiveModel(
        build_audio_encoder(encoder_name, embed_dim=512),
        ContrastiveLoss({"aa": 1.0}, symmetric=True, scale=LogitScale("learnable")),
    )
    opt = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)
    sampler = make_sampler(dataset, 1, 0, 0)
    loader = iter(epoch_loader(dataset, sampler, 0, 0, batch, workers, False, torch.Generator().manual_seed(0)))
    blocked, compute = [], []
    warm = 1  # the first batch waits for the workers to start
    if sampler.num_samples < batch * (warm + steps):
        raise SystemExit(f"--clips must be at least {batch * (warm + steps)} for {steps} steps at batch {batch}")
    for i in range(warm + steps):
        t0 = time.perf_counter()
        b = next(loader)
        t1 = time.perf_counter()
        views = make_views(b["wav"], frontend, augment, 2, torch.Generator().manual_seed(i))
        out = student(views, None)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= warm:
            blocked.append(t1 - t0)
            compute.append(t2 - t1)
    del loader
    return {
        "blocked_s_per_step": statistics.mean(blocked),
        "blocked_s_max": max(blocked),
        "compute_s_per_step": statistics.mean(compute),
        "steps": steps,
        "samples_per_s_needed": batch / statistics.mean(compute),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="480x360", help="frame size WxH of the generated clips")
    p.add_argument("--workers", default="1,2", help="DataLoader worker counts to measure")
    p.add_argument("--steps", type=int, default=5, help="training steps at batch 32 measured after the first (0: skip)")
    p.add_argument("--skip-readers", action="store_true", help="measure only the training steps")
    p.add_argument("--encoder", default="tiny_cnn", help="audio encoder of the step (paper: resnet50)")
    p.add_argument("--step-workers", type=int, default=2)
    p.add_argument("--dir", help="keep the generated clips and shards here (default: a temporary directory)")
    p.add_argument("--out", help="write the results as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from sound2img.data import build_dataset
    from sound2img.data.prepare import prepare_shards
    from sound2img.utils.device import machine_info

    size = tuple(int(v) for v in args.size.split("x"))
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.dir or tmp)
        root, shards = base / "vggsound", base / "shards"
        res: dict = {
            "machine": machine_info(torch.device("cpu")),
            "load_before": os.getloadavg(),
            "clips": args.clips,
            "seconds": args.seconds,
            "size": args.size,
            "fps": args.fps,
        }
        if not (root / "vggsound.csv").exists():
            t0 = time.perf_counter()
            make_tree(root, args.clips, args.seconds, args.fps, size)
            res["generate_s"] = time.perf_counter() - t0
        common = dict(sample_rate=16000, num_samples=int(args.seconds * 16000), crop="random", image_size=224)
        files = build_dataset("vggsound", root=str(root), **common)
        res["mp4_mib_per_clip"] = sum(f.stat().st_size for f in (root / "video").iterdir()) / args.clips / 2**20
        if not (shards / "index.json").exists():
            t0 = time.perf_counter()
            prepare_shards(
                build_dataset(
                    "vggsound",
                    root=str(root),
                    sample_rate=16000,
                    num_samples=int(args.seconds * 16000),
                    crop="center",
                    image_size=None,
                ),
                shards,
                settings={"benchmark": True},
                shard_size=50,
            )
            res["prepare_samples_per_s"] = args.clips / (time.perf_counter() - t0)
        index = json.loads((shards / "index.json").read_text())
        urls = str(shards / f"{{000000..{index['num_shards'] - 1:06d}}}.tar")
        stream = build_dataset("shards", urls=urls, shuffle_buffer=100, **common)
        res["shard_mib_per_sample"] = sum(s["bytes"] for s in index["shards"]) / index["num_written"] / 2**20

        for name, ds in () if args.skip_readers else (("files", files), ("shards", stream)):
            cost = per_sample_cost(ds, min(12, args.clips))
            res[f"{name}_ms_per_sample_main_process"] = 1000 * cost
            for w in workers:
                seconds = one_pass(ds, w)
                res[f"{name}_samples_per_s_{w}w"] = args.clips / seconds
            print(
                f"{name}: {1000 * cost:.1f} ms/sample in-process; "
                + ", ".join(f"{w} worker(s) {res[f'{name}_samples_per_s_{w}w']:.1f} samples/s" for w in workers),
                flush=True,
            )
        if not args.skip_readers:
            for w in workers:
                res[f"speedup_{w}w"] = res[f"shards_samples_per_s_{w}w"] / res[f"files_samples_per_s_{w}w"]
            res["speedup_per_sample"] = (
                res["files_ms_per_sample_main_process"] / res["shards_ms_per_sample_main_process"]
            )
        if args.steps > 0:
            for name, ds in (("files", files), ("shards", stream)):
                res[f"step_{name}"] = step_wait(ds, args.step_workers, args.steps, args.encoder)
                print(
                    f"step at batch 32 ({args.encoder}, {args.step_workers} workers, {name}): "
                    f"{res[f'step_{name}']['blocked_s_per_step']:.2f} s blocked, "
                    f"{res[f'step_{name}']['compute_s_per_step']:.2f} s compute per step",
                    flush=True,
                )
        res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
