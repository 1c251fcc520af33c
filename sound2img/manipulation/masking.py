"""The latent-distance term of docs/method.md §2: plain L2 ‖w − w_s‖² or adaptive layer
masking (§3 there: the authors' rule, generalised to any ``num_ws`` and to one mask per
sample)."""

from __future__ import annotations

import torch

LATENT_TERMS = ("l2", "adaptive")


def layer_sq_dist(ws: torch.Tensor, source_ws: torch.Tensor) -> torch.Tensor:
    """‖w_l − w_s,l‖² per sample and layer: ws, source_ws [B,num_ws,w_dim] → [B,num_ws].

    Summed over ``w_dim`` (the authors' ``((w - w_s) ** 2).sum()``, not a mean)."""
    return (ws - source_ws).pow(2).sum(dim=-1)


class AdaptiveLayerMask:
    """Per-sample, per-layer weights g [B,num_ws] of adaptive layer masking (docs/method.md §3).

    Calling the mask gives the layer penalties ℓ_l = σ(g_l)·‖w_l − w_s,l‖² (differentiable
    in w, g unchanged); ``update(ℓ)``, called by the optimiser after its step, advances
    g_l ← g_l − step·ℓ_l·(1 − ℓ_l) with ℓ_l's detached value, so a step's loss uses g from
    before the update (the authors' order). Unlike their code, every layer of W+ is masked
    (they stop at 14, leaving layers 14–17 free at 1024²) and each sample has its own g,
    so a batch equals its members run alone.
    """

    def __init__(
        self,
        batch: int,
        num_ws: int,
        *,
        init: float = 1.0,
        step: float = 0.1,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,  # the latents' dtype: a float32 g would round a float64 edit
    ) -> None:
        self.g = torch.full((batch, num_ws), float(init), device=device, dtype=dtype)
        self.step = float(step)

    def __call__(self, sq_dist: torch.Tensor) -> torch.Tensor:
        """sq_dist [B,num_ws] → layer penalties ℓ [B,num_ws]; g is not changed."""
        return torch.sigmoid(self.g) * sq_dist

    def update(self, penalty: torch.Tensor) -> None:
        """Advance g from this step's layer penalties ℓ [B,num_ws] (their values only)."""
        value = penalty.detach().to(self.g.dtype)
        self.g = self.g - self.step * value * (1.0 - value)


def layer_penalties(ws: torch.Tensor, source_ws: torch.Tensor, mask: AdaptiveLayerMask | None) -> torch.Tensor:
    """λ_sim's term per sample and layer: ws, source_ws [B,num_ws,w_dim] → [B,num_ws].

    ``mask=None`` is plain L2; otherwise σ(g)-weighted (the mask is not advanced: the
    caller passes the result to ``mask.update`` once the step is taken)."""
    sq = layer_sq_dist(ws, source_ws)
    return sq if mask is None else mask(sq)
