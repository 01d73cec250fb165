# The README's two commands: `make serve` and `make test`. Each bootstraps .venv on its own.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
PIP_LOUD := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on
# TORCH=cpu: PyTorch's CPU-only wheels from its own index (about 1.5 GB in .venv); the default
# takes PyPI's build, which on Linux x86_64 brings CUDA's libraries (about 6 GB).
TORCH ?= default
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
DATA_DIR ?= ../shared/data
HOST ?= 0.0.0.0
PORT ?= 8000

CHROMIUM ?= /usr/bin/chromium

.PHONY: serve test lint typecheck pytest lock clean

# requirements.lock: every package of the suite's environment (pyproject's dependencies and the
# dev extra, with theirs) at one version, for Python 3.11 on Linux x86_64; `make serve`, `make
# test` and the Dockerfile all install with it as constraints. torch and torchvision stay out:
# each base brings its own build (CUDA, CPU); the lock is resolved with LOCK_TORCH, the
# Dockerfile's TORCH_VERSION / TORCHVISION_VERSION, so their dependencies agree with it.
LOCK := requirements.lock
LOCK_TORCH := torch==2.14.1 torchvision==0.29.1

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serve-installed: pyproject.toml $(LOCK) | $(BIN)/python
	@echo "make serve: installing the service into $(VENV), once."
ifeq ($(TORCH),cpu)
	@echo "  PyTorch's CPU-only build: about 1.5 GB, a few minutes on a fast link."
	$(PIP_LOUD) $(LOCK_TORCH) --index-url $(TORCH_CPU_INDEX)
else
	@echo "  PyTorch from PyPI: about 6 GB with CUDA's libraries on Linux x86_64."
	@echo "  No NVIDIA GPU here? Stop (Ctrl-C) and run: make serve TORCH=cpu (about 1.5 GB)."
endif
	$(PIP_LOUD) -c $(LOCK) $(LOCK_TORCH) -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) -c $(LOCK) $(LOCK_TORCH) -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

## serve: install and run the service on the committed checkpoints (port 8000)
serve: $(VENV)/.serve-installed
	$(BIN)/python -m app --host $(HOST) --port $(PORT)

## test: install everything and run linters, type checks and the whole test suite
test: $(VENV)/.dev-installed lint typecheck pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# The browser tests drive Debian's Chromium: installed here when missing (root or sudo).
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium \
	  || ($(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq \
	      && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium)

pytest: $(VENV)/.dev-installed $(CHROMIUM)
	MNIST_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/pytest

## lock: re-resolve requirements.lock after editing pyproject.toml's dependencies (needs PyPI)
lock: $(VENV)/.dev-installed
	printf '%s\n' $(LOCK_TORCH) > $(VENV)/lock-torch.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --no-emit-package torch --no-emit-package torchvision -c $(VENV)/lock-torch.txt \
	  --custom-compile-command "make lock" --quiet -o $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
