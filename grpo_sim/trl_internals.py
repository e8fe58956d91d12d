"""Every place grpo-sim reaches into ``trl.GRPOTrainer`` (and transformers' ``Trainer``) below their public API.

TRL offers no public hook for what the PS-GRPO trainer needs: the name TRL gives a default config, the generation
counter that seeds the relaxed reward, the metric/log buffers TRL fills in ``_generate_and_score_completions``
(set-level advantages replace what TRL logged there), the reward weights TRL reads from ``args`` in ``__init__``,
and TRL's weighted reward sum. They are reached here and nowhere else; tests/test_trl_internals.py pins the TRL
version (pyproject) and checks each one on a real GRPOTrainer, so a TRL upgrade fails in that one test rather than
somewhere in a training run.

The trainer also overrides TRL's private hooks ``_get_train_sampler``, ``_get_eval_sampler``, ``_calculate_rewards``
and ``_generate_and_score_completions`` (the extension points DESIGN.md names); the same test pins their signatures.
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


def save_checkpoint(trainer: Any) -> None:
    """transformers' own periodic save (``Trainer._save_checkpoint``): model, optimizer, scheduler, RNG, state."""
    trainer._save_checkpoint(trainer.model_wrapped, trial=None)
