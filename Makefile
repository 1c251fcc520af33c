# Two entry points for people (see README): `make test` and `make edit`.
# VENV can point at an existing environment (CI passes a cached one).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test test-slow test-all edit edit-tiny bench screenshots

$(VENV)/.complete: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.complete

# Tests run in WORKERS processes at once (pytest-xdist; each test keeps one BLAS thread, see
# tests/conftest.py); tests marked xdist_group share one worker. WORKERS=0: one process, in order.
WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(WORKERS) --dist loadgroup

test: setup
	$(PYTEST) -m "not slow"

# pytest exits 5 when no test is marked slow; that is not a failure here.
test-slow: setup
	$(PYTEST) -m slow || [ $$? -eq 5 ]

test-all: setup
	$(PYTEST)

# A sound-guided edit with the default (public) weights, fetched on first use.
edit: setup
	$(PY) scripts/manipulate.py --audio sample:rain --out outputs/edit-rain

# The same pipeline, offline, on small random networks (an install check, not a result).
edit-tiny: setup
	$(PY) scripts/manipulate.py --audio tone:440 --steps 30 --out outputs/edit-tiny --overwrite preset=tiny

bench: setup
	$(PY) benchmarks/frontend.py

# The README's pictures of the web app, taken by its browser test (needs Debian's chromium).
screenshots: setup
	$(PY) -m pip install -q -e ".[dev,demo]"
	SOUND2IMG_SCREENSHOT_DIR=docs/img $(PY) -m pytest -q tests/app/test_demo_browser.py -k screenshots
