"""Learning-rate schedules shared by the latent optimisers (edits and photo inversion)."""

from __future__ import annotations

import math


def lr_ramp(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleCLIP's / NVlabs projector's learning-rate factor at t = step/steps (docs/method.md §4): a linear
    warm-up over the first ``rampup`` and a cosine decay over the last ``rampdown``.
    0 at t = 0."""
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return min(1.0, t / rampup) * down
