"""A run resumed in a later epoch shuffles its paraphrase sets as the uninterrupted run did in that epoch."""

from __future__ import annotations

from grpo_sim.sampler import ParaphraseSetSampler, build_set_layout


def test_set_sampler_positioned_at_an_epoch_yields_that_pass():
    set_ids = [f"s{k // 2}" for k in range(12)]  # 6 sets of 2 paraphrases
    layout = build_set_layout(set_ids, [k % 2 for k in range(12)], "rows")

    def sampler():
        return ParaphraseSetSampler(layout, mini_repeat_count=2, sets_per_batch=2, repeat_count=2, seed=3)

    continuous = sampler()
    passes = []
    for epoch in range(3):
        continuous.set_epoch(epoch)  # transformers calls it before every epoch of an uninterrupted run too
        passes.append(list(continuous))
    unpositioned = sampler()
    assert [list(unpositioned) for _ in range(3)] == passes  # the order uninterrupted runs always had
    assert len({tuple(p) for p in passes}) == 3
    for epoch in (2, 1, 0):
        resumed = sampler()  # a resumed run builds a new sampler
        resumed.set_epoch(epoch)
        assert list(resumed) == passes[epoch]
    ParaphraseSetSampler(layout, mini_repeat_count=1, shuffle=False).set_epoch(4)  # nothing to position
