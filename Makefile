# Every target bootstraps what it needs: a fresh machine with Python and root is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DATA ?= ./chatruntime-data

.PHONY: run serve test lint typecheck pytest bench services clean

$(INSTALLED): pyproject.toml scripts/bootstrap-venv.sh
	PYTHON=$(PYTHON) VENV=$(VENV) sh scripts/bootstrap-venv.sh
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/chatruntime --data $(DATA)

# The HTTP service on the same file store; with no KEYS file it prints a one-time admin key.
HOST ?= 127.0.0.1
PORT ?= 8000
KEYS ?=
serve: $(INSTALLED)
	$(BIN)/chatruntime serve --data $(DATA) --host $(HOST) --port $(PORT) $(if $(KEYS),--keys $(KEYS))

services:
	sh scripts/install-services.sh

lint: $(INSTALLED)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(INSTALLED)
	$(BIN)/mypy src
	$(BIN)/mypy --strict examples

pytest: $(INSTALLED) services
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(INSTALLED) services
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info
