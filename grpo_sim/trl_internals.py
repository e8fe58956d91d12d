"""Every place grpo-sim reaches into ``trl.GRPOTrainer`` (and transformers' ``Trainer``) below their public API.

TRL offers no public hook for what the PS-GRPO trainer needs: the name TRL gives a default config, the generation
counter that seeds the relaxed reward, the metric/log buffers TRL fills in ``_generate_and_score_completions``
(set-level advantages replace what TRL logged there), the reward weights TRL reads from ``args`` in ``__init__``,
TRL's weighted reward sum, the generation batch TRL buffers across optimizer steps (with the running loss and
metrics since the last log), which every checkpoint saves so that a resume is exact from inside a generation window,
and the class TRL builds its vLLM generation from (the weight sync). They are reached here and nowhere else;
tests/test_trl_internals.py pins the TRL version (pyproject) and checks each one on a real GRPOTrainer, so a TRL
upgrade fails in that one test rather than somewhere in a training run.

The trainer also overrides TRL's private hooks ``_get_train_sampler``, ``_get_eval_sampler``, ``_calculate_rewards``
and ``_generate_and_score_completions`` (the extension points DESIGN.md names), and ``training_step`` and
``_save_checkpoint`` (the generation state in checkpoints); the same test pins their signatures.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

#: the hooks PSGRPOTrainer overrides, with the parameters it relies on (checked against TRL by the test)
OVERRIDDEN_HOOKS = {
    "_get_train_sampler": ("dataset",),
    "_get_eval_sampler": ("eval_dataset",),
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("inputs",),
    "training_step": ("model", "inputs", "num_items_in_batch"),
    "_save_checkpoint": ("model", "trial"),
}


def default_output_dir(model: Any) -> str:
    """The output directory ``trl.GRPOTrainer`` gives the default config it builds when ``args`` is None:
    ``<model name>-GRPO``, the name being the last part of the model id or path (TRL's ``get_config_model_id`` of a
    model object's config)."""
    from trl.trainer.utils import get_config_model_id

    name = model if isinstance(model, str) else get_config_model_id(model.config)
    return f"{name.split('/')[-1]}-GRPO"


def micro_step(trainer: Any) -> int:
    """TRL's count of micro-batches seen by ``training_step`` (``self._step``); it picks the buffered generation."""
    return int(trainer._step)


def log_metric(trainer: Any, mode: str, key: str, value: float) -> None:
    """Append ``value`` to TRL's metric buffer; TRL averages each key over the logging interval."""
    trainer._metrics[mode][key].append(value)


def last_metric(trainer: Any, mode: str, key: str) -> float | None:
    """The latest value TRL buffered for ``key`` (e.g. ``entropy``), or None before the first."""
    values = trainer._metrics[mode].get(key) or []
    return float(values[-1]) if values else None


def replace_last_metric(trainer: Any, mode: str, key: str, value: float) -> None:
    """Overwrite the value TRL just appended for ``key`` (in this generation batch)."""
    trainer._metrics[mode][key][-1] = value


def replace_logged_advantages(trainer: Any, advantages: Sequence[float]) -> None:
    """Swap the advantages TRL just logged (the last ``len(advantages)``) for ``advantages`` (completions table)."""
    logged = trainer._logs["advantages"]
    for _ in range(min(len(advantages), len(logged))):
        logged.pop()
    logged.extend(advantages)


@contextmanager
def reward_weights_for_init(args: Any, weights: Sequence[float]) -> Iterator[None]:
    """``args.reward_weights = weights`` while ``GRPOTrainer.__init__`` builds ``trainer.reward_weights`` from it.

    grpo-sim's ``reward_weights`` weighs only the extra reward functions a user passes; TRL's weighs every reward
    function, including the reward terms. The user's value is restored afterwards (also on error).
    """
    user_weights = args.reward_weights
    args.reward_weights = list(weights)
    try:
        yield
    finally:
        args.reward_weights = user_weights


def weighted_reward_sum(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL's combined reward: the weighted sum over reward functions, NaN-skipping (a function that returned None
    for a completion is left out); NaN where every function returned None (an unscorable completion)."""
    combined = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    combined[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return combined


def generation_state(trainer: Any) -> dict[str, Any]:
    """What a resumed run needs to continue exactly from inside a generation window, and no checkpoint saves.

    TRL generates a batch once every ``steps_per_generation x num_iterations`` micro-steps and reuses its slices
    (``_buffered_inputs``, picked by the micro-step count ``_step``) in between; a resumed trainer starts with
    neither, so it would generate again from moved weights. Also kept: TRL's metric buffer and transformers'
    running loss since the last log (``_tr_loss``, ``_globalstep_last_logged``), which the next logged row
    averages when ``logging_steps`` > 1. This process's values only (each process saves its own).
    """
    return {
        "micro_step": int(trainer._step),
        "buffered_inputs": trainer._buffered_inputs,
        "train_metrics": {key: list(values) for key, values in trainer._metrics["train"].items()},
        "loss_since_log": trainer._tr_loss.detach().clone(),
        "last_logged_step": int(trainer._globalstep_last_logged),
    }


def restore_generation_state(trainer: Any, state: dict[str, Any]) -> None:
    """Put :func:`generation_state` back. Call it in the first ``training_step`` of the resumed run: transformers
    resets the running loss when the training loop starts, after the checkpoint has been loaded."""
    trainer._step = int(state["micro_step"])
    trainer._buffered_inputs = state["buffered_inputs"]
    trainer._metrics["train"].clear()
    trainer._metrics["train"].update({key: list(values) for key, values in state["train_metrics"].items()})
    trainer._tr_loss.copy_(state["loss_since_log"].to(trainer._tr_loss.device))
    trainer._globalstep_last_logged = int(state["last_logged_step"])


def position_repeat_sampler(sampler: Any, epoch: int) -> None:
    """TRL's ``RepeatSampler`` (ordinary prompts) shuffles with its own generator, seeded once, one permutation of
    its rows per pass: put that generator where pass ``epoch`` begins (:func:`grpo_sim.sampler.position_shuffle`),
    so that a run resumed in a later epoch trains on that epoch's order. No-op without shuffle or seed."""
    from .sampler import position_shuffle

    if sampler.shuffle and sampler.seed is not None:
        position_shuffle(sampler.generator, sampler.seed, sampler.num_samples, epoch)


def checkpoint_folder(trainer: Any, trial: Any = None) -> str:
    """The folder transformers' ``_save_checkpoint`` writes: ``<run output dir>/checkpoint-<global_step>``."""
    import os

    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    return os.path.join(trainer._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")


def save_checkpoint(trainer: Any) -> None:
    """transformers' own periodic save (``Trainer._save_checkpoint``): model, optimizer, scheduler, RNG, state."""
    trainer._save_checkpoint(trainer.model_wrapped, trial=None)


# ----------------------------------------------------------------------------- the vLLM weight sync
#: the methods of TRL's VLLMGeneration that grpo_sim.vllm_sync.SyncedVLLMGeneration overrides (no parameters beyond
#: self), and the attributes TRL sets in its __init__ that it reads
OVERRIDDEN_VLLM_HOOKS = {"_init_vllm": (), "_iter_named_params": (), "sync_weights": ()}
VLLM_GENERATION_ATTRIBUTES = (
    "model",
    "accelerator",
    "mode",
    "server_base_url",
    "server_host",
    "server_port",
    "group_port",
    "server_timeout",
    "enable_sleep_mode",
)


@contextmanager
def vllm_generation_class(factory: Any) -> Iterator[None]:
    """``GRPOTrainer.__init__`` builds its vLLM backend with ``factory(**kwargs)`` instead of TRL's ``VLLMGeneration``.

    TRL constructs ``VLLMGeneration`` by that module-level name in ``trl.trainer.grpo_trainer``; it is swapped while
    the block runs (a trainer's ``__init__``) and put back afterwards, also on error.
    """
    from trl.trainer import grpo_trainer

    original = grpo_trainer.VLLMGeneration
    grpo_trainer.VLLMGeneration = factory
    try:
        yield
    finally:
        grpo_trainer.VLLMGeneration = original


def distributed_backend(generation: Any) -> Any:
    """TRL's ``DistributedBackend`` of a VLLMGeneration (``is_fsdp``, ``gather_params``: ZeRO-3 gathers)."""
    return generation._dist


def mark_vllm_weights_awake(generation: Any) -> None:
    """Tell TRL's VLLMGeneration that the colocated engine's weights were pushed after a sleep (level 2)."""
    generation._llm_weights_sleeping = False
