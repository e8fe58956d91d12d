"""The two logged zero-spread metrics agree: ps_grpo/frac_reward_zero_std_paraphrase (set_statistics) and TRL's
frac_reward_zero_std (group_advantages / torch.isclose). They used different tolerances and stds (population std
< 1e-8 in float64 vs Bessel std <= 1e-8 in float32) and disagreed on nearly-flat groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grpo_sim.advantages import ZERO_STD_ATOL, group_advantages, group_codes
from grpo_sim.rewards import set_statistics

SETS = ["s", "s", "s", "s", "t", "t", "t", "t"]
PARAS = [0, 0, 1, 1, 0, 0, 1, 1]


@pytest.mark.parametrize(
    "rewards",
    [
        [0.0, 1.6e-8, 0.5, 0.5, 0.2, 0.9, 1.0, 1.0],  # std 1.1e-8 (Bessel) but 8e-9 (population): disagreed
        [0.3, 0.3, 0.5, 0.5, 0.2, 0.2, 0.7, 0.7],
        [0.0, 1.0, 0.0, 1.0, 0.2, 0.9, 0.1, 0.4],
    ],
)
def test_paraphrase_zero_spread_is_trls(rewards):
    rewards32 = torch.tensor(rewards, dtype=torch.float32)
    _, zero = group_advantages(rewards32, group_codes(SETS, PARAS), "group")
    trl_metric = zero.float().mean().item()  # what TRL logs in paraphrase mode (groups of equal size)
    stats = set_statistics(["a b"] * 8, SETS, PARAS, rewards=rewards32.double().numpy())
    assert stats["frac_zero_std_paraphrase"] == pytest.approx(trl_metric)


def test_tolerance_is_trls_isclose():
    stds = torch.tensor([0.0, ZERO_STD_ATOL, 2 * ZERO_STD_ATOL, float("nan")])
    _, zero = group_advantages(torch.tensor([0.0, 0.0]), np.array([0, 0]), "group")
    assert zero.tolist() == [True, True]
    assert torch.isclose(stds, torch.zeros_like(stds)).tolist() == [True, True, False, False]  # TRL's own test
    rewards = np.array([0.0, 2 * ZERO_STD_ATOL, 1.0, 1.0])
    stats = set_statistics(["x"] * 4, ["s", "s", "t", "t"], [0, 1, 0, 1], rewards=rewards)
    assert stats["frac_zero_std_set"] == 0.5
