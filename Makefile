# mnist-etc: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup system-libs demo demo-core test test-fast schemas stack-up stack-down clean-venv

setup: $(STAMP) system-libs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "mnist-etc installed into $(VENV)"

# perf_analyzer (from the tritonclient wheel) needs libb64.so.0d from Debian's libb64-0d.
system-libs:
	@bash deployments/install_system_libs.sh

# The main job: sweep -> export the champion -> serve on Triton -> benchmark -> privacy audit -> summary.
# Exit status 1 of the pipeline is the audit's verdict FAILED (or INCONCLUSIVE, counted as failed by default) (printed, with its report): the demo ran every
# stage, so make goes on; any other failure stops it.
demo: setup
	$(VENV)/bin/mnist-etc pipeline; status=$$?; \
	if [ $$status -eq 1 ]; then echo "make demo: every stage ran; the privacy audit's verdict is FAILED or INCONCLUSIVE (its report says why)."; \
	elif [ $$status -ne 0 ]; then exit $$status; fi

# The core comparison only: a plain and a DP-SGD model, both attacked.
demo-core: setup
	$(VENV)/bin/mnist-etc demo

# Local stack on 127.0.0.1 (deployments/local_stack.py): Prefect server (SQLite), work pools `mnist-etc` and
# `mnist-etc-trials`, `prefect deploy --all`, worker `local-worker` on `mnist-etc`.
# `make stack-up SCALE=N` adds N trial workers on `mnist-etc-trials` and an MLflow server, and puts Prefect, MLflow
# and the study on PostgreSQL: DATABASE_URL=postgresql://USER@HOST:PORT/NAME on the command line (the environment's
# DATABASE_URL is ignored: the name is too common), default postgresql://postgres@127.0.0.1:5432/mnist_etc.
# See docs/scale-out.md.
# `make stack-up SCALE=N HOSTS=1` (as root) puts the stack on hosts of this machine: the servers in network namespace
# mnetc-orch, each of the N trial workers in a namespace of its own, on the test subnet 10.231.0.0/24, with
# authentication on (deployments/host_stack.py); `make stack-down HOSTS=1` removes every process, namespace and link.
SCALE ?=
HOSTS ?=
SCALE_DATABASE_URL := postgresql://postgres@127.0.0.1:5432/mnist_etc
STACK_DATABASE_URL = $(if $(filter command line,$(origin DATABASE_URL)),$(DATABASE_URL),$(if $(SCALE)$(HOSTS),$(SCALE_DATABASE_URL)))
stack-up: setup
	$(if $(HOSTS),$(PY) deployments/host_stack.py up --workers $(or $(SCALE),2) --database-url '$(STACK_DATABASE_URL)',$(PY) deployments/local_stack.py up $(if $(SCALE),--workers $(SCALE)) $(if $(STACK_DATABASE_URL),--database-url '$(STACK_DATABASE_URL)'))

stack-down:
	$(if $(HOSTS),$(PY) deployments/host_stack.py down,$(PY) deployments/local_stack.py down)

# Two pytest-xdist workers: the tests that share the Prefect stack stay on one, those that share the temporary
# Prefect server on one (tests/conftest.py groups them). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: setup
	$(PY) -m pytest -m "not slow"

# JSON Schemas of the search-space and benchmark-grid files, generated from the pydantic models (editors use them).
schemas: setup
	$(PY) -m mnist_etc.config.schema

clean-venv:
	rm -rf $(VENV)
