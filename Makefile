PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test check lint bench clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e ./sdk/python
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/untrace serve

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src sdk/python/src tests bench
	$(BIN)/ruff format --check src sdk/python/src tests bench

check: lint test

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .untrace .pytest_cache
