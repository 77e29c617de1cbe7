# The two commands a newcomer needs: `make run` and `make test`. Both create the venv if missing.
# Python 3.11, 3.12 or 3.13 (PYTHON=/path/to/python3.x); VENV names the venv (.ci/run keeps one per Python).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installs are pinned, with hashes, from the lock (uv.lock, exported to requirements/*.txt by `make lock`);
# a stamp per lock file, so a changed lock or pyproject.toml reinstalls.
hash = $(shell cat pyproject.toml $(1) | cksum | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.run-$(call hash,requirements/run.txt)
TEST_STAMP := $(VENV)/.test-$(call hash,requirements/dev.txt)
UV_VERSION := 0.13.9

.PHONY: run test test-sqlite lint typecheck check diagram lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || \
		{ echo "Python 3.11, 3.12 or 3.13 is needed (set PYTHON=/path/to/python3.x)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# What running needs only: the runtime dependencies and the slack, teams and postgres extras; no dev tools.
$(RUN_STAMP): $(BIN)/python pyproject.toml requirements/run.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/run.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.run-* && touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml requirements/dev.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.test-* $(VENV)/.run-* && touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/consentbot db upgrade
	$(BIN)/consentbot serve

# Three workers on CI's two cores: most tests wait on a database or a subprocess, so a third
# worker fills the waits. Work stealing keeps a worker from finishing last with a queue of slow
# tests (760 tests with PostgreSQL: 224 s against 254 s with the default split; -n 4: 235 s).
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 3 --dist worksteal

# The whole suite on SQLite only (the PostgreSQL variants skip): what .ci/run runs on the oldest
# Python, beside `make test` (SQLite and PostgreSQL) on the newest. Every test of the product's
# logic, CLI and platforms runs on both Pythons; the database driver's behaviour does not depend
# on the interpreter, so running it twice would only double the time. Measured in a fresh clone on
# CI's 2 cores (30 Nov 2026, a noisy machine): 3.13 install, lint, typecheck and `make test` 288 s
# (the suite 144 s); 3.11 install and `make test-sqlite` 160 s (the suite 99 s). Later the same day,
# in a slower spell: 403 s (the suite 224 s) and 206 s (131 s); the suite of that morning's code,
# run back to back with the afternoon's, took 174 s against 169 s. In the evening, after the
# answers stopped queueing on the access log's lock: 269 s (the suite 142 s) and 144 s (96 s).
test-sqlite: $(TEST_STAMP)
	CONSENTBOT_TEST_DATABASE_URL= $(BIN)/python -m pytest -n 3 --dist worksteal

lint: $(TEST_STAMP)
	$(BIN)/ruff check bot handlers storage tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

check: lint typecheck test

diagram: $(RUN_STAMP)
	$(BIN)/consentbot policy diagram --out docs/checklist-flow.md

# After changing dependencies in pyproject.toml: resolve again (uv.lock, for Python 3.11-3.13 on every
# platform) and export the pinned, hashed requirements pip installs from. tests/test_deploy.py fails
# while the lock does not match pyproject.toml.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv lock
	$(BIN)/uv export --quiet --frozen --no-emit-project --extra slack --extra teams --extra postgres -o requirements/run.txt
	$(BIN)/uv export --quiet --frozen --no-emit-project --all-extras -o requirements/dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
