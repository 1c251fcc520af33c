"""Sound-guided manipulation (docs/method.md §2): guidance targets, source latents, the W+
optimiser, what one edit writes, and the config edge ``run.run_edit``."""
