# Every target bootstraps what it needs: a fresh machine with Python and root is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DATA ?= ./chatruntime-data

.PHONY: run serve test lint typecheck pytest bench reliability services clean

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
	$(BIN)/ruff check src tests examples benchmarks reliability
	$(BIN)/ruff format --check src tests examples benchmarks reliability

typecheck: $(INSTALLED)
	$(BIN)/mypy src
	$(BIN)/mypy --strict examples
	$(BIN)/mypy --strict reliability

pytest: $(INSTALLED) services
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(INSTALLED) services
	$(BIN)/python -m benchmarks

# Kills, full and read-only disks, hostile input, model and server faults: prints what it
# tried and what it lost (about 10 minutes on 2 cores; QUICK=1 for a smoke run of about a
# minute and a half).
# Runs as root (it mounts small tmpfs disks) and starts its own Redis and PostgreSQL.
QUICK ?=
reliability: $(INSTALLED) services
	$(BIN)/python -m reliability $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build src/*.egg-info
