"""Two gloo processes on CPU give the same loss and gradients as one process on the whole
batch: negatives are gathered across ranks with gradients, and DDP averages the rest."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sound2img.training.losses import ContrastiveLoss, LogitScale
from sound2img.training.step import ContrastiveModel

from helpers import free_port

B, D, F_BINS, T = 8, 6, 4, 5


def _student() -> ContrastiveModel:
    # No BatchNorm: its per-rank batch statistics are the one thing DDP does not share.
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(F_BINS * T, 16), nn.Tanh(), nn.Linear(16, D))
    loss = ContrastiveLoss({"at": 1.0, "av": 0.5, "aa": 2.0}, symmetric=True, scale=LogitScale("learnable"))
    return ContrastiveModel(encoder, loss)


def _batch():
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(B, 1, F_BINS, T, generator=g)
    view = mel + 0.3 * torch.randn(B, 1, F_BINS, T, generator=g)
    text = nn.functional.normalize(torch.randn(B, D, generator=g), dim=-1)
    image = nn.functional.normalize(torch.randn(B, D, generator=g), dim=-1)
    # items without a video frame, unevenly spread: 3 of rank 0's rows, 1 of rank 1's
    valid = torch.tensor([True, False, False, False, True, True, False, True])
    image[~valid] = 0.0
    return mel, view, text, image, valid


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    # numpy copies: tensors sent through a queue would be shared memory the exiting
    # worker tears down
    return {k: torch.from_numpy(p.grad.detach().numpy().copy()) for k, p in model.named_parameters()}


def _worker(rank: int, world: int, port: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        student = _student()
        model = DistributedDataParallel(student)
        mel, view, text, image, valid = _batch()
        part = slice(rank * B // world, (rank + 1) * B // world)
        out = model([mel[part], view[part]], text[part], image[part], valid[part])
        out["loss"].backward()
        loss = out["loss"].detach().clone()
        dist.all_reduce(loss)
        queue.put((rank, float(loss) / world, {k: v.numpy() for k, v in _grads(student).items()}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~20 s, most of it starting two Python processes
def test_two_gloo_ranks_match_one_process():
    student = _student()
    mel, view, text, image, valid = _batch()
    out = student([mel, view], text, image, valid)
    out["loss"].backward()
    ref_loss, ref_grads = out["loss"].item(), _grads(student)
    assert student.loss.scale.log_scale.grad is not None

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank, loss, grads in results:
        grads = {k: torch.from_numpy(v) for k, v in grads.items()}
        assert abs(loss - ref_loss) <= 1e-5, (rank, loss, ref_loss)
        assert grads.keys() == ref_grads.keys()
        for k in ref_grads:
            assert torch.allclose(grads[k], ref_grads[k], atol=1e-5, rtol=0), (rank, k)
    # negatives really crossed ranks: a local-only loss would differ from the full batch
    local = _student()
    half = slice(0, B // 2)
    local_loss = local([mel[half], view[half]], text[half], image[half], valid[half])["loss"].item()
    assert abs(local_loss - ref_loss) > 1e-3


def _loop_worker(rank: int, world: int, port: int, run_dir: str, queue) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from sound2img.audio.frontend import build_frontend
    from sound2img.data import build_dataset
    from sound2img.models.audio_encoder import build_audio_encoder
    from sound2img.models.clip import build_clip
    from sound2img.training.loop import training_loop
    from sound2img.utils.distributed import init_distributed, shutdown_distributed

    from helpers.training import OPTIM, TRAIN, loss_options

    info = init_distributed("cpu")  # joins the group the environment describes, as under torchrun
    finished = False
    try:
        data = dict(num_classes=4, sample_rate=8000, num_samples=4000)
        torch.manual_seed(rank)  # different inits: DDP must broadcast rank 0's
        encoder = build_audio_encoder("tiny_cnn", embed_dim=32)
        out = training_loop(
            run_dir,
            encoder,
            build_frontend("logmel", sample_rate=8000, n_fft=256, hop_length=128, n_mels=32),
            build_dataset("synthetic", num_per_class=8, image_size=32, **data),
            build_dataset("synthetic", num_per_class=3, split="test", **data),
            clip=build_clip("tiny"),
            loss=loss_options(at=1.0, av=1.0, aa=1.0),
            optim=replace(OPTIM, name="sgd", lr=0.05),
            train=replace(TRAIN, batch_size=8, epochs=2, log_every=1, checkpoint_every=3),
            device="cpu",
        )
        # this rank's live weights (not rank 0's file): DDP must have kept them equal
        # (parameters only: BatchNorm running statistics are per rank between DDP's
        # broadcasts of rank 0's buffers at each forward)
        weights = {k: v.detach().numpy().copy() for k, v in encoder.named_parameters()}
        queue.put((info.rank, out["step"], out["val_acc"], weights))
        finished = True
    finally:
        shutdown_distributed(wait_for_peers=finished)


@pytest.mark.slow
def test_training_loop_under_two_ranks(tmp_path):
    """The whole loop under 2 gloo ranks: each takes half of every batch (32 clips, global
    batch 8: 4 steps per epoch), validation counts are summed over ranks, rank 0 writes
    the checkpoints, both ranks end with the same weights."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_loop_worker, args=(r, 2, port, str(tmp_path), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=300) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (r0, step0, acc0, w0), (r1, step1, acc1, w1) = results
    assert (r0, r1) == (0, 1) and step0 == step1 == 8
    assert acc0 == acc1 and 0.0 <= acc0 <= 1.0
    assert w0.keys() == w1.keys() and all((w0[k] == w1[k]).all() for k in w0)
    assert (tmp_path / "encoder_final.safetensors").is_file()
    state = torch.load(tmp_path / "checkpoints" / "state-000000008.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # each rank's RNG state, for resume
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
