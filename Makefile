# `make run`: set up .venv (idempotent) and run the main job on raw/ into processed/.
# `make test`: the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_LEVEL ?= WARNING

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# this machine's pip config names local indexes that may be absent; keep their warnings out of sight
PIPQUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: setup run test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip $(PIPQUIET)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' $(PIPQUIET)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/procpipe run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline schemas tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .prefect processed/versions processed/latest
