"""Audio-encoder training: the contrastive loss (``losses``), the loop (``loop``), its
checkpoints, ranks and metrics, and the config edge (``run``). Import submodules
directly; this package imports nothing so that ``losses`` stays light."""
