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


def test_default_output_dir_is_the_name_trl_gives_a_default_config(tmp_path):
    """TRL names the config it builds for ``args=None`` after the model (the drop-in mirrors it)."""
    source = inspect.getsource(GRPOTrainer.__init__)
    assert "model_name = model if isinstance(model, str) else get_config_model_id(model.config)" in source
    assert 'model_name = model_name.split("/")[-1]' in source and 'args = GRPOConfig(f"{model_name}-GRPO")' in source
    assert trl_internals.default_output_dir("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2.5-0.5B-Instruct-GRPO"
    model, _ = policy(build_policy(tmp_path / "tiny-policy"))
    assert trl_internals.default_output_dir(model) == "tiny-policy-GRPO"
