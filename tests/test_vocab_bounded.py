"""The lexical metrics' memory stays bounded on ever-new text, and scores stay exact across vocabulary generations."""

from __future__ import annotations

import numpy as np
import pytest

from grpo_sim.rewards import group_similarity_rewards, reference_rewards
from grpo_sim.similarity import get_similarity
from grpo_sim.similarity.text import TokenVocab

TOKEN_METRICS = ["bleu2", "bleu4", "rouge_l", "token_f1", "chrf:word_order=2"]


def vocab_of(metric) -> TokenVocab:
    vocab = getattr(metric, "_vocab", None)
    return metric._words if vocab is None else vocab


def random_texts(rng, count: int, fresh: int, common: int = 30) -> list[str]:
    """Texts mixing a small common vocabulary with ``fresh`` never-seen tokens each."""
    out = []
    for _ in range(count):
        words = [f"c{k}" for k in rng.integers(0, common, size=6)]
        words += [f"n{rng.integers(1 << 40)}" for _ in range(fresh)]
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


@pytest.mark.parametrize("spec", ["token_f1", "rouge_l"])  # TokenVocab is shared by all; two suffice
def test_a_metric_fed_ever_new_text_holds_a_bounded_vocabulary(spec):
    metric = get_similarity(spec)
    rng = np.random.default_rng(0)
    batch = 400  # completions per call, 4 fresh tokens each: 1,600 new tokens per call
    for _ in range(100):  # 160,000 distinct new tokens in all, more than two generations' worth
        metric.encode(random_texts(rng, batch, fresh=4))  # encoding is what fills the vocabulary
    vocab = vocab_of(metric)
    assert vocab.generation >= 2
    assert len(vocab) <= 2 * (vocab.max_size + batch * 10), len(vocab)


def test_exact_match_keeps_no_state_per_answer():
    metric = get_similarity("exact_match")
    before = len(vars(metric))
    metric.matrix([f"answer {k}" for k in range(1000)])
    assert len(vars(metric)) == before and not any(isinstance(v, (dict, TokenVocab)) for v in vars(metric).values())
    assert metric.matrix(["The Cat.", "dog"], ["cat", "a dog"]).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_vocab_ids_are_stable_across_one_generation_and_reused_after_two():
    vocab = TokenVocab(max_size=3)
    assert vocab.ids(["a", "b", "c", "a"]) == [0, 1, 2, 0]
    assert vocab.ids(["d", "a"]) == [3, 0] and vocab.generation == 1  # a new generation keeps 'a'
    assert vocab.ids(["e"]) == [4]
    # generation 2: 'b' and 'c' (seen only in generation 0) are dropped; their ids serve new tokens
    assert vocab.ids(["f", "g", "a"])[2] == 0 and vocab.generation == 2
    assert sorted(vocab.ids(["f", "g"])) == [1, 2]
    assert len(vocab) <= 2 * 3 + 3


@pytest.mark.parametrize("spec", TOKEN_METRICS)
def test_scores_stay_exact_while_the_vocabulary_turns_over(spec):
    """A tiny vocabulary bound forces a new generation almost every call; every score must equal a fresh
    instance's (whose ids are all new), including pairs encoded in separate calls (reference rewards)."""
    bounded = get_similarity(spec)
    vocab = vocab_of(bounded)
    vocab.max_size = 5
    rng = np.random.default_rng(1)
    for step in range(30):
        hyps = random_texts(rng, 6, fresh=int(rng.integers(0, 3)), common=8)
        refs = random_texts(rng, 6, fresh=int(rng.integers(0, 3)), common=8)
        fresh = get_similarity(spec)
        np.testing.assert_array_equal(bounded.matrix(hyps, refs), fresh.matrix(hyps, refs), err_msg=f"step {step}")
        np.testing.assert_array_equal(reference_rewards(hyps, refs, bounded), reference_rewards(hyps, refs, fresh))
        sets, paras = [0] * 3 + [1] * 3, [0, 1, 2] * 2
        np.testing.assert_array_equal(
            group_similarity_rewards(hyps, sets, paras, bounded), group_similarity_rewards(hyps, sets, paras, fresh)
        )
    assert vocab.generation > 10


@pytest.mark.parametrize("spec", ["bleu2", "rouge_l", "token_f1", "chrf:word_order=1"])
def test_encodings_two_generations_apart_are_refused(spec):
    metric = get_similarity(spec)
    vocab_of(metric).max_size = 2
    old = metric.encode(["alpha beta gamma"])
    metric.encode(["delta epsilon zeta"])
    metric.encode(["eta theta iota"])
    new = metric.encode(["kappa lambda mu"])
    with pytest.raises(ValueError, match="generations apart"):
        metric.block(old, new)
    with pytest.raises(ValueError, match="generations apart"):
        metric.paired(old, new)
