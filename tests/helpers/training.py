"""The training loop's options for the tests that call ``training_loop`` directly: the
schema's dataclasses (sound2img/config.py) holding the values those tests were written
against; each test replaces what it sets (``dataclasses.replace``)."""

from __future__ import annotations

from sound2img.config import LossOptions, LossTerms, OptimOptions, TrainOptions

# SGD with a 10-epoch cosine cycle, as configs/optim/sgd_cosine.yaml
OPTIM = OptimOptions(
    name="sgd", lr=1e-3, momentum=0.9, weight_decay=1e-4, lr_cycle_epochs=10.0, lr_min=0.0, warmup_steps=0
)
TRAIN = TrainOptions(
    batch_size=384,
    epochs=50,
    clip_seconds=10.0,  # read by the datasets, not by the loop
    channels_last=False,
    num_workers=0,
    checkpoint_every=1000,
    keep_checkpoints=3,
    log_every=10,
    progress=False,
)


def loss_options(symmetric: bool = True, **terms: float) -> LossOptions:
    """InfoNCE over the given terms (``at=1.0, aa=0.5``; the others off) with CLIP's
    learnable temperature (init 1/0.07, clamp 100), directions averaged."""
    weights = LossTerms(**{t: float(terms.pop(t, 0.0)) for t in ("at", "av", "aa")})
    if terms:
        raise TypeError(f"unknown loss terms {sorted(terms)}")
    return LossOptions(
        terms=weights,
        symmetric=symmetric,
        logit_scale="learnable",
        logit_scale_init=1 / 0.07,
        logit_scale_max=100.0,
        directions="mean",
    )
