# Puffin: `make demo` runs a local server with an agent; `make test` runs every check.
# Both set the machine up first (scripts/test-env.sh): the Debian packages they need
# (installed when run as root, else the apt-get command is printed), the virtualenv and,
# for `make test`, a throwaway PostgreSQL and ../shared/data.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DATA_DIR ?= ./var
TEST_ENV := scripts/test-env.sh

.PHONY: demo test checks lint typecheck contracts unit pytest install clean

$(BIN)/python:
	$(TEST_ENV) packages demo
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/puffin demo --data-dir $(DATA_DIR)

# Every check, with the system packages, PostgreSQL and shared data in place.
test:
	$(TEST_ENV) packages test
	$(TEST_ENV) run $(MAKE) --no-print-directory checks

checks: lint typecheck contracts pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

pytest: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
