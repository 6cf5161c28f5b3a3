# Everything runs in a local virtual environment (.venv), created on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: the whole workflow on synthetic data (embedded PostgreSQL, S3 on moto, real ASL)
demo: $(STAMP)
	$(BIN)/recommender demo

## make test: the whole test suite (starts its own PostgreSQL)
test: $(STAMP)
	$(BIN)/pytest -q

## make test-fast: the inner loop, the tests with no cost marker: tests/unit, which refuses a
## database, other processes and the network (tests/unit/conftest.py)
test-fast: $(STAMP)
	$(BIN)/pytest -q -n auto -m "not db and not slow and not e2e" tests/unit

## make lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) recommender-output build .hypothesis .pytest_cache .mypy_cache .ruff_cache
