# mnist-etc: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: setup system-libs demo test test-fast clean-venv

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

demo: setup
	$(VENV)/bin/mnist-etc demo

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
