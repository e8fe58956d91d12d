"""Advantage normalisation over arbitrary groups (pure functions, float32 like TRL).

* ``paraphrase`` groups = one paraphrase's g rollouts (the paper; identical to TRL's
  ``scale_rewards="group"`` because one TRL group is one paraphrase);
* ``set`` groups = all n*g completions of a paraphrase set: still gives signal when every
  paraphrase's own rollouts agree with each other but the paraphrases disagree;
* ``batch`` = the whole generation batch.

The arithmetic mirrors ``trl.GRPOTrainer``: NaN-aware mean, Bessel-corrected NaN-aware std,
``(r - mean) / (std + 1e-4)``, NaN advantages (unscorable completions) set to 0.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np
import torch

EPS = 1e-4  # TRL's denominator guard
#: a group whose reward std is at most this has "zero spread" (no learning signal): TRL's own test,
#: ``torch.isclose(std, 0)``; every zero-spread metric grpo-sim logs uses it (see :func:`zero_spread`)
ZERO_STD_ATOL = 1e-8


def group_codes(*keys: Sequence[Hashable]) -> np.ndarray:
    """Integer group code for each row from one or more id columns (rows with equal keys share a code)."""
    table: dict[tuple, int] = {}
    return np.asarray([table.setdefault(key, len(table)) for key in zip(*keys)], dtype=np.int64)


def _padded(values: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_groups, max_size) matrix of each group's values, NaN-padded, plus each row's group index.

    For contiguous equal-sized groups this is exactly ``values.view(-1, g)``, so the reductions below
    are bit-identical to TRL's.
    """
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=order.device) - starts[inverse[order]]
    padded = torch.full((len(counts), int(counts.max())), float("nan"), dtype=values.dtype, device=values.device)
    padded[inverse, position] = values
    return padded, inverse


def group_advantages(
    rewards: torch.Tensor, groups: np.ndarray | Sequence[int], scale: str = "group"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre rewards by their group mean and scale by the group (or batch) std.

    Args:
        rewards: (N,) combined rewards, NaN for unscorable completions.
        groups: (N,) integer group code per completion (see :func:`group_codes`).
        scale: ``"group"`` divide by the group's std, ``"batch"`` by the whole batch's std,
            ``"none"`` only centre.

    Returns:
        ``(advantages, zero_std)``: advantages with NaN replaced by 0, and a bool mask of rows whose
        scaling std is (close to) zero, for TRL's ``frac_reward_zero_std`` metric.
    """
    from trl.trainer.utils import nanstd  # TRL's own std, so that the numbers match its trainer's bit for bit

    if scale not in {"group", "batch", "none"}:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    groups = torch.as_tensor(np.asarray(groups, dtype=np.int64), device=rewards.device)
    if groups.shape != rewards.shape:
        raise ValueError(f"groups has shape {tuple(groups.shape)}, rewards {tuple(rewards.shape)}")
    if rewards.numel() == 0:
        return rewards.clone(), torch.zeros_like(rewards, dtype=torch.bool)
    padded, inverse = _padded(rewards, groups)
    means = torch.nanmean(padded, dim=1)[inverse]
    if scale == "batch":
        stds = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    elif padded.shape[1] > 1:  # "group", and "none" (whose group std only feeds the zero-spread metric)
        stds = nanstd(padded, dim=1)[inverse]
    else:
        stds = torch.zeros_like(rewards)
    advantages = rewards - means
    if scale != "none":
        advantages = advantages / (stds + EPS)
    return torch.nan_to_num(advantages, nan=0.0), zero_spread(stds)


def zero_spread(stds: torch.Tensor) -> torch.Tensor:
    """Which stds count as zero: ``|std| <= ZERO_STD_ATOL`` (TRL's ``torch.isclose(std, 0)``); NaN never does."""
    return torch.isclose(stds, torch.zeros_like(stds), rtol=0.0, atol=ZERO_STD_ATOL)


def frac_zero_spread_groups(rewards: np.ndarray | torch.Tensor, groups: np.ndarray | Sequence[int]) -> float:
    """Fraction of groups whose rewards have zero spread, measured exactly as :func:`group_advantages` measures
    it for TRL's ``frac_reward_zero_std`` (float32, NaN-aware Bessel-corrected std, one member: zero)."""
    codes = np.asarray(groups, dtype=np.int64)
    if codes.size == 0:
        return float("nan")
    _, zero = group_advantages(torch.as_tensor(np.asarray(rewards, dtype=np.float32)), codes, scale="group")
    _, first = np.unique(codes, return_index=True)
    return float(zero.numpy()[first].mean())
