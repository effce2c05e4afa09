# SMS gateway: the targets a newcomer can guess. `make run` and `make test` bootstrap .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# The template's runtime is python3.12: use it (or 3.13) from PATH or pyenv.
# (pyenv shims answer `command -v` even when their version is not active: try each one.)
PYTHON ?= $(shell for p in python3.12 python3.13 \
	$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 \
	$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13))' >/dev/null 2>&1 \
	&& { command -v $$p || echo $$p; } && exit; done)
# sam build needs python3.12 itself (the template's runtime), whatever .venv's Python is.
PY312 ?= $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 \
	&& { command -v $$p || echo $$p; } && exit; done)
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: one per core and one more (the local-stack tests spend
# much of their time waiting on their stacks' processes); TEST_WORKERS=0 runs in one process.
# The cores this process may run on (nproc: its affinity mask, as xdist's -n auto counted),
# not every core of the machine.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null \
	|| echo 1) + 1 )))

# Starts Docker (and builds the stand-in Lambda base image where no registry is reachable) for
# `make sam-local-check` (the workplace's shared script, beside the clone or under /work); empty,
# or a missing file, when Docker already runs with the image.
DOCKER_UP ?= $(firstword $(wildcard ../shared/tools/docker-up.sh /work/shared/tools/docker-up.sh))
# `make smoke`: the deployed API's URL (the stack's ApiUrl output) and the API key of a tenant
# routed to provider-a (FAIL_API_KEY: one routed to provider-fail, for flow 2); against the
# local stack (AuthMode=local) TENANT=tenant-1 FAIL_TENANT=tenant-2 (X-Tenant-ID) instead.
URL ?=
API_KEY ?=
FAIL_API_KEY ?=
TENANT ?=
FAIL_TENANT ?=
RECEIPT_SECRET ?=

.PHONY: help install run test lint format build validate bench events lock lock-check openapi fuzz \
	clean sam-local-check smoke

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or 3.13 is required (python3.12 on PATH or pyenv)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv and install the gateway with its dev tools

run: $(STAMP) ## Run the local stack on http://127.0.0.1:3000 (moto + SQLite, no Docker)
	$(BIN)/sms-gateway local $(ARGS)

# Plugins by name, none by discovery: schemathesis's, hypothesis's and anyio's entry points
# would have pytest rewrite the asserts of ~270 of their modules in every worker (2-3 s each).
TEST_PLUGINS := -p xdist -p hypothesispytest

test: $(STAMP) ## Run the tests (unit, integration, end-to-end), on one worker per core and one more
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/pytest $(TEST_PLUGINS) -n $(TEST_WORKERS) \
		--dist loadfile -m "not fuzz" $(PYTEST_ARGS)

fuzz: $(STAMP) ## schemathesis against the local stack from docs/openapi.json; prints its figures
	$(BIN)/pytest tests/e2e/test_fuzz.py -m fuzz -p no:randomly -p no:cacheprovider -s -q

lint: $(STAMP) validate ## ruff, mypy and sam validate --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	for f in functions/*/app.py; do $(BIN)/mypy --strict $$f || exit 1; done

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

validate: $(STAMP) ## sam validate --lint (cfn-lint)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} PATH="$(abspath $(BIN)):$$PATH" \
		$(BIN)/sam validate --lint

build: $(STAMP) ## sam build (no container), then check that every module ships its bytecode
	@test -n "$(PY312)" || { echo "sam build needs Python 3.12 (the template's runtime): python3.12 on PATH or pyenv"; exit 1; }
	PATH="$(abspath $(BIN)):$(dir $(PY312)):$$PATH" $(BIN)/sam build
	$(BIN)/python -m tests.build_output .aws-sam/build

# The layer's lock: every runtime dependency pinned with its hashes, resolved for the Lambda
# runtime (CPython 3.12, manylinux x86_64) whatever machine runs it, from the releases uploaded
# before the lock date written in layers/requirements.in (so a resolution is reproducible).
LOCK_DATE = $(shell sed -n 's/^\# lock-date: *//p' layers/requirements.in)
UV_COMPILE = pip compile --quiet --generate-hashes --python-version 3.12 \
	--python-platform x86_64-manylinux2014 --exclude-newer "$(LOCK_DATE)" \
	--custom-compile-command "make lock" requirements.in -o requirements.txt

lock: $(STAMP) ## Regenerate layers/requirements.txt (hashed) from layers/requirements.in
	@test -n "$(LOCK_DATE)" || { echo "layers/requirements.in has no '# lock-date:' line"; exit 1; }
	rm -f layers/requirements.txt
	cd layers && $(abspath $(BIN))/uv $(UV_COMPILE)

lock-check: $(STAMP) ## Fail when layers/requirements.txt is not what `make lock` makes (PyPI)
	@test -n "$(LOCK_DATE)" || { echo "layers/requirements.in has no '# lock-date:' line"; exit 1; }
	@tmp=$$(mktemp -d) && cp layers/requirements.in "$$tmp"/ \
		&& (cd "$$tmp" && $(abspath $(BIN))/uv $(UV_COMPILE)) \
		&& diff -u layers/requirements.txt "$$tmp"/requirements.txt \
		&& rm -rf "$$tmp" \
		|| { echo "layers/requirements.txt is not what make lock makes: run it and commit"; exit 1; }

sam-local-check: build ## sam local invoke (every event) + start-api + start-lambda, demo flows
	@if [ -n "$(DOCKER_UP)" ] && [ -x "$(DOCKER_UP)" ]; then "$(DOCKER_UP)"; \
	else docker info >/dev/null || { echo "Docker is not running (DOCKER_UP=$(DOCKER_UP))"; exit 1; }; fi
	PATH="$(abspath $(BIN)):$$PATH" PYTHONPATH="$(abspath layers)" \
		$(BIN)/python scripts/sam_local_check.py $(ARGS)

smoke: $(STAMP) ## The demo flows against a deployed API: make smoke URL=https://... API_KEY=...
	@test -n "$(URL)" || { echo "usage: make smoke URL=<ApiUrl> API_KEY=<key> [FAIL_API_KEY=<key>] [RECEIPT_SECRET=<provider-a secret>]"; exit 1; }
	$(BIN)/python scripts/demo_flows.py --url "$(URL)" \
		$(if $(API_KEY),--api-key "$(API_KEY)") $(if $(FAIL_API_KEY),--fail-api-key "$(FAIL_API_KEY)") \
		$(if $(TENANT),--tenant "$(TENANT)") $(if $(FAIL_TENANT),--fail-tenant "$(FAIL_TENANT)") \
		$(if $(RECEIPT_SECRET),--receipt-secret "$(RECEIPT_SECRET)") $(ARGS)

bench: build ## Print the cost figures: AWS requests, DynamoDB writes, SQL statements, cold imports
	$(BIN)/python -m bench.bench $(ARGS)

events: $(STAMP) ## Regenerate events/ from sam local generate-event
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/make_events.py

openapi: $(STAMP) ## Write docs/openapi.json from the routes and models (CI fails on drift)
	$(BIN)/python scripts/openapi.py

clean: ## Remove build output and local data
	rm -rf .aws-sam .sms-gateway .pytest_cache .mypy_cache .ruff_cache .hypothesis
