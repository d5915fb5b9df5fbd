# The one front door. `make help` lists the targets, section by section.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR ?= .cluster
IMAGE ?= filecleanup/filecleanup-operator:dev
NODE_DIR ?= .node
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

##@ General

# Each line `target: ## text` is listed under the `##@ Section` above it (kubebuilder's recipe). awk
# reads the Makefile's text, not make's: a variable a help text names is handed to it in the
# environment and expanded there (HELP_VARIABLES), so that help shows the value that applies.
HELP_VARIABLES := CHART CLUSTER_DIR DIST NODE_DIR
.PHONY: help
help: ## list the targets, section by section
	@$(foreach name,$(HELP_VARIABLES),$(name)='$($(name))') awk ' \
		function expand(text,  name) { \
			while (match(text, /\$$\([A-Za-z_]+\)/)) { \
				name = substr(text, RSTART + 2, RLENGTH - 3); \
				if (!(name in ENVIRON)) break; \
				text = substr(text, 1, RSTART - 1) ENVIRON[name] substr(text, RSTART + RLENGTH); \
			} \
			return text; \
		} \
		BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, expand($$2) } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

.PHONY: clean
clean: cluster-down ## remove the venv, tools and cluster state (not the binary cache)
	rm -rf $(VENV) $(TOOLS) $(CLUSTER_DIR) $(NODE_DIR) .build site .mypy_cache .ruff_cache .pytest_cache

##@ Development

$(UV):
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) requirements-dev.lock pyproject.toml
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	# Compiled now, as in the image: the 6 MB kubernetes client modules compiled at every start (where
	# PYTHONDONTWRITEBYTECODE is set) would add a 120 MB peak to every operator the tests run.
	$(UV) pip sync --quiet --python $(PY) --require-hashes --compile-bytecode requirements-dev.lock
	$(UV) pip install --quiet --python $(PY) --no-deps --editable .
	touch $@

.PHONY: venv
venv: $(VENV)/.synced ## create .venv from the lock file

.PHONY: lock
lock: $(UV) ## re-resolve requirements*.lock from pyproject.toml
	$(UV) pip compile --quiet --upgrade pyproject.toml --generate-hashes --python-version 3.11 -o requirements.lock
	$(UV) pip compile --quiet --upgrade pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements-dev.lock

.PHONY: fmt
fmt: venv ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The import contracts are [tool.importlinter] in pyproject.toml. No cache: the graph takes milliseconds.
.PHONY: lint
lint: venv ## ruff, ruff format --check, mypy --strict, hadolint, the import contracts, mkdocs build --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mkdocs build --strict --quiet

# mkdocs.yml; --strict turns a link to a missing page or heading into an error.
.PHONY: docs
docs: venv ## build the documentation site (mkdocs.yml, docs/) into site/
	$(VENV)/bin/mkdocs build --strict

CHART := charts/filecleanup-operator
NAMESPACED_NEEDS_NAMESPACES := scope: namespaced needs watchNamespaces to list at least one namespace

