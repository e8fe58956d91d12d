"""Group similarity rewards: hand-computed examples, the relaxed estimator, mixes and errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from grpo_sim.rewards import (
    RelaxedSampling,
    accuracy_rewards,
    apply_collapse_penalty,
    combine_rewards,
    group_similarity_rewards,
    majority_agreement_rewards,
    merge_shards,
    reference_rewards,
    set_sampling_seed,
    set_shards,
    set_statistics,
    short_completion_mask,
)


def numeric_sim(a, b):
    """Toy similarity on numeric strings: 1 - |x - y| / 10."""
    x = np.array([float(t) for t in a])[:, None]
    y = np.array([float(t) for t in b])[None, :]
    return 1.0 - np.abs(x - y) / 10.0


# n = 3 paraphrases, g = 2 rollouts each, values chosen so every reward is easy to check by hand.
COMPLETIONS = ["0", "2", "4", "4", "10", "6"]
SETS = ["s"] * 6
PARAS = [0, 0, 1, 1, 2, 2]


def test_exact_reward_hand_computed():
    r = group_similarity_rewards(COMPLETIONS, SETS, PARAS, similarity=numeric_sim)
    # o_00 = 0 vs others {4, 4, 10, 6}: sims 0.6, 0.6, 0.0, 0.4 -> 1.6 / 4 = 0.4
    # o_01 = 2 vs {4, 4, 10, 6}: 0.8, 0.8, 0.2, 0.6 -> 2.4 / 4 = 0.6
    # o_10 = 4 vs {0, 2, 10, 6}: 0.6, 0.8, 0.4, 0.8 -> 2.6 / 4 = 0.65 (o_11 identical)
    # o_20 = 10 vs {0, 2, 4, 4}: 0.0, 0.2, 0.4, 0.4 -> 1.0 / 4 = 0.25
    # o_21 = 6 vs {0, 2, 4, 4}: 0.4, 0.6, 0.8, 0.8 -> 2.6 / 4 = 0.65
    np.testing.assert_allclose(r, [0.4, 0.6, 0.65, 0.65, 0.25, 0.65], atol=1e-12)


def test_exact_reward_matches_formula_and_ignores_order():
    rng = np.random.default_rng(3)
    n, g = 4, 3
    values = rng.integers(0, 10, size=n * g).astype(str).tolist()
    paras = np.repeat(np.arange(n), g).tolist()
    expected = []
    for i in range(n * g):
        others = [numeric_sim([values[i]], [values[j]])[0, 0] for j in range(n * g) if paras[j] != paras[i]]
        expected.append(sum(others) / ((n - 1) * g))
    perm = rng.permutation(n * g)
    shuffled = group_similarity_rewards(
        [values[k] for k in perm], ["a"] * (n * g), [paras[k] for k in perm], similarity=numeric_sim
    )
    np.testing.assert_allclose(shuffled, np.asarray(expected)[perm], atol=1e-12)


def test_sets_are_independent_and_single_paraphrase_sets_are_nan():
    completions = COMPLETIONS + ["1", "9", "5"]
    sets = SETS + ["t", "t", "lonely"]
    paras = PARAS + [0, 1, 0]
    r = group_similarity_rewards(completions, sets, paras, similarity=numeric_sim)
    np.testing.assert_allclose(r[:6], [0.4, 0.6, 0.65, 0.65, 0.25, 0.65], atol=1e-12)
    np.testing.assert_allclose(r[6:8], [0.2, 0.2], atol=1e-12)
    assert np.isnan(r[8])


def test_unequal_rollout_counts_use_pooled_mean():
    r = group_similarity_rewards(["0", "2", "4", "6"], ["s"] * 4, [0, 0, 0, 1], similarity=numeric_sim)
    # paraphrase 1 ("6") vs {0, 2, 4}: 0.4, 0.6, 0.8 -> 0.6
    np.testing.assert_allclose(r, [0.4, 0.6, 0.8, 0.6], atol=1e-12)


def test_registry_similarity_and_chat_completions():
    chat = [[{"role": "assistant", "content": c}] for c in ["paris", "paris", "the paris", "lyon"]]
    r = group_similarity_rewards(chat, ["s"] * 4, [0, 0, 1, 1], similarity="exact_match")
    np.testing.assert_allclose(r, [0.5, 0.5, 1.0, 0.0])


def test_relaxed_is_deterministic_and_only_scores_sampled_pairs():
    calls = []

    def counting_sim(a, b):
        calls.append((len(a), len(b)))
        return numeric_sim(a, b)

    n, g = 6, 4
    comps = [str(v) for v in np.random.default_rng(0).integers(0, 10, n * g)]
    paras = np.repeat(np.arange(n), g).tolist()
    r1 = group_similarity_rewards(
        comps, ["s"] * (n * g), paras, counting_sim, approx={"kappa": 3, "samples": 1}, seed=5
    )
    scored_pairs = sum(a * b for a, b in calls)
    r2 = group_similarity_rewards(comps, ["s"] * (n * g), paras, numeric_sim, approx={"kappa": 3, "samples": 1}, seed=5)
    r3 = group_similarity_rewards(comps, ["s"] * (n * g), paras, numeric_sim, approx={"kappa": 3, "samples": 1}, seed=6)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
    assert scored_pairs == n * g * 3 * 1  # O(n g kappa s), not n (n-1) g^2 = 480
    assert np.all((r1 >= 0) & (r1 <= 1))


@pytest.mark.parametrize("sizes", [(2, 2, 2, 2), (3, 1, 2, 4)])
def test_relaxed_is_unbiased(sizes):
    comps, paras = [], []
    rng = np.random.default_rng(1)
    for p, size in enumerate(sizes):
        comps += [str(v) for v in rng.integers(0, 10, size)]
        paras += [p] * size
    sets = ["s"] * len(comps)
    exact = group_similarity_rewards(comps, sets, paras, numeric_sim)
    draws = np.stack(
        [
            group_similarity_rewards(comps, sets, paras, numeric_sim, approx={"kappa": 2, "samples": 1}, seed=s)
            for s in range(4000)
        ]
    )
    # Standard error of the mean is below 0.005 here; 0.02 is a 4-sigma bound.
    np.testing.assert_allclose(draws.mean(axis=0), exact, atol=0.02)


def test_relaxed_with_kappa_covering_everything_is_exact():
    exact = group_similarity_rewards(COMPLETIONS, SETS, PARAS, numeric_sim)
    relaxed = group_similarity_rewards(COMPLETIONS, SETS, PARAS, numeric_sim, approx={"kappa": 5, "samples": 2})
    np.testing.assert_allclose(relaxed, exact, atol=1e-12)


def test_accuracy_and_reference_rewards():
    r = accuracy_rewards(["The Eiffel Tower", "tower", "", "x"], [["Eiffel Tower", "tower"], "Eiffel Tower", "b", []])
    # 1: normalised "eiffel tower" == gold -> 1; 2: best of F1("tower","eiffel tower")=2/3 -> 2/3;
    # 3: empty vs non-empty -> 0; 4: no gold -> NaN
    np.testing.assert_allclose(r[:3], [1.0, 2 / 3, 0.0], atol=1e-12)
    assert np.isnan(r[3])
    ref = reference_rewards(["3", "7"], ["5", ["0", "7"]], similarity=numeric_sim)
    np.testing.assert_allclose(ref, [0.8, 1.0])


def test_majority_agreement():
    comps = ["Paris", "paris", "Lyon", "the Paris", "Lyon", "Lyon", ""]
    sets = ["s"] * 7
    paras = [0, 0, 1, 1, 2, 2, 2]
    r = majority_agreement_rewards(comps, sets, paras)
    # p0 sees {lyon, paris, lyon, lyon} -> majority lyon: 0, 0
    # p1 sees {paris, paris, lyon, lyon} -> tie paris/lyon: lyon 1, paris 1
    # p2 sees {paris, paris, lyon, paris} -> paris: lyon 0, lyon 0, empty 0
    np.testing.assert_array_equal(r, [0, 0, 1, 1, 0, 0, 0])


def test_combine_rewards_nan_rule():
    total = combine_rewards(
        {"c": np.array([0.5, np.nan, np.nan]), "a": np.array([1.0, 0.2, np.nan])}, {"c": 2.0, "a": 0.5}
    )
    np.testing.assert_allclose(total[:2], [1.5, 0.1])
    assert np.isnan(total[2])
    with pytest.raises(ValueError, match="unknown reward components"):
        combine_rewards({"c": np.ones(2)}, {"x": 1.0})


def test_collapse_penalty_and_statistics():
    comps = ["paris", "", "  ", "lyon is nice"]
    short = short_completion_mask(comps, min_words=1)
    np.testing.assert_array_equal(short, [False, True, True, False])
    rewards = np.array([[0.9, 0.2], [1.0, 1.0], [1.0, np.nan], [0.4, 0.7]])
    out = apply_collapse_penalty(rewards, short)
    np.testing.assert_allclose(out[1], [0.0, 0.0])  # min of kept rows, never above 0
    np.testing.assert_allclose(out[[0, 3]], rewards[[0, 3]])
    neg = apply_collapse_penalty(np.array([-1.0, 2.0, 5.0]), np.array([False, False, True]))
    np.testing.assert_allclose(neg, [-1.0, 2.0, -1.0])
    stats = set_statistics(
        ["a", "a", "a", "a", "b", "c"],
        ["s", "s", "t", "t", "u", "u"],
        [0, 1, 0, 1, 0, 1],
        rewards=np.array([1, 1, 1, 1, 0, 0.5]),
    )
    assert stats["agreement"] == pytest.approx(4 / 6)
    assert stats["frac_sets_identical"] == pytest.approx(2 / 3)
    assert stats["frac_zero_std_set"] == pytest.approx(2 / 3)
    assert stats["frac_zero_std_paraphrase"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(completions=["a", "b"], set_ids=["s"], paraphrase_ids=[0, 1]), "mismatched lengths"),
        (dict(completions=["a", "b"], set_ids=["s", None], paraphrase_ids=[0, 1]), r"set_ids\[1\]"),
        (dict(completions=["a", "b"], set_ids=["s", "s"], paraphrase_ids=[0, float("nan")]), r"paraphrase_ids\[1\]"),
        (dict(completions=["a", 3], set_ids=["s", "s"], paraphrase_ids=[0, 1]), r"completions\[1\]"),
        (dict(completions=["a", "b"], set_ids=["s", "s"], paraphrase_ids=[0, 1], similarity="blue2"), "bleu2"),
        (dict(completions=["a", "b"], set_ids=["s", "s"], paraphrase_ids=[0, 1], approx={"kapa": 2}), "unknown keys"),
        (dict(completions=["a", "b"], set_ids=["s", "s"], paraphrase_ids=[0, 1], approx={"kappa": 0}), "kappa"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_similarity_rewards(**kwargs)


def test_nan_from_user_similarity_is_an_error():
    def bad(a, b):
        return np.full((len(a), len(b)), np.nan)

    with pytest.raises(ValueError, match="NaN"):
        group_similarity_rewards(["a", "b"], ["s", "s"], [0, 1], similarity=bad)
    with pytest.raises(ValueError, match="NaN"):
        group_similarity_rewards(["a", "b"], ["s", "s"], [0, 1], similarity=bad, approx={"kappa": 1})


def test_bad_shape_from_user_similarity_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        group_similarity_rewards(["a", "b"], ["s", "s"], [0, 1], similarity=lambda a, b: np.zeros(3))


def test_relaxed_sampling_parse():
    assert RelaxedSampling.parse(None) is None
    assert RelaxedSampling.parse({"kappa": 2}) == RelaxedSampling(2, 1)
    with pytest.raises(ValueError):
        RelaxedSampling.parse(3)


def test_set_sampling_seed_is_a_documented_stable_hash():
    def spec(key: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")

    assert set_sampling_seed((0, 0, 3), "q17") == spec(b"0,0,3|str:q17")
    assert set_sampling_seed(7, 17) == spec(b"7|int:17")
    assert set_sampling_seed(7, np.int64(17)) == set_sampling_seed(7, 17)  # datasets may hand back numpy ints
    assert set_sampling_seed(7, "17") != set_sampling_seed(7, 17)
    assert set_sampling_seed((7, 0), 17) != set_sampling_seed((7, 1), 17)
    # pinned: the same in every process and Python run (unlike hash(), which is salted per process)
    assert set_sampling_seed((0, 0, 3), "q17") == 0x6758BD56E9A11932
    with pytest.raises(ValueError, match="seed must be an integer"):
        set_sampling_seed(1.5, "s")


def test_set_shards_hand_checked():
    ids = ["a", "a", "b", "b", "b", "c", "c"]
    np.testing.assert_array_equal(set_shards(ids, 1), [0, 0, 0, 0, 0, 0, 0])
    # set k of S=3 goes to shard k * P // S: P=2 -> 0, 0, 1
    np.testing.assert_array_equal(set_shards(ids, 2), [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(set_shards(ids, 3), [0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(set_shards(ids, 4), [0, 0, 1, 1, 1, 2, 2])  # shard 3 gets no set
    # rows of one set need not be adjacent: a set is never split
    np.testing.assert_array_equal(set_shards(["a", "b", "a", "c"], 2), [0, 0, 0, 1])
    assert set_shards([], 2).shape == (0,)
    with pytest.raises(ValueError, match="num_shards"):
        set_shards(ids, 0)


def test_merge_shards_reassembles_rows():
    shards = np.array([0, 0, 1, 0, 2])
    out = merge_shards([[0.1, 0.2, np.nan], [0.3], [0.5]], shards)
    np.testing.assert_array_equal(out, [0.1, 0.2, 0.3, np.nan, 0.5])
    with pytest.raises(ValueError, match="shard 1 sent 2 values for its 1 rows"):
        merge_shards([[0.1, 0.2, 0.3], [0.3, 0.4], [0.5]], shards)
    with pytest.raises(ValueError, match="3 shards but only 2"):
        merge_shards([[0.1, 0.2, 0.3], [0.3]], shards)


# two sets: "s" (the hand-computed one above) and "t"
TWO_SETS = (COMPLETIONS + ["1", "9", "5", "5"], SETS + ["t"] * 4, PARAS + [0, 0, 1, 1])


def test_subset_scoring_is_hand_checked_and_never_touches_other_sets():
    seen = []

    def recording_sim(a, b):
        seen.extend(a)
        seen.extend(b)
        return numeric_sim(a, b)

    comps, sets, paras = TWO_SETS
    only_t = group_similarity_rewards(comps, sets, paras, recording_sim, sets=["t"])
    assert np.isnan(only_t[:6]).all()
    # "1" and "9" vs {5, 5}: 0.6, 0.6 -> 0.6 each; "5" vs {1, 9}: 0.6, 0.6 -> 0.6
    np.testing.assert_allclose(only_t[6:], [0.6, 0.6, 0.6, 0.6], atol=1e-12)
    assert set(seen) <= {"1", "9", "5"}  # set "s" was neither encoded nor compared
    only_s = group_similarity_rewards(comps, sets, paras, numeric_sim, sets=["s"])
    np.testing.assert_allclose(only_s[:6], [0.4, 0.6, 0.65, 0.65, 0.25, 0.65], atol=1e-12)
    assert np.isnan(only_s[6:]).all()
    with pytest.raises(ValueError, match="no completions"):
        group_similarity_rewards(comps, sets, paras, numeric_sim, sets=["u"])


def test_relaxed_draws_come_from_each_sets_own_seed():
    # n = 3 paraphrases, g = 1, kappa = 1, s = 1: each completion is compared with ONE other
    # paraphrase, so its reward is one of two hand-computed values, chosen by the set's generator.
    comps, sets, paras = ["0", "4", "10"], ["s"] * 3, [0, 1, 2]
    allowed = [{0.6, 0.0}, {0.6, 0.4}, {0.0, 0.4}]  # 0 vs {4, 10}; 4 vs {0, 10}; 10 vs {0, 4}
    approx = {"kappa": 1, "samples": 1}
    r = group_similarity_rewards(comps, sets, paras, numeric_sim, approx=approx, seed=(3, 0, 5))
    assert all(round(float(v), 12) in options for v, options in zip(r, allowed))
    # the draw: the smallest of uniform keys over the other paraphrases, from set_sampling_seed(seed, set id)
    keys = np.random.default_rng(set_sampling_seed((3, 0, 5), "s")).random((3, 3))
    keys[np.arange(3), np.arange(3)] = np.inf
    chosen = keys.argmin(axis=1)
    values = np.asarray([0.0, 4.0, 10.0])
    np.testing.assert_allclose(r, 1 - np.abs(values - values[chosen]) / 10, atol=1e-12)


@pytest.mark.parametrize("approx", [None, {"kappa": 1, "samples": 1}, {"kappa": 2, "samples": 2}])
def test_sharded_scoring_is_bit_identical_to_scoring_everything(approx):
    rng = np.random.default_rng(4)
    comps, sets, paras = [], [], []
    for s in range(5):  # 5 sets of n = 4 paraphrases x g = 3
        for p in range(4):
            for _ in range(3):
                comps.append(" ".join(rng.choice(["paris", "lyon", "is", "the", "capital", "city"], 4)))
                sets.append(f"set{s}")
                paras.append(p)
    full = group_similarity_rewards(comps, sets, paras, "bleu2", approx=approx, seed=(0, 0, 9))
    for num_shards in (1, 2, 3, 5, 8):
        shards = set_shards(sets, num_shards)
        shares = []
        for shard in range(num_shards):
            rows = np.flatnonzero(shards == shard)
            own = list(dict.fromkeys(sets[k] for k in rows))
            shares.append(
                group_similarity_rewards(comps, sets, paras, "bleu2", approx=approx, seed=(0, 0, 9), sets=own)[rows]
            )
        np.testing.assert_array_equal(merge_shards(shares, shards), full)
    # a set's rewards do not depend on the other sets or their order in the batch (rows of a set keep their order)
    order = np.argsort([-int(s[3:]) for s in sets], kind="stable")
    reordered = group_similarity_rewards(
        [comps[k] for k in order],
        [sets[k] for k in order],
        [paras[k] for k in order],
        "bleu2",
        approx=approx,
        seed=(0, 0, 9),
    )
    np.testing.assert_array_equal(reordered, full[order])
