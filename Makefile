# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml $(shell find bot plugins -name '*.py' -o -name '*.sql' 2>/dev/null)
ARGS ?=

ATPROTO := tests/atproto

.PHONY: run test lint typecheck pytest bench format docker-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The same install step as docker/Dockerfile: `pip install .`
$(VENV)/.run-installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install . --quiet
	touch $@

$(VENV)/.dev-installed: $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet '.[dev]'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/python -m bot run $(ARGS)

test: lint typecheck docker-check pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check bot plugins tests bench
	$(BIN)/ruff format --check bot plugins tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

docker-check: $(VENV)/.dev-installed
	bash docker/check.sh $(BIN)/hadolint

# A real local Bluesky network for the Bluesky tests (npm's cache makes reinstalls quick).
# Without npm those tests are skipped with a reason; CI has npm, so there they run.
$(ATPROTO)/node_modules/.installed: $(ATPROTO)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(ATPROTO) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the Bluesky dev-network tests will be skipped"; \
	fi

pytest: $(VENV)/.dev-installed $(ATPROTO)/node_modules/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench

format: $(VENV)/.dev-installed
	$(BIN)/ruff format bot plugins tests bench
	$(BIN)/ruff check --fix bot plugins tests bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
