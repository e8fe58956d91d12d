# grpo-sim developer commands. Every target installs what it needs first, so a fresh clone
# needs nothing but `make demo` / `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU torch wheel must be installed before anything that depends on torch,
# otherwise pip resolves an unpinned torch to a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test bench demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/grpo-sim demo --output-dir runs/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
