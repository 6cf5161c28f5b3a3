# Everything runs in a local virtual environment (.venv), created on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

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

## make lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) recommender-output build .hypothesis .pytest_cache .mypy_cache .ruff_cache
