"""Sound → video (docs/method.md §10): windowed embeddings, keyframe edits with the
manipulation optimiser warm-started, loudness-driven motion, frames rendered in batches
and muxed with the sound (PyAV)."""
