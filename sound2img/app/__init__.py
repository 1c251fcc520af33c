"""The web app (``scripts/demo.py``, Gradio) and the HTML gallery (``scripts/report.py``).
Nothing in the package imports this one."""
