"""The CLI keeps library start-up noise out of every run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
@pytest.mark.skipif(torch.accelerator.is_available(), reason="an accelerator is present: DeepSpeed should detect it")
def test_deepspeed_is_told_it_is_on_the_cpu_instead_of_guessing_aloud():
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    code = (
        "import os; from grpo_sim.cli import _deepspeed_on_cpu_quietly; _deepspeed_on_cpu_quietly(); "
        "import deepspeed; print('DS_ACCELERATOR=' + os.environ['DS_ACCELERATOR'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DS_ACCELERATOR=cpu" in proc.stdout
    assert "Setting accelerator to CPU" not in proc.stdout + proc.stderr


def test_library_warnings_a_user_cannot_act_on_are_silenced_narrowly():
    """transformers' gradient_checkpointing -> activation_checkpointing rename warned on every command (TRL's config
    default and its trainer use the old names); only that message is silenced, other FutureWarnings still show."""
    code = (
        "import warnings, grpo_sim\n"
        "from grpo_sim.trainer import PSGRPOConfig\n"
        "PSGRPOConfig(output_dir='/tmp/grpo-sim-quiet', use_cpu=True, bf16=False, report_to=[])\n"
        "warnings.warn('`something_else` is deprecated and will be removed in v6', FutureWarning)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gradient_checkpointing" not in proc.stderr, proc.stderr
    assert "`something_else` is deprecated" in proc.stderr  # narrow: the rest still shows