# helm lint evaluates neither `fail` nor `required` (it lints with them disarmed), so each value set is
# also rendered with helm template, and one set that the chart must refuse is checked to fail. No
# cluster needed: lookup finds nothing and the CRD is rendered.
.PHONY: chart-lint
chart-lint: ## helm lint --strict and helm template with each $(CHART)/ci/*-values.yaml; a bad set must fail
	@helm=$$(tools/envtest/obtain.sh helm | tail -1); \
	for values in $(CHART)/ci/*-values.yaml; do \
		echo "$$values"; \
		"$$helm" lint --strict --quiet $(CHART) -f "$$values"; \
		"$$helm" template lint $(CHART) -f "$$values" >/dev/null; \
	done; \
	if refused=$$("$$helm" template lint $(CHART) --set scope=namespaced 2>&1); then \
		echo "scope=namespaced without watchNamespaces rendered; the chart must refuse it" >&2; exit 1; \
	fi; \
	grep -qF "$(NAMESPACED_NEEDS_NAMESPACES)" <<<"$$refused" || { echo "$$refused" >&2; exit 1; }; \
	echo "scope=namespaced without watchNamespaces: refused"

CRD_SOURCES := $(wildcard crds/*.yaml)
CHART_CRDS := charts/filecleanup-operator/files/crds

# A copy, not a symlink: helm logs "found symbolic link in path" on every command that loads a chart
# with one, and `helm package` would copy it anyway. tests/unit/test_chart_files.py checks they match.
.PHONY: crds
crds: ## copy the CRD and its admission policy from crds/ (the one source) into the chart
	cp $(CRD_SOURCES) $(CHART_CRDS)/

##@ Build

.PHONY: control-plane
control-plane: ## build (once) and cache kube-apiserver and etcd
	tools/envtest/obtain.sh control-plane

.PHONY: seaweedfs
seaweedfs: ## build (once) and cache SeaweedFS's weed: the real S3-compatible store of the S3 tests
	tools/envtest/obtain.sh seaweedfs

.PHONY: fake-gcs-server
fake-gcs-server: ## build (once) and cache fake-gcs-server: Google Cloud Storage's JSON API for the gcs tests
	tools/envtest/obtain.sh fake-gcs-server

.PHONY: promtool
promtool: ## build (once) and cache Prometheus's promtool: the chart's alert rules are checked with it
	tools/envtest/obtain.sh promtool

.PHONY: azurite
azurite: ## install (once) and cache Azurite: Microsoft's Azure Blob emulator for the azureblob tests
	tools/envtest/obtain.sh azurite

.PHONY: helm
helm: ## build (once) and cache helm
	tools/envtest/obtain.sh helm

.PHONY: syft
syft: ## build (once) and cache syft: the SBOM of the release's image
	tools/envtest/obtain.sh syft

.PHONY: node-binaries
node-binaries: ## build (once) and cache kubelet, kube-controller-manager and kube-scheduler
	tools/envtest/obtain.sh node

.PHONY: image
image: ## build the operator image (IMAGE=...); starts Debian's dockerd if no engine answers
	tools/image/image.sh build $(IMAGE)

.PHONY: engine-down
engine-down: ## stop the Docker engine that `make image` started, if it did
	tools/image/image.sh engine-down

##@ Release

# One version for every artifact: VERSION=x.y.z, else the vX.Y.Z tag on HEAD; a tagged HEAD is released
# under its tag only (docs/versioning.md). Built from a stamped copy of the tree: the tree stays as it is.
VERSION ?=
DIST ?= dist
RELEASE_FLAGS = --version '$(VERSION)' --dist $(DIST) $(if $(ALLOW_DIRTY),--allow-dirty)

.PHONY: release-version
release-version: venv ## print the version a release would take (VERSION, else HEAD's vX.Y.Z tag)
	@$(PY) -m tools.release.build version --version '$(VERSION)'

.PHONY: release-python-chart
release-python-chart: venv helm ## no docker: wheel, sdist, chart, the wheel's SBOM and SHA256SUMS into $(DIST)/
	$(PY) -m tools.release.build python-chart $(RELEASE_FLAGS)

.PHONY: release-image
release-image: venv syft ## the image as an OCI archive and its SBOM (syft) into $(DIST)/, and SHA256SUMS again
	$(PY) -m tools.release.build image $(RELEASE_FLAGS)

# In this order: release-python-chart empties $(DIST)/ first. ALLOW_DIRTY=1 builds uncommitted changes.
.PHONY: release
release: venv helm syft ## every artifact of VERSION=x.y.z (default: HEAD's vX.Y.Z tag) into $(DIST)/
	$(PY) -m tools.release.build python-chart $(RELEASE_FLAGS)
	$(PY) -m tools.release.build image $(RELEASE_FLAGS)

##@ Test

.PHONY: test
test: venv control-plane helm seaweedfs fake-gcs-server azurite promtool ## every test but end-to-end: unit, storage backends, integration (own control plane)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## the unit tests alone: pure logic and in-process fakes, no servers, nothing built (seconds)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-storage
test-storage: venv seaweedfs fake-gcs-server azurite ## each storage backend against a real server or its vendor's emulator
	$(PY) -m pytest tests/storage $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: venv control-plane helm seaweedfs fake-gcs-server azurite promtool ## the operator, CLI, client and chart against a real kube-apiserver and etcd
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

.PHONY: e2e
# syft before the sandbox: inside it there is no network to build it with (the release image's test).
e2e: venv control-plane node-binaries helm syft image ## end-to-end: the image as the chart's pod, in docker and under a kubelet
	FILECLEANUP_IMAGE=$(IMAGE) tools/e2e/sandbox.sh $(PY) -m pytest tests/e2e/container $(PYTEST_ARGS)
	FILECLEANUP_IMAGE=$(IMAGE) tools/node/node.sh run $$(mktemp -d) $(IMAGE) -- $(PY) -m pytest tests/e2e/node $(PYTEST_ARGS)

.PHONY: bench
bench: venv control-plane helm ## benchmarks: a table of ratios, JSON in bench/results/ (BENCH_ARGS=--quick)
	$(PY) -m bench.run $(BENCH_ARGS)

.PHONY: bench-footprint
bench-footprint: venv control-plane ## etcd under a steady flow (30 min), a 1,000,000-key manifest (FOOTPRINT_ARGS=...)
	$(PY) -m bench.footprint $(FOOTPRINT_ARGS)

##@ Cluster

.PHONY: cluster
cluster: venv control-plane ## start the local control plane; writes $(CLUSTER_DIR)/kubeconfig
	$(PY) -m tools.envtest.controlplane up --dir $(CLUSTER_DIR)

.PHONY: node
node: venv control-plane node-binaries image ## a one-node cluster with a kubelet in its own network namespace ($(NODE_DIR))
	tools/node/node.sh up $(NODE_DIR) $(IMAGE)
	@echo "use it: tools/node/node.sh exec $(NODE_DIR) kubectl get pods -A"

.PHONY: cluster-down
cluster-down: ## stop the local control plane (and what `make dev` left running), and the node if `make node` started one
	@if [ -x $(PY) ]; then $(PY) -m tools.dev.dev down --dir $(CLUSTER_DIR); fi
	@if [ -f $(NODE_DIR)/netns ]; then tools/node/node.sh down $(NODE_DIR); fi

##@ Demo

.PHONY: dev
dev: venv control-plane ## leave a control plane, the reference storage server and an operator running on loopback (prints where)
	$(PY) -m tools.dev.dev up --dir $(CLUSTER_DIR)

.PHONY: dev-down
dev-down: cluster-down ## stop what `make dev` started

.PHONY: demo
STORAGE ?= http
demo: cluster ## the main job on the local cluster: storage, operator, a FileCleanup (STORAGE=http|s3|gcs|azureblob|filesystem)
	$(PY) -m tools.demo.demo --kubeconfig $(CLUSTER_DIR)/kubeconfig --workdir $(CLUSTER_DIR)/demo \
		--storage $(STORAGE)

.PHONY: demo-helm
demo-helm: cluster helm ## the demo, with the operator installed by the Helm chart and run as its ServiceAccount
	$(PY) -m tools.demo.demo --kubeconfig $(CLUSTER_DIR)/kubeconfig --workdir $(CLUSTER_DIR)/demo \
		--helm $$(tools/envtest/obtain.sh helm)
