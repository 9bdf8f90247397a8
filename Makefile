# Every target creates .venv when missing and reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU build of PyTorch when this machine's wheelhouse has it; `make TORCH=torch` for the newest.
TORCH  ?= torch==2.13.0
# Oracles (timm, segment-anything) pull torchvision: pin the release made for that torch, or pip
# replaces the CPU torch with a newer CUDA one. `make TORCH=torch TORCHVISION=torchvision` lifts both.
TORCHVISION ?= torchvision==0.28.0
# torchattacks (oracle of the robustness tests) pins requests~=2.25.1, which it never imports, and Flower
# needs requests>=2.31: pip cannot resolve both, so it is installed without its dependencies (torch,
# torchvision, scipy and tqdm come with the other extras).
TORCHATTACKS ?= torchattacks==3.5.1
PYTEST_ARGS ?= -n 2

.PHONY: demo test bench lint clean help

help:
	@echo "make demo   run every experiment in quick mode on embedded data and print the report's path"
	@echo "make test   run the test suite"
	@echo "make bench  run benchmarks/ against the anchor libraries (results in benchmarks/results)"
	@echo "make lint   ruff"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Base install (runtime dependencies only).
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)" || $(PIP) install torch
	$(PIP) install -e .
	touch $@

# Development install: tests, oracles, benchmarks and lint.
$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install -e ".[test,bench,lint]" "$(TORCH)" "$(TORCHVISION)"
	$(PIP) install --no-deps "$(TORCHATTACKS)"
	touch $@

demo: $(VENV)/.stamp-base
	$(VENV)/bin/mlimaging run all --quick

test: $(VENV)/.stamp-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.stamp-dev
	@set -e; for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f; done

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
