# wp-k8s-service worker: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(CURDIR)/$(VENV)/bin:$(PATH)

PYTEST_ARGS ?=

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

# The worker (editable), then the dev-support package the tests, `make demo` and bench import
# (devsupport/: editable too, never part of the worker's wheel or image).
$(VENV)/.installed: requirements/dev.txt pyproject.toml devsupport/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(VENV_PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e devsupport
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the locked dependencies

.PHONY: services
services: ## Install the services tests start themselves (Redis, Docker, WordPress, PHP, MariaDB from Debian)
	ci/services.sh
	ci/wordpress/install.sh

.PHONY: tools
tools: ## Build the pinned Go tools into bin/ (cached by version outside the checkout)
	ci/tools.sh

.PHONY: chart-deps
chart-deps: tools ## Package ./chart into charts/ for the environment chart (root Chart.yaml)
	bin/helm dependency build .

.PHONY: lint
lint: venv ## ruff, mypy, shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	shellcheck ci/*.sh ci/kind/*.sh ci/node/*.sh ci/wordpress/*.sh .ci/run $(wildcard tests/*/*.sh)

.PHONY: test
test: venv services tools ## Run every test that can run on this machine
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: test-worker
test-worker: venv services ## Worker unit and integration tests only
	$(VENV)/bin/pytest tests/worker $(PYTEST_ARGS)

.PHONY: test-faults
test-faults: venv services ## Fault injection: SIGTERM, SIGKILL, Redis restart, collector outage, malformed messages
	$(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)

.PHONY: cold-check
cold-check: ## .ci/run in a fresh clone with empty Go, tool and pip caches, with stage times (not in make test)
	ci/cold-check.sh

.PHONY: image
image: ## Build the worker image (starts dockerd if needed; makes a local base when none can be pulled)
	ci/build-image.sh

.PHONY: test-image
test-image: venv services ## The worker image tests only (build, hardened run, stop)
	$(VENV)/bin/pytest tests/image $(PYTEST_ARGS)

.PHONY: test-cluster
test-cluster: venv tools ## The chart against a real kube-apiserver + etcd: install, upgrade, uninstall
	$(VENV)/bin/pytest tests/cluster $(PYTEST_ARGS)

.PHONY: cluster-up
cluster-up: venv tools ## Start a real single-node Kubernetes from host processes (root; KUBECONFIG=.state/node/kubeconfig)
	$(VENV_PY) -m wp_devsupport.cluster up

.PHONY: cluster-down
cluster-down: venv ## Stop the single-node Kubernetes and undo its side effects (bridge, iptables, mounts)
	$(VENV_PY) -m wp_devsupport.cluster down

.PHONY: test-node
test-node: venv services tools ## The chart's pods on the local node: worker modes, rolling update, pod kill, ServiceMonitor, kind flow
	$(VENV)/bin/pytest tests/node $(PYTEST_ARGS)

.PHONY: node-e2e
node-e2e: venv services tools ## The kind end-to-end flow on the local node of host processes (starts it when not running)
	CLUSTER_PROVIDER=local PYTHON=$(CURDIR)/$(VENV_PY) ci/kind/kind-e2e.sh

.PHONY: kind-e2e
kind-e2e: venv ## The chart on a kind cluster end to end (needs Docker, kind, kubectl, registry access: users' CI)
	ci/tools.sh helm crds
	ci/kind/kind-e2e.sh

.PHONY: dashboards
dashboards: venv ## Regenerate chart/dashboards/*.json from chart/dashboards/wp_dashboards (Grafana foundation SDK)
	cd chart/dashboards && $(CURDIR)/$(VENV_PY) -m wp_dashboards

.PHONY: test-observability
test-observability: venv services tools ## Dashboards, alert rules (promtool) and every query against the live stack
	$(VENV)/bin/pytest tests/observability $(PYTEST_ARGS)

.PHONY: demo
demo: venv services tools ## Run the local end-to-end stack and show what happened
	$(VENV_PY) -m wp_devsupport.demo

BENCH_ARGS ?= --profile
.PHONY: bench
bench: venv services tools ## Benchmarks (not part of make test): overhead vs bare Dramatiq -> docs/benchmarks.{md,json}
	$(VENV_PY) -m bench --output docs $(BENCH_ARGS)

.PHONY: lock
lock: venv ## Re-resolve requirements/*.txt (with hashes) from pyproject.toml and requirements/dev.in
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 -o requirements/runtime.txt -q
	$(VENV)/bin/uv pip compile pyproject.toml requirements/dev.in --extra grpc --generate-hashes --universal --python-version 3.11 -o requirements/dev.txt -q
	$(VENV)/bin/uv pip compile requirements/build.in --generate-hashes --universal --python-version 3.11 -o requirements/build.txt -q
