# The README's two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The code interpreter's sandbox runs Debian's Python: it and its libraries live under /usr, which
# the sandbox mounts read-only, while the server's Python may live in a home directory it hides.
SANDBOX_PYTHON ?= /usr/bin/python3
SANDBOX_ENV := .venv-sandbox
SANDBOX_REQUIREMENTS := engine/tools/code_interpreter/requirements.txt
HOST ?= 127.0.0.1
PORT ?= 8000
# Test files run in this many worker processes (pytest-xdist); TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 4
# Twisted listens with a backlog of 50 by default: a burst of new streams overflowed it.
BACKLOG ?= 1024
DAPHNE := $(VENV)/bin/daphne -e "tcp:port=$(PORT):interface=$(HOST):backlog=$(BACKLOG)" config.asgi:application
export HOST PORT BACKLOG

.PHONY: run serve test test-postgres lint format check bench setup

# Node packages the tests use (axe-core, injected into Chromium); installed again when the
# lock file changes. Nothing from node_modules is served.
NODE_MODULES := node_modules/.installed
$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --silent
	touch $@

# Installs again only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The sandbox's environment, built here and never at run time; again only when its pins change.
# World-readable: the sandbox may run as an unprivileged user (nobody) that must read it.
$(SANDBOX_ENV)/.installed: $(SANDBOX_REQUIREMENTS)
	rm -rf $(SANDBOX_ENV)
	$(SANDBOX_PYTHON) -m venv $(SANDBOX_ENV)
	$(SANDBOX_ENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(SANDBOX_REQUIREMENTS)
	chmod -R a+rX $(SANDBOX_ENV)
	touch $@

setup: $(VENV)/.installed $(SANDBOX_ENV)/.installed
	$(PY) manage.py migrate --noinput --verbosity 0
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py issue_frontend_key
	$(PY) manage.py create_first_admin
	$(PY) manage.py create_default_assistant

# One server process per core (THREADLINE_PROCESSES; README, "Scaling out"): config/launch.py.
run: setup
	$(PY) -m config.launch

# One more server process, set up by `make run` already: `make serve PORT=8001` (README, "Scaling out").
serve: $(VENV)/.installed
	@echo "Threadline is serving on http://$(HOST):$(PORT)/; Ctrl-C stops it."
	$(DAPHNE)

# The official Node SDK the wire tests run (tests/wire/node), as its lockfile pins it.
NODE_FLOWS := tests/wire/node
$(NODE_FLOWS)/node_modules/.installed: $(NODE_FLOWS)/package.json $(NODE_FLOWS)/package-lock.json
	npm ci --prefix $(NODE_FLOWS) --no-audit --no-fund --silent
	touch $@

test: $(VENV)/.installed $(SANDBOX_ENV)/.installed $(NODE_MODULES) $(NODE_FLOWS)/node_modules/.installed
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -m serial $(PYTEST_ARGS) || test $$? -eq 5  # 5: none selected

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed $(SANDBOX_ENV)/.installed
	$(PY) bench/engine_stream.py
	$(PY) bench/code_interpreter.py

# The engine's suite again on PostgreSQL, and the chat's search (its own full-text index);
# THREADLINE_TEST_POSTGRES names the maintenance database. In one process: xdist workers each
# migrating fresh databases at once outran a small machine's disk.
# The sandbox's own tests use no database: they run once, in `make test`.
PG_SKIP := $(addprefix --ignore=tests/engine/code_interpreter/,test_sandbox_isolation.py test_sandbox_limits.py test_sessions.py)
test-postgres: $(VENV)/.installed $(SANDBOX_ENV)/.installed
	test -n "$$THREADLINE_TEST_POSTGRES" || (echo "Set THREADLINE_TEST_POSTGRES=postgres://user:pass@host/postgres" && exit 2)
	$(PY) -m pytest tests/engine tests/chat/test_search.py $(PG_SKIP) $(PYTEST_ARGS)
