"""Helper models next to a DeepSpeed ZeRO-3 policy: grpo_sim.distributed and the similarity models that use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from grpo_sim.distributed import check_not_partitioned, local_device, outside_zero3_init

from trainer_helpers import build_policy, free_port
from zero3_cases import score_cases

ROOT = Path(__file__).resolve().parents[1]


def require_deepspeed() -> None:
    """Skip (saying why) where deepspeed cannot be imported; `make install` installs it."""
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"deepspeed cannot be imported ({exc}): `make install` or the [deepspeed] extra installs it")


class FakeZero3Config:
    """What transformers asks of the object behind its ZeRO-3 switch: ``is_zero3()`` and ``config``."""

    def __init__(self):
        self.config = {"zero_optimization": {"stage": 3}}

    def is_zero3(self) -> bool:
        return True


@pytest.fixture
def active_zero3_config():
    from transformers.integrations import deepspeed as hf_deepspeed

    config = FakeZero3Config()
    hf_deepspeed.set_hf_deepspeed_config(config)
    try:
        yield config
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()


def test_outside_zero3_init_hides_transformers_zero3_config_and_restores_the_same_object(active_zero3_config):
    # pins transformers: from_pretrained partitions when is_deepspeed_zero3_enabled(), which reads the object
    # given to set_hf_deepspeed_config (a weak reference); grpo_sim.distributed relies on exactly that
    from transformers.integrations import deepspeed_config, is_deepspeed_zero3_enabled

    assert is_deepspeed_zero3_enabled() and deepspeed_config() is active_zero3_config.config
    with outside_zero3_init():
        assert not is_deepspeed_zero3_enabled() and deepspeed_config() is None
    assert is_deepspeed_zero3_enabled() and deepspeed_config() is active_zero3_config.config
    with pytest.raises(KeyError), outside_zero3_init():
        raise KeyError("a failed load")
    assert deepspeed_config() is active_zero3_config.config


def test_outside_zero3_init_without_deepspeed_config_changes_nothing():
    from transformers.integrations import is_deepspeed_zero3_enabled

    assert not is_deepspeed_zero3_enabled()
    with outside_zero3_init():
        assert not is_deepspeed_zero3_enabled()
    assert not is_deepspeed_zero3_enabled()


def test_accelerates_own_zero3_switch_does_not_stop_zero3_init_but_outside_zero3_init_does():
    """The state accelerate leaves during a ZeRO-3 run (plugin selected), and why we do not use its context manager."""
    require_deepspeed()  # accelerate's DeepSpeedPlugin checks for it
    from accelerate.utils import DeepSpeedPlugin
    from transformers.integrations import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    plugin = DeepSpeedPlugin(zero_stage=3, zero3_init_flag=True)
    plugin.select(_from_accelerator_state=True)  # what AcceleratorState does
    try:
        assert is_deepspeed_zero3_enabled()
        with plugin.zero3_init_context_manager(enable=False):
            accelerate_switch_works = not is_deepspeed_zero3_enabled()
        with outside_zero3_init():
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled()
    finally:
        unset_hf_deepspeed_config()
    # pins why outside_zero3_init exists: once accelerate's public switch works, use it there instead
    assert not accelerate_switch_works, "accelerate's zero3_init_context_manager(enable=False) now stops ZeRO-3 init"


def test_local_device_follows_local_rank_like_accelerate(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == "cuda:1"
    monkeypatch.setenv("LOCAL_RANK", "3")  # accelerate: local_process_index % device_count
    assert local_device() == "cuda:1"
    monkeypatch.delenv("LOCAL_RANK")
    assert local_device() == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == "cpu"


def test_check_not_partitioned_names_the_empty_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    check_not_partitioned(model, "whole model")
    model[0].weight = torch.nn.Parameter(torch.empty(0))  # what a ZeRO-3 partitioned parameter looks like
    with pytest.raises(RuntimeError, match=r"similarity model 'x'.*'0\.weight'.*outside_zero3_init"):
        check_not_partitioned(model, "similarity model 'x'")


@pytest.mark.slow
def test_similarity_models_score_the_same_under_zero3_init_on_every_rank_and_on_rank0_only(tmp_path):
    """2 gloo ranks with a ZeRO-3 HfDeepSpeedConfig active: the old code got "'weight' must be 2-D" (every rank)
    or blocked in a collective (rank 0 only; the worker's 30 s collective timeout turns that into an error)."""
    require_deepspeed()
    policy = build_policy(tmp_path / "policy")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "tests" / "zero3_worker.py"),
        policy,
        str(out),
        "every_rank,rank0_only",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    expected = score_cases()  # this process: no DeepSpeed
    for rank, record in enumerate(ranks):
        assert record["policy_partitioned"], "the policy should be loaded ZeRO-3 partitioned (the premise)"
        assert record["zero3_still_enabled"], "the ZeRO-3 config must be back after loading the similarity models"
        phases = ["every_rank", "rank0_only"] if rank == 0 else ["every_rank"]
        assert sorted(k for k in record if k in ("every_rank", "rank0_only")) == sorted(phases)
        for phase in phases:
            for name, values in expected.items():
                np.testing.assert_allclose(record[phase][name], values, atol=1e-6, err_msg=f"rank {rank} {phase}")


@pytest.mark.slow
def test_after_a_zero3_run_final_evaluation_and_adapter_merge_load_whole_models(tmp_path):
    """After training under ZeRO-3 the run's HfDeepSpeedConfig is still alive while its process group is gone:
    rank 0's evaluation of final/ and its LoRA merge must load whole models (the old code partitioned them and
    failed), and give the numbers of a plain one-process evaluation / merge."""
    require_deepspeed()
    from peft import LoraConfig, PeftModel, get_peft_model

    from grpo_sim.data.schema import write_psets
    from grpo_sim.eval import evaluate_model
    from grpo_sim.models import load_policy

    from trainer_helpers import demo_rows

    policy = build_policy(tmp_path / "policy")
    model, _ = load_policy(policy)
    torch.manual_seed(0)
    adapted = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    for name, param in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)  # a non-trivial adapter (lora_B starts at zero)
    adapted.save_pretrained(tmp_path / "adapter")
    eval_path = write_psets(tmp_path / "eval.jsonl", demo_rows()[1])
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "tests" / "zero3_final_eval_worker.py"),
        policy,
        str(tmp_path / "adapter"),
        str(eval_path),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "rank0.json").read_text())
    assert record["zero3_still_enabled"]
    expected = evaluate_model(
        policy,
        demo_rows()[1],
        levels=("e2e",),
        metrics=("exact_match", "bleu2"),
        template="closed_book",
        max_new_tokens=4,
        progress=False,
        plots=False,
    )
    assert record["summary"] and all(record["summary"][k] == expected[k] for k in record["summary"])
    merged, _ = load_policy(out / "merged")
    reference = PeftModel.from_pretrained(load_policy(policy)[0], str(tmp_path / "adapter")).merge_and_unload()
    reference_state = reference.state_dict()
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(value, reference_state[name], rtol=0, atol=0, msg=name)
