PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test check lint typecheck bench clean

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

typecheck: setup
	$(BIN)/mypy src/untrace_server
	$(BIN)/mypy --strict sdk/python/src

check: lint typecheck test

bench: setup
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/queue_backends.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/otlp.py
	$(BIN)/python bench/sdk.py

clean:
	rm -rf $(VENV) .untrace .pytest_cache
