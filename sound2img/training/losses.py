"""The one contrastive loss (docs/method.md §1): InfoNCE between L2-normalised embeddings,
its temperature, cross-rank gathering with gradients, and the weighted sum of the
a↔t, a↔v and a↔â terms. Training and validation both call this module."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sound2img.errors import UserInputError

if TYPE_CHECKING:
    from sound2img.config import LossOptions

TERMS = ("at", "av", "aa")  # audio↔text, audio↔video frame, audio↔augmented audio
SCALE_MODES = ("learnable", "fixed", "legacy")
DIRECTIONS = ("mean", "sum")  # how a symmetric term combines CE(a→b) and CE(b→a)
LEGACY_SCALE = math.exp(0.07)  # the authors' released code multiplies cosines by e^0.07 ≈ 1.0725

_NORM_TOL = 1e-3


def _check_normalised(x: torch.Tensor, name: str) -> None:
    """Refuse un-normalised features: the published zero-shot number was once missed by
    exactly this mistake (docs/method.md §1.6)."""
    if x.ndim != 2:
        raise ValueError(f"{name}: expected [B,D] embeddings, got shape {tuple(x.shape)}")
    norms = x.detach().float().norm(dim=-1)
    if norms.numel() and not torch.allclose(norms, torch.ones_like(norms), atol=_NORM_TOL):
        raise ValueError(
            f"{name}: embeddings must be L2-normalised (row norms span "
            f"{norms.min().item():.4f}..{norms.max().item():.4f})"
        )


def world_info() -> tuple[int, int]:
    """(rank, world_size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [B,D]`` from every rank in rank order → ``[W·B,D]``.

    The backward pass sums each rank's gradient for the copy it sent (all_gather with
    autograd), so negatives from other ranks train this rank's encoder too. Every rank
    must pass the same B. Without a process group this is the identity.
    """
    _, world = world_info()
    if world == 1:
        return x
    return _GatherWithGrad.apply(x)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gathered gradient over ranks (all_reduce,
    which every backend has) and keeps this rank's rows. Written out because
    ``torch.distributed.nn.functional.all_gather`` is deprecated."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D401 - autograd API
        rank, world = world_info()
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows[0] : ctx.rows[1]]


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    symmetric: bool = True,
    valid: torch.Tensor | None = None,
    directions: str = "mean",
) -> torch.Tensor:
    """InfoNCE between matching rows of ``a [B,D]`` and ``b [B,D]`` (both L2-normalised).

    Negatives are gathered from all ranks; row i of this rank is matched with row
    ``rank·B + i`` of the gathered batch (docs/method.md §1.2). ``symmetric``:
    ``directions="mean"`` gives (CE(a→b) + CE(b→a)) / 2 (CLIP's convention: symmetric and
    one-directional runs share a learning rate), ``"sum"`` gives CE(a→b) + CE(b→a) (the
    paper's formula: twice the gradient, i.e. the mean at twice the learning rate);
    otherwise a→b only.

    ``valid [B]`` (bool) marks the rows that take part, e.g. items that have a video
    frame in a batch mixing VGGSound and AudioSet; the others are neither anchors nor
    negatives. Returns a scalar scaled so that the mean over ranks (what DDP's gradient
    averaging optimises) is the mean over the valid rows of the whole global batch.
    """
    if a.shape != b.shape:
        raise ValueError(f"info_nce: a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
    _check_normalised(a if valid is None else a[valid], "info_nce a")
    _check_normalised(b if valid is None else b[valid], "info_nce b")
    if directions not in DIRECTIONS:
        raise UserInputError(f"loss directions must be one of {', '.join(DIRECTIONS)}, got {directions!r}")
    # Logits in fp32 even under autocast: a softmax over hundreds of negatives at scale
    # 100 loses too much in half precision. Casting the inputs is not enough — autocast
    # would run the matmul in bf16/fp16 again — so autocast is off for the whole loss.
    with torch.autocast(a.device.type, enabled=False):
        return _info_nce_fp32(a, b, logit_scale, symmetric, valid, directions)


def _info_nce_fp32(a, b, logit_scale, symmetric, valid, directions) -> torch.Tensor:
    dtype = torch.promote_types(a.dtype, torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    if isinstance(logit_scale, torch.Tensor):
        logit_scale = logit_scale.to(dtype)
    rank, world = world_info()
    all_a, all_b = gather_with_grad(a), gather_with_grad(b)
    labels = torch.arange(a.shape[0], device=a.device) + rank * a.shape[0]
    if valid is None:
        n_total = a.shape[0] * world
        mask = None
    else:
        valid = valid.to(device=a.device, dtype=torch.bool)
        all_valid = _gather_plain(valid)
        n_total = int(all_valid.sum())
        if n_total == 0:
            return (a.sum() + b.sum()) * 0.0  # keeps the graph (DDP) without moving anything
        mask = ~all_valid[None, :]
        labels = labels.masked_fill(~valid, -100)  # cross_entropy's ignore_index

    def direction(q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        logits = logit_scale * q @ keys.T
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, labels, reduction="sum") * (world / n_total)

    loss = direction(a, all_b)
    if symmetric:
        loss = loss + direction(b, all_a)
        if directions == "mean":
            loss = loss / 2
    return loss


def _gather_plain(x: torch.Tensor) -> torch.Tensor:
    """all_gather without autograd (masks, labels)."""
    _, world = world_info()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class LogitScale(nn.Module):
    """The multiplier on cosines (1/τ).

    ``learnable``: a parameter in log space, CLIP's init log(1/0.07), kept ≤ ``max``;
    ``fixed``: ``init`` as a buffer; ``legacy``: the authors' e^0.07 ≈ 1.0725 (a nearly
    flat softmax), for the ablation only.
    """

    def __init__(self, mode: str = "learnable", init: float = 1 / 0.07, max: float = 100.0):  # noqa: A002
        super().__init__()
        if mode not in SCALE_MODES:
            raise UserInputError(f"logit scale mode {mode!r} is not one of {', '.join(SCALE_MODES)}")
        if mode == "legacy":
            init = LEGACY_SCALE
        if not (init > 0 and max > 0):
            raise UserInputError(f"logit scale init ({init}) and max ({max}) must be positive")
        self.mode = mode
        self.log_max = math.log(max)
        log_init = torch.tensor(math.log(min(init, max)), dtype=torch.float32)
        if mode == "learnable":
            self.log_scale = nn.Parameter(log_init)
        else:
            self.register_buffer("log_scale", log_init)

    def forward(self) -> torch.Tensor:
        """The scale as a 0-d tensor (gradient flows into ``log_scale`` when learnable)."""
        return self.log_scale.clamp(max=self.log_max).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Pull the parameter back under ``max`` after an optimiser step (CLIP's clamp),
        so that the forward clamp never cuts its gradient for good."""
        self.log_scale.clamp_(max=self.log_max)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, value={self().item():.4f}"


