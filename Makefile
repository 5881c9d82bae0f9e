# One command each from a fresh clone: `make demo` and `make test` set up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_CLI_NOTICES := 0
export AWS_EC2_METADATA_DISABLED := true
PYTEST_ARGS ?=

.PHONY: setup synth test test-quick demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml package.json package-lock.json
	@command -v $(PY) >/dev/null || { echo "make setup: $(PY) not found (Python 3.11+ is needed)"; exit 1; }
	@command -v npm >/dev/null || { echo "make setup: npm not found (Node.js 18+ is needed for the CDK CLI)"; exit 1; }
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,locust]'
	npm ci --silent --no-audit --no-fund
	@touch $(STAMP)

synth: setup
	$(BIN)/python app.py --synth cdk.out

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-quick: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not load" $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m device_sim demo

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf cdk.out .state reports
