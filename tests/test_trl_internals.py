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


def test_default_output_dir_is_the_name_trl_gives_a_default_config(tmp_path):
    """TRL names the config it builds for ``args=None`` after the model (the drop-in mirrors it)."""
    source = inspect.getsource(GRPOTrainer.__init__)
    assert "model_name = model if isinstance(model, str) else get_config_model_id(model.config)" in source
    assert 'model_name = model_name.split("/")[-1]' in source and 'args = GRPOConfig(f"{model_name}-GRPO")' in source
    assert trl_internals.default_output_dir("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2.5-0.5B-Instruct-GRPO"
    model, _ = policy(build_policy(tmp_path / "tiny-policy"))
    assert trl_internals.default_output_dir(model) == "tiny-policy-GRPO"


def test_generation_state_is_what_trl_reuses_inside_a_generation_window(tmp_path):
    """TRL 1.16 generates once every steps_per_generation x num_iterations micro-steps and trains on the slices
    of ``_buffered_inputs`` picked by ``_step``; transformers keeps the loss since the last log in ``_tr_loss``."""
    from transformers import Trainer

    source = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "if self._step % generate_every == 0 or self._buffered_inputs is None:" in source
    assert "inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]" in source
    assert "self._step += 1" in inspect.getsource(GRPOTrainer.training_step)
    loop = inspect.getsource(Trainer._inner_training_loop)
    # reset when the loop starts, after the checkpoint is loaded: restore_generation_state runs in the first step
    assert loop.index("self._tr_loss = torch.tensor(0.0") < loop.index("on_train_begin")
    assert "self._globalstep_last_logged = self.state.global_step" in loop
    assert "tr_loss_scalar / (self.state.global_step - self._globalstep_last_logged)" in inspect.getsource(
        Trainer._maybe_log_save_evaluate
    )

    path = build_policy(tmp_path / "policy")
    model, tokenizer = policy(path)
    settings = dict(gradient_accumulation_steps=2, num_iterations=2, max_steps=1, logging_steps=5)
    args = GRPOConfig(**common_args(tmp_path / "run", save_strategy="steps", save_steps=1, **settings))
    trainer = GRPOTrainer(
        model=model, reward_funcs=_length_reward, args=args, train_dataset=dataset(), processing_class=tokenizer
    )
    trainer.train()  # one optimizer step = half a generation window (4 micro-steps)
    assert trl_internals.checkpoint_folder(trainer) == str(tmp_path / "run" / "checkpoint-1")
    assert (tmp_path / "run" / "checkpoint-1" / "trainer_state.json").exists()
    state = trl_internals.generation_state(trainer)
    # logging_steps 5: nothing was logged yet, the step's loss waits in _tr_loss for the next log
    assert state["micro_step"] == 2 and state["last_logged_step"] == 0
    assert torch.equal(state["loss_since_log"], trainer._tr_loss) and state["loss_since_log"] is not trainer._tr_loss
    assert len(state["buffered_inputs"]) == 2  # steps_per_generation (= accumulation) slices
    assert set(state["buffered_inputs"][0]) >= {"prompt_ids", "completion_ids", "advantages", "old_per_token_logps"}
    assert state["buffered_inputs"][0] is trainer._buffered_inputs[0]

    fresh = GRPOTrainer(
        model=policy(path)[0],
        reward_funcs=_length_reward,
        args=args,
        train_dataset=dataset(),
        processing_class=tokenizer,
    )
    fresh._tr_loss = torch.tensor(0.0)  # what transformers' loop sets up before the first step
    saved = dict(state, train_metrics={"reward": [0.5, 1.5]}, loss_since_log=torch.tensor(0.25), last_logged_step=0)
    trl_internals.restore_generation_state(fresh, saved)
    assert fresh._step == 2 and fresh._buffered_inputs is state["buffered_inputs"]
    assert dict(fresh._metrics["train"]) == {"reward": [0.5, 1.5]} and fresh._tr_loss.item() == 0.25
    assert fresh._globalstep_last_logged == 0


def test_repeat_sampler_positioned_at_an_epoch_shuffles_as_that_pass():
    """TRL's RepeatSampler draws one permutation per pass from a generator seeded once; positioned at pass e, a
    fresh sampler (a resumed run's) yields what pass e of a continuous run yields."""
    from trl.trainer.utils import RepeatSampler

    def sampler():
        return RepeatSampler(list(range(10)), mini_repeat_count=2, batch_size=3, repeat_count=2, shuffle=True, seed=7)

    continuous = sampler()
    passes = [list(continuous) for _ in range(3)]
    assert passes[0] != passes[2]
    for epoch in (2, 0, 1):
        fresh = sampler()
        trl_internals.position_repeat_sampler(fresh, epoch)
        assert list(fresh) == passes[epoch]
