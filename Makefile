# Two entry points for people (see README): `make test` and `make edit`.
# VENV can point at an existing environment (CI passes a cached one).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
# Which build of torch: PyPI's by default (the CUDA build on x86-64 Linux, several GB);
# TORCH_INDEX=cpu takes PyTorch's CPU-only wheels (`make test TORCH_INDEX=cpu`), any other
# value is used as the index URL.
TORCH_INDEX ?=
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),https://download.pytorch.org/whl/cpu,$(TORCH_INDEX))

.PHONY: setup test test-slow test-all edit edit-tiny video-tiny bench screenshots

$(VENV)/.complete: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@echo "installing $(TORCH) from $(or $(TORCH_INDEX_URL),PyPI (the CUDA build on x86-64 Linux; TORCH_INDEX=cpu for CPU-only wheels))"
	$(PY) -m pip install --progress-bar on $(TORCH) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --progress-bar on -e ".[dev]"
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

# A sound-to-video run, offline, on small random networks (an install check; the README's
# docs/img/video-tiny-contact-sheet.png is its contact sheet).
video-tiny: setup
	$(PY) scripts/video.py --audio tone:440 --steps 30 --keyframe-steps 10 --out outputs/video-tiny --overwrite preset=tiny

bench: setup
	$(PY) benchmarks/frontend.py

# The README's pictures of the web app, taken by its browser test (needs Debian's chromium).
screenshots: setup
	$(PY) -m pip install -q -e ".[dev,demo]"
	SOUND2IMG_SCREENSHOT_DIR=docs/img $(PY) -m pytest -q tests/app/test_demo_browser.py -k screenshots
