# Two commands on a fresh machine with Python 3.11, pip and make:
#   make run    install, migrate, seed a local admin + token, serve
#   make test   everything CI runs: ruff, mypy, the scanner, pytest with coverage,
#               schemathesis against the real server

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint types scan pytest fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $@ $(VENV)/.installed

# The worker runs in the background of this recipe's shell; the trap stops it
# when the server ends (Ctrl-C), so one Ctrl-C stops both.
run: export DEBUG ?= 1
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_local_admin --base-url http://$(HOST):$(PORT)
	@echo "Starting the server on http://$(HOST):$(PORT)/ and one background worker; Ctrl-C stops both."
	@$(BIN)/python manage.py db_worker --interval 0.5 & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	trap 'exit 0' INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.installed-dev
	$(BIN)/mypy .

scan: $(VENV)/.installed-dev
	$(BIN)/python -m governance_scanner

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest --cov --cov-report=term

test: lint types scan pytest fuzz

# The API against its own schema: schemathesis, every check, a real gunicorn server.
fuzz: $(VENV)/.installed-dev
	.ci/fuzz_api

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/toolrunner_overhead.py
	$(BIN)/python bench/http_execution.py
	$(BIN)/python bench/worker_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.* htmlcov *.egg-info
