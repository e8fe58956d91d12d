"""Set layout checks, the set-preserving sampler and advantage normalisation (pure parts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trl.trainer.utils import RepeatSampler, nanstd

from grpo_sim.advantages import group_advantages, group_codes
from grpo_sim.sampler import ParaphraseSetSampler, SetLayoutError, build_set_layout, check_batch_fits_sets


def layout_of(num_sets, n):
    set_ids = [f"s{k}" for k in range(num_sets) for _ in range(n)]
    paras = [p for _ in range(num_sets) for p in range(n)]
    return build_set_layout(set_ids, paras)


def test_layout_groups_rows_in_paraphrase_order():
    layout = build_set_layout(["a", "b", "a", "b"], [1, 0, 0, 1])
    assert layout.set_rows == ((2, 0), (1, 3))
    assert layout.paraphrases_per_set == 2


@pytest.mark.parametrize(
    "set_ids, paras, message",
    [
        (["a", "a", "b"], [0, 1, 0], "single paraphrase"),
        (["a", "a"], [0, 0], "duplicate paraphrase_id 0"),
        (["a", "a", "b", "b", "b"], [0, 1, 0, 1, 2], "different numbers of paraphrases"),
        (["a", None], [0, 1], "row 1 has no set_id"),
        ([], [], "empty"),
    ],
)
def test_layout_errors(set_ids, paras, message):
    with pytest.raises(SetLayoutError, match=message):
        build_set_layout(set_ids, paras)


def test_batch_check_explains_with_numbers():
    assert check_batch_fits_sets(6, 4, 48, 24, 1, 2) == 2
    with pytest.raises(SetLayoutError) as err:
        check_batch_fits_sets(6, 4, 32, 8, 2, 2)
    text = str(err.value)
    assert "32" in text and "24" in text and "Nearest valid sizes: 24 or 48" in text
    assert "per_device_batch_size to a multiple of 6" in text
    assert "steps_per_generation to a multiple of 3" in text


def test_sampler_keeps_sets_whole_and_contiguous():
    n, g, sets_per_batch, repeat = 3, 2, 2, 2
    layout = layout_of(7, n)
    sampler = ParaphraseSetSampler(
        layout, mini_repeat_count=g, sets_per_batch=sets_per_batch, repeat_count=repeat, seed=42
    )
    rows = list(sampler)
    assert len(rows) == len(sampler) == 3 * sets_per_batch * n * g * repeat  # last set dropped (7 // 2 = 3)
    batch = sets_per_batch * n * g
    blocks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    for k in range(0, len(blocks), repeat):
        assert blocks[k] == blocks[k + 1]  # repeat_count reuses the same generation batch
    for block in blocks:
        for s in range(sets_per_batch):
            chunk = block[s * n * g : (s + 1) * n * g]
            set_index = chunk[0] // n
            assert chunk == [set_index * n + p for p in range(n) for _ in range(g)]
    assert list(ParaphraseSetSampler(layout, g, sets_per_batch, repeat, seed=42)) == rows
    assert list(ParaphraseSetSampler(layout, g, sets_per_batch, repeat, seed=43)) != rows


def test_sampler_matches_repeat_sampler_when_sets_are_rows():
    # With one row per "set" the sampler degenerates to TRL's RepeatSampler: same generator use.
    layout = build_set_layout(list(range(10)) * 2, [0] * 10 + [1] * 10)
    ours = ParaphraseSetSampler(layout, mini_repeat_count=2, sets_per_batch=3, repeat_count=2, seed=7)
    trl = RepeatSampler(list(range(10)), mini_repeat_count=2, batch_size=3, repeat_count=2, seed=7)
    our_sets = [layout.set_keys[row % 10] for row in list(ours)[::4]]
    assert our_sets == list(trl)[::2]


def test_group_advantages_match_trl_per_group_normalisation():
    torch.manual_seed(0)
    rewards = torch.rand(24)
    rewards[5] = float("nan")
    g = 4
    groups = np.repeat(np.arange(6), g)
    adv, zero = group_advantages(rewards, groups, "group")
    grouped = rewards.view(-1, g)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(g)
    std = nanstd(grouped, dim=1).repeat_interleave(g)
    expected = torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    torch.testing.assert_close(adv, expected, rtol=0, atol=0)
    assert not zero.any()


def test_set_mode_gives_signal_when_paraphrase_groups_have_no_spread():
    # every paraphrase's rollouts agree (zero spread) but the paraphrases disagree
    rewards = torch.tensor([0.2, 0.2, 0.8, 0.8, 0.5, 0.5])
    sets = ["s"] * 6
    paras = [0, 0, 1, 1, 2, 2]
    adv_p, zero_p = group_advantages(rewards, group_codes(sets, paras), "group")
    adv_s, zero_s = group_advantages(rewards, group_codes(sets), "group")
    assert torch.all(adv_p == 0) and zero_p.all()
    std = torch.tensor([0.2, 0.2, 0.8, 0.8, 0.5, 0.5]).std()
    torch.testing.assert_close(adv_s, (rewards - 0.5) / (std + 1e-4))
    assert not zero_s.any()
    adv_none, _ = group_advantages(rewards, group_codes(sets), "none")
    torch.testing.assert_close(adv_none, rewards - 0.5)
    adv_batch, _ = group_advantages(rewards, np.zeros(6, dtype=int), "batch")
    torch.testing.assert_close(adv_batch, adv_s)


def test_group_codes():
    np.testing.assert_array_equal(group_codes(["a", "a", "b", "a"], [0, 1, 0, 0]), [0, 1, 2, 0])
