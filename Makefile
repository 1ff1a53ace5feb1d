# The README's commands. Each target creates the virtualenv it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo up test test-under-load test-unit bench lint format clean lock

# Exact versions, hashed: every machine installs the same set (see "Updating the lock file").
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

lock:  ## re-resolve requirements.lock from pyproject.toml (then commit both)
	uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header \
	  --index-url https://pypi.org/simple -o requirements.lock

demo: $(STAMP)  ## ingest AV-digit demo clips end to end (SQLite, SQLAlchemy broker, local disk)
	$(VENV)/bin/tagloop demo

up: $(STAMP)  ## API, worker, beat and UI on this machine
	$(VENV)/bin/tagloop up

test: $(STAMP)  ## unit + integration + e2e (needs PostgreSQL and Redis on 127.0.0.1)
	$(PY) -m pytest -q -rfE $(PYTEST_ARGS) tests

# The suite with two busy processes beside it (a loaded CI machine): what fails only here waits
# on wall-clock time somewhere it should wait on a condition.
test-under-load: $(STAMP)
	@set -e; for i in 1 2; do ( while :; do :; done ) & echo $$! >> .load.pids; done; \
	trap 'kill $$(cat .load.pids) 2>/dev/null; rm -f .load.pids' EXIT; \
	$(PY) -m pytest -q -rfE $(PYTEST_ARGS) tests

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: $(STAMP)  ## benchmarks -> benchmarks/results.json
	$(PY) -m tests.benchmarks.run

lint: $(STAMP)
	$(VENV)/bin/ruff check tagloop services workers ui tests
	$(VENV)/bin/ruff format --check tagloop services workers ui tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format tagloop services workers ui tests
	$(VENV)/bin/ruff check --fix tagloop services workers ui tests

clean:
	rm -rf tagloop-data .pytest_cache .mypy_cache .ruff_cache
