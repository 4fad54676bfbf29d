# Two commands matter: `make run` (embedded demo) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
DEBIAN_TEST_PACKAGES := redis-server postgresql chromium fonts-dejavu-core poppler-utils qpdf oathtool
PYTEST_ARGS ?=

.PHONY: run install install-test test-deps lint format test test-sqlite test-postgresql bench migrate translations clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

migrate: install
	$(FLASK) db upgrade

## Embedded mode: SQLite in instance/, jobs inline, demo data, dev server on $(HOST):$(PORT).
run: migrate
	$(FLASK) portal seed-demo
	$(FLASK) portal serve --host $(HOST) --port $(PORT)

## Debian packages the tests need, installed only when missing.
test-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	ls /usr/share/postgresql/*/extension/pg_trgm.control >/dev/null 2>&1 || missing="$$missing postgresql-contrib"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	command -v qpdf >/dev/null || missing="$$missing qpdf"; \
	command -v oathtool >/dev/null || missing="$$missing oathtool"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v runuser >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy portal

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-sqlite: install-test test-deps
	$(BIN)/pytest --db sqlite $(PYTEST_ARGS)

test-postgresql: install-test test-deps
	$(BIN)/pytest --db postgresql $(PYTEST_ARGS)

## Lint, then the whole suite on SQLite and on PostgreSQL (Redis, PostgreSQL, Chromium started by the tests).
test: test-deps install-test lint
	$(BIN)/pytest --db sqlite $(PYTEST_ARGS)
	$(BIN)/pytest --db postgresql $(PYTEST_ARGS)

## Benchmarks: each prints its ratio against a bare-library baseline measured in the same run.
bench: install-test test-deps
	$(BIN)/python -m tests.bench

## Re-extract the signer-facing texts, merge them into the catalogues and compile them.
translations: install-test
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -o portal/translations/messages.pot .
	$(BIN)/pybabel update -i portal/translations/messages.pot -d portal/translations --no-fuzzy-matching
	$(BIN)/pybabel compile -d portal/translations

clean:
	rm -rf $(VENV) instance tests/artifacts .pytest_cache .mypy_cache .ruff_cache
