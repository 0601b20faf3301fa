# Two commands on a fresh machine:
#   make quickstart   builds .venv, then runs the main job (emi-hf quickstart) on built-in synthetic data
#   make test         builds .venv, then runs the offline test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test quickstart benchmark demo clean

# The install takes 7.5 GB of disk: PyPI's torch for x86_64 is a CUDA build (5.5 GB with its nvidia-* and triton
# wheels). torch + torchvision, pinned in pyproject.toml and read from it, go in first on their own, so their
# downloaded wheels are gone before the rest is fetched, and pip keeps no cache. Where pip has to fetch torch from
# PyPI, that took the install's peak from 10.5 GB over the starting disk use (one step) to 8.0 GB (measured with df);
# from a local wheel index, where nothing is downloaded, both peak at 7.9-8.0 GB.
PIP := PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/pip
TORCH_PINS = $$($(PYTHON) -c "import tomllib; print(' '.join(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.split('==')[0] in ('torch', 'torchvision')))")

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/emi-hf quickstart --output-dir quickstart

benchmark: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_benchmarks.py

demo: $(STAMP)
	$(BIN)/python demo/app.py

clean:
	rm -rf $(VENV) quickstart .pytest_cache