class ContrastiveLoss(nn.Module):
    """total = Σ weight·InfoNCE over the enabled terms a↔t, a↔v, a↔â (docs/method.md §1.3).

    A term with weight 0 is off; the paper's ablations (no a↔â, one-directional,
    legacy scale) are arguments. One shared temperature, as in CLIP.
    """

    def __init__(
        self,
        terms: Mapping[str, float] | None = None,
        symmetric: bool = True,
        scale: LogitScale | None = None,
        directions: str = "mean",
    ):
        super().__init__()
        terms = dict({"at": 1.0, "av": 1.0, "aa": 1.0} if terms is None else terms)
        unknown = set(terms) - set(TERMS)
        if unknown:
            raise UserInputError(f"unknown contrastive term(s) {sorted(unknown)}; known: {', '.join(TERMS)}")
        if any(float(w) < 0 for w in terms.values()):
            raise UserInputError(f"contrastive term weights must be >= 0, got {terms}")
        self.weights = {k: float(terms.get(k, 0.0)) for k in TERMS}
        if not any(self.weights.values()):
            raise UserInputError("at least one contrastive term (at, av, aa) needs a positive weight")
        self.symmetric = bool(symmetric)
        if directions not in DIRECTIONS:
            raise UserInputError(f"loss.directions must be one of {', '.join(DIRECTIONS)}, got {directions!r}")
        self.directions = directions
        self.scale = scale if scale is not None else LogitScale()

    def enabled(self, term: str) -> bool:
        return self.weights[term] > 0

    def forward(
        self,
        audio: torch.Tensor,
        text: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        audio_view: torch.Tensor | None = None,
        image_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``audio [B,D]`` against ``text [B,D]``, ``image [B,D]`` and the second view
        ``audio_view [B,D]`` (all L2-normalised); ``image_valid [B]`` marks the items
        that have a frame (None: all). Returns ``{"loss": total, "loss_at": …, …}``
        with one entry per enabled term."""
        targets = {"at": text, "av": image, "aa": audio_view}
        scale = self.scale()
        out: dict[str, torch.Tensor] = {}
        total = None
        for term in TERMS:
            if not self.enabled(term):
                continue
            if targets[term] is None:
                raise ValueError(f"contrastive term {term!r} is enabled but its embeddings were not given")
            value = info_nce(
                audio,
                targets[term],
                scale,
                symmetric=self.symmetric,
                valid=image_valid if term == "av" else None,
                directions=self.directions,
            )
            out[f"loss_{term}"] = value
            total = self.weights[term] * value if total is None else total + self.weights[term] * value
        out["loss"] = total
        return out


def build_loss(o: LossOptions) -> ContrastiveLoss:
    """The ``loss`` config group → ``ContrastiveLoss`` with its temperature."""
    return ContrastiveLoss(
        {t: getattr(o.terms, t) for t in TERMS},
        symmetric=o.symmetric,
        directions=o.directions,
        scale=LogitScale(o.logit_scale, init=o.logit_scale_init, max=o.logit_scale_max),
    )
