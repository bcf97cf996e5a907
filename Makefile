# The two commands: `make run` (the service on the embedded default) and `make test` (the whole suite).
# Both set up what they need: a venv at .venv with the pinned requirements, and Debian's
# chromium (plus ffmpeg for generated test videos) when Playwright's own browser is absent.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080
HOST ?= 127.0.0.1
export SCOPE_ALLOW_PRIVATE_URLS ?= 1

.PHONY: run test demo mutation setup system-deps clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# setup: everything either command needs (the Firestore emulator and Java included, where the
# package is available); run needs only the service's part.
setup: $(VENV)/.installed
	@bash scripts/system-deps.sh --test

system-deps:
	@bash scripts/system-deps.sh

run: $(VENV)/.installed system-deps
	@echo "Claude Scope on http://$(HOST):$(PORT) (storage: $${SCOPE_STORAGE:-local}, data: $${SCOPE_DATA_DIR:-.scope-data})"
	@if [ "$$SCOPE_ALLOW_PRIVATE_URLS" = "1" ]; then echo "SCOPE_ALLOW_PRIVATE_URLS=1: the browser may open localhost and private addresses (local development)"; fi
	@if [ -z "$$ANTHROPIC_API_KEY" ]; then echo "ANTHROPIC_API_KEY is not set: frames are read by the local analyser"; fi
	HOST=$(HOST) PORT=$(PORT) VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH scripts/serve.sh

test: setup
	$(PY) -m pytest -q tests

# A recording of the project's own demo app, made here, through the pipeline: steps and prompt printed.
demo: $(VENV)/.installed system-deps
	$(PY) scripts/demo.py

# Mutation check of the security-relevant modules (pyproject.toml [tool.mutmut]); scores in docs/BENCHMARKS.md.
mutation: $(VENV)/.installed
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) .scope-data .pytest_cache mutants
