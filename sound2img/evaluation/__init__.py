"""The paper's tables and figures (paper.md §3): one module per table, ``tables`` maps a
composed ``reproduce`` config onto them, ``report`` writes Markdown, JSON and PNGs."""
