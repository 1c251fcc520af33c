"""The paper's tables and figures (docs/method.md §9): one module per table, ``tables`` maps a
composed ``reproduce`` config onto them, ``report`` writes Markdown, JSON and PNGs."""
