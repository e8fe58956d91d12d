# grpo-sim developer commands. Every target installs what it needs first, so a fresh clone
# needs nothing but `make demo` / `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU torch wheel must be installed before anything that depends on torch,
# otherwise pip resolves an unpinned torch to a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# DeepSpeed (the `deepspeed` extra) is installed too, so that the ZeRO-3 tests run: it ships as an sdist whose
# setup.py imports torch, hence no build isolation (torch is already there) and no compiled ops (DS_BUILD_OPS=0;
# deepspeed JIT-compiles an op when one is first used). Adds ~35 s to a fresh install.
DEEPSPEED_SPEC ?= deepspeed==0.19.8
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install lint format test bench demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q wheel
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation "$(DEEPSPEED_SPEC)"
	touch $@

# lint = ruff's checks and its formatter's check (one style, line length 120: pyproject [tool.ruff]);
# `make format` rewrites the tree in that style.
lint: install
	$(VENV)/bin/ruff check grpo_sim tests benchmarks scripts
	$(VENV)/bin/ruff format --check grpo_sim tests benchmarks scripts

format: install
	$(VENV)/bin/ruff format grpo_sim tests benchmarks scripts
	$(VENV)/bin/ruff check --fix grpo_sim tests benchmarks scripts

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/grpo-sim demo --output-dir runs/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
