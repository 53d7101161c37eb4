# The two commands of the quick start: `make dev` runs the platform, `make test` tests it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ML_PLATFORM_HOME ?= $(CURDIR)/.ml_platform
export DAGSTER_HOME ?= $(ML_PLATFORM_HOME)/dagster
# pip installs Playwright's Python package only; no browser is ever downloaded.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000
ENDPOINT_PORT ?= 8000

.PHONY: install system-deps browser dev serve demo test test-fast mlflow bench lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Set up, land the initial clinical data, start the endpoint and Dagster (UI, daemon, sensors) on 127.0.0.1.
## The deployment asset verifies against this endpoint that what it promotes is what is served.
dev: install
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ml-platform seed
	$(BIN)/ml-platform serve --port $(ENDPOINT_PORT) & serve=$$!; trap 'kill $$serve' EXIT INT TERM; \
	ML_PLATFORM_ENDPOINT_URL=http://127.0.0.1:$(ENDPOINT_PORT) \
	$(BIN)/dagster dev -w workspace.yaml --host 127.0.0.1 --port $(DAGSTER_PORT)

## The endpoint alone (every model with a champion) on http://127.0.0.1:$(ENDPOINT_PORT), docs at /docs.
serve: install
	$(BIN)/ml-platform serve --port $(ENDPOINT_PORT)

## The closed loop in about ten minutes, on a home of its own (.ml_platform_demo/).
demo: install
	rm -rf .ml_platform_demo
	$(BIN)/ml-platform demo

## Debian packages the tests start: a throwaway PostgreSQL server (installed where missing).
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q postgresql)

## Set up and run the whole test suite (what CI runs).
test: install system-deps browser
	$(BIN)/lint-imports
	$(BIN)/pytest

## The browser test drives Debian's Chromium (Playwright never downloads one): install it where missing.
## Installing needs root (CI runs as root); elsewhere, install the chromium package yourself.
browser:
	@test -x /usr/bin/chromium || { \
	  test "$$(id -u)" = 0 || { echo "/usr/bin/chromium is missing: run 'apt-get install -y chromium' as root" >&2; exit 1; }; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

## The suite without the slow end-to-end tests, for quick local iterations.
test-fast: install system-deps
	$(BIN)/pytest -m "not e2e"

## The MLflow UI on the platform's tracking store.
mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(ML_PLATFORM_HOME)/mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT)

## The pipeline benchmark (platform vs. a bare script), see docs/benchmarks.md.
bench: install
	$(BIN)/python benchmarks/pipeline_overhead.py

lint: install
	$(BIN)/ruff check ml_platform ml_platform_tests benchmarks
	$(BIN)/lint-imports

## Delete the demo: all platform state lives in the platform home.
clean:
	rm -rf $(ML_PLATFORM_HOME) .ml_platform_demo
