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
demo: setup
	$(VENV)/bin/mnist-etc pipeline

# The core comparison only: a plain and a DP-SGD model, both attacked.
demo-core: setup
	$(VENV)/bin/mnist-etc demo

# Local Prefect server + process work pool + `prefect deploy --all` + worker, all on 127.0.0.1.
stack-up: setup
	$(PY) deployments/local_stack.py up

stack-down:
	$(PY) deployments/local_stack.py down

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
