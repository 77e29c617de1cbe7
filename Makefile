# The two commands a newcomer needs: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck check diagram clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,slack,teams,postgres]'
	@rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(BIN)/consentbot db upgrade
	$(BIN)/consentbot serve

# Three workers on CI's two cores: most tests wait on a database or a subprocess, so a third
# worker fills the waits. Work stealing keeps a worker from finishing last with a queue of slow
# tests (760 tests with PostgreSQL: 224 s against 254 s with the default split; -n 4: 235 s).
test: $(STAMP)
	$(BIN)/python -m pytest -n 3 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check bot handlers storage tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

diagram: $(STAMP)
	$(BIN)/consentbot policy diagram --out docs/checklist-flow.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
