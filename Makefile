# Two commands on a fresh machine:
#   make quickstart   builds .venv, then runs the main job (emi-hf quickstart) on built-in synthetic data
#   make test         builds .venv, then runs the offline test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test quickstart benchmark demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
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
