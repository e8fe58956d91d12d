"""The TRL internals grpo_sim.trl_internals relies on, checked on a real trl.GRPOTrainer of the pinned version.

A TRL upgrade that moves any of them fails here, in one place, instead of somewhere inside a training run.
"""

from __future__ import annotations

import inspect
import tomllib
from collections import deque
from pathlib import Path

import pytest
import torch
import trl
from packaging.requirements import Requirement
from trl import GRPOConfig, GRPOTrainer

from grpo_sim import trl_internals

from trainer_helpers import build_policy, common_args, dataset, policy

ROOT = Path(__file__).resolve().parents[1]


def _length_reward(completions, **kwargs):
    return [float(len(str(c))) for c in completions]


def _none_for_odd(completions, **kwargs):
    return [None if k % 2 else 1.0 for k in range(len(completions))]


def test_trl_is_the_pinned_version():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in dependencies if Requirement(d).name == "trl"]
    assert pin.specifier.contains(trl.__version__), (
        f"trl {trl.__version__} is not the pinned {pin}: check every function in grpo_sim/trl_internals.py against "
        "the new TRL, then move the pin"
    )


def test_overridden_hooks_keep_their_signatures():
    for name, parameters in trl_internals.OVERRIDDEN_HOOKS.items():
        hook = getattr(GRPOTrainer, name, None)
        assert hook is not None, f"GRPOTrainer.{name} is gone"
        assert tuple(inspect.signature(hook).parameters)[1:] == parameters, name
    assert "trial" in inspect.signature(GRPOTrainer._save_checkpoint).parameters


def test_weighted_reward_sum_is_trls():
    rewards = torch.tensor([[1.0, 2.0], [float("nan"), 3.0], [float("nan"), float("nan")]])
    combined = trl_internals.weighted_reward_sum(rewards, torch.tensor([0.5, 2.0]))
    assert combined[:2].tolist() == [4.5, 6.0] and torch.isnan(combined[2])
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "(rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)" in source
    assert "rewards[unscorable_mask] = torch.nan" in source


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = build_policy(tmp_path_factory.mktemp("policy") / "p")
    model, tokenizer = policy(path)
    args = GRPOConfig(**common_args(tmp_path_factory.mktemp("run"), reward_weights=[9.0]))
    with trl_internals.reward_weights_for_init(args, [0.5, 2.0]):
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[_length_reward, _none_for_odd],
            args=args,
            train_dataset=dataset(),
            processing_class=tokenizer,
        )
    assert args.reward_weights == [9.0]  # the caller's value is back
    assert trainer.reward_weights.tolist() == [0.5, 2.0]  # read from args in __init__
    assert trl_internals.micro_step(trainer) == 0
    assert isinstance(trainer._logs["advantages"], deque)
    trainer.train()
    return trainer


def test_buffers_hold_what_the_trainer_reads_and_replaces(trained):
    assert trl_internals.micro_step(trained) == trained.args.gradient_accumulation_steps  # one optimizer step
    logs = trained._logs
    rewards = torch.tensor([logs["rewards"]["_length_reward"], logs["rewards"]["_none_for_odd"]], dtype=torch.float32).T
    combined = trl_internals.weighted_reward_sum(rewards, trained.reward_weights)
    # TRL's _metrics were flushed into log_history at the logging step; its reward is our weighted sum's mean
    logged = next(row for row in trained.state.log_history if "reward" in row)
    assert logged["reward"] == pytest.approx(torch.nanmean(combined).item(), rel=1e-5)
    assert len(logs["advantages"]) == len(combined)

    trl_internals.log_metric(trained, "train", "probe", 1.0)
    trl_internals.replace_last_metric(trained, "train", "probe", 2.0)
    assert trl_internals.last_metric(trained, "train", "probe") == 2.0
    assert trl_internals.last_metric(trained, "eval", "never_logged") is None
    before = list(logs["advantages"])
    trl_internals.replace_logged_advantages(trained, [7.0, 8.0])
    assert list(logs["advantages"]) == before[:-2] + [7.0, 8.0]


def test_the_vllm_backend_hooks_the_weight_sync_overrides():
    """grpo_sim.vllm_sync.SyncedVLLMGeneration overrides these VLLMGeneration methods and reads these attributes."""
    import trl.trainer.grpo_trainer as grpo_trainer
    from trl.generation.vllm_generation import VLLMGeneration

    for name, parameters in trl_internals.OVERRIDDEN_VLLM_HOOKS.items():
        assert tuple(inspect.signature(getattr(VLLMGeneration, name)).parameters)[1:] == parameters, name
    init = inspect.getsource(VLLMGeneration.__init__)
    for attribute in trl_internals.VLLM_GENERATION_ATTRIBUTES:
        assert f"self.{attribute} = " in init, attribute
    assert "self._dist = DistributedBackend(accelerator)" in init
    assert init.rstrip().endswith("self._init_vllm()")  # every attribute is set before the engine starts
    sync = inspect.getsource(VLLMGeneration.sync_weights)
    assert "self._llm_weights_sleeping = False" in sync and "is_fsdp" in inspect.getsource(
        VLLMGeneration._iter_named_params
    )
    # GRPOTrainer builds its backend by the module-level name, with keyword arguments only
    source = inspect.getsource(grpo_trainer.GRPOTrainer.__init__)
    assert "self.vllm_generation = VLLMGeneration(\n                model=self.model," in source
    original = grpo_trainer.VLLMGeneration

    def factory(**kwargs):
        return kwargs

    with trl_internals.vllm_generation_class(factory):
        assert grpo_trainer.VLLMGeneration is factory
    assert grpo_trainer.VLLMGeneration is original


def test_distributed_backend_gathers_like_trls():
    from accelerate import Accelerator
    from trl.distributed import DistributedBackend

    generation = type("G", (), {})()
    generation._dist = DistributedBackend(Accelerator(cpu=True))
    backend = trl_internals.distributed_backend(generation)
    assert backend.is_fsdp is False
    parameter = torch.nn.Parameter(torch.ones(2))
    with backend.gather_params([parameter]):
        assert parameter.shape == (2,)
    trl_internals.mark_vllm_weights_awake(generation)
    assert generation._llm_weights_sleeping is False
