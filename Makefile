# kray's entry points: demo, test, bench, k8s-env, lint, images, e2e-kind.
# Each target installs what it needs into .venv (and caches outside the clone) by itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MYPY_VERSION := 2.4.1

.PHONY: install demo test test-unit test-integration test-chaos test-k8s bench k8s-env k8s-up k8s-down lint images images-if-changed container-engine e2e-kind clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[operator,test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

# The k8s tier runs pods from the images too (container mode): build them first when their content changed.
test: install k8s-env images-if-changed
	bash tools/ensure_chromium.sh  # the dashboard page's browser test (tests/integration) drives it
	$(BIN)/pytest -q tests/unit tests/integration tests/chaos tests/k8s

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install
	bash tools/ensure_chromium.sh
	$(BIN)/pytest -q tests/integration

test-chaos: install
	$(BIN)/pytest -q tests/chaos

test-k8s: install k8s-env images-if-changed
	$(BIN)/pytest -q tests/k8s

bench: install
	$(BIN)/kray microbenchmark

k8s-env:
	bash tests/k8s/controlplane/build.sh

# A local Kubernetes for people and scripts (tools/local_k8s.py): control plane, pod runner, operator.
# Pods run as host processes; K8S_PODS=container runs them (and the operator) from this tree's images.
# The last line of k8s-up is `export KUBECONFIG=PATH`: eval "$$(make -s k8s-up | tail -1)".
K8S_PODS ?= process
k8s-up: install k8s-env $(if $(filter container,$(K8S_PODS)),images-if-changed)
	@$(BIN)/python tools/local_k8s.py up --mode=$(K8S_PODS)

k8s-down: install
	@$(BIN)/python tools/local_k8s.py down

images:
	bash images/build.sh

# Seconds when an image of this tree's content hash exists; without a container engine it says so and
# the container-mode tests fail (they never skip).
# The k8s tier proves the images with podman: install it (apt) when it is missing.
container-engine:
	bash tools/ensure_podman.sh

images-if-changed: container-engine
	bash images/build.sh --if-changed --if-engine >/dev/null

e2e-kind:
	bash tests/e2e/kind.sh

lint: install
	$(BIN)/pip install -q ruff==0.17.6 mypy==$(MYPY_VERSION) types-PyYAML
	$(BIN)/ruff check runtime operator tests compat tools
	$(BIN)/mypy runtime/kray operator/kray_operator compat/ray

clean:
	rm -rf $(VENV) .pytest_cache
