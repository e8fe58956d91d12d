"""Exact/relaxed PS-GRPO set rewards against the naive per-pair loop a user would write.

n = 6 paraphrases, g = 4 rollouts -> 480 ordered cross-paraphrase pairs per set. Everything runs on
one core (threads pinned by ``benchmarks/__main__.py``). The naive loops at 32 sets would take
minutes, so they are timed on at most ``NAIVE_PAIR_BUDGET`` pairs and scaled linearly (a per-pair
loop is linear in the number of pairs by construction); the table says where.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from grpo_sim.rewards import group_similarity_rewards, set_shards
from grpo_sim.similarity.text import normalize_answer

N, G = 6, 4
NAIVE_PAIR_BUDGET = 480
WORDS = [f"w{k}" for k in range(400)] + ["the", "a", "of", "in", "paris", "France", ",", "."]


def make_batch(num_sets: int, tokens: int, seed: int = 0):
    """Completions that share most words within a set (realistic, non-trivial similarities)."""
    rng = np.random.default_rng(seed)
    texts, set_ids, para_ids = [], [], []
    for s in range(num_sets):
        base = rng.choice(WORDS, size=tokens)
        for p in range(N):
            for _ in range(G):
                words = base.copy()
                flip = rng.random(tokens) < 0.3
                words[flip] = rng.choice(WORDS, size=int(flip.sum()))
                texts.append(" ".join(words))
                set_ids.append(s)
                para_ids.append(p)
    return texts, set_ids, para_ids


def cross_pairs(set_ids, para_ids):
    pairs = []
    by_set: dict[int, list[int]] = {}
    for k, s in enumerate(set_ids):
        by_set.setdefault(s, []).append(k)
    for rows in by_set.values():
        for i in rows:
            for j in rows:
                if para_ids[i] != para_ids[j]:
                    pairs.append((i, j))
    return pairs


def naive_sacrebleu():
    from sacrebleu.metrics import BLEU

    bleu = BLEU(max_ngram_order=2, effective_order=True)
    return lambda h, r: bleu.sentence_score(h, [r]).score / 100


def naive_rouge():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return lambda h, r: scorer.score(r, h)["rougeL"].fmeasure


def naive_token_f1(h, r):
    ht, rt = normalize_answer(h).split(), normalize_answer(r).split()
    common = sum((Counter(ht) & Counter(rt)).values())
    if not ht or not rt:
        return float(ht == rt)
    if common == 0:
        return 0.0
    p, rc = common / len(ht), common / len(rt)
    return 2 * p * rc / (p + rc)


def time_naive(fn, texts, pairs):
    budget = pairs[:NAIVE_PAIR_BUDGET]
    start = time.perf_counter()
    for i, j in budget:
        fn(texts[i], texts[j])
    elapsed = time.perf_counter() - start
    return elapsed * len(pairs) / len(budget), len(budget) < len(pairs)


def best_of(fn, repeats=3, clock=time.perf_counter):
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def run(quick: bool = False) -> list[dict]:
    rows = []
    metrics = [
        ("bleu2", naive_sacrebleu(), "sacrebleu sentence_score"),
        ("rouge_l", naive_rouge(), "rouge_score RougeScorer"),
        ("token_f1", naive_token_f1, "Python token-F1"),
    ]
    lengths = [32, 128] if quick else [32, 128, 256]
    set_counts = [1, 32]
    for tokens in lengths:
        for num_sets in set_counts:
            texts, set_ids, para_ids = make_batch(num_sets, tokens)
            pairs = cross_pairs(set_ids, para_ids)
            for name, naive, naive_name in metrics:
                naive_s, extrapolated = time_naive(naive, texts, pairs)
                exact_s = best_of(lambda: group_similarity_rewards(texts, set_ids, para_ids, name))
                relaxed_s = best_of(
                    lambda: group_similarity_rewards(texts, set_ids, para_ids, name, approx={"kappa": 3, "samples": 1})
                )
                rows.append(
                    {
                        "metric": name,
                        "tokens": tokens,
                        "sets": num_sets,
                        "pairs": len(pairs),
                        "naive": naive_name + (" (scaled)" if extrapolated else ""),
                        "naive_ms": naive_s * 1e3,
                        "exact_ms": exact_s * 1e3,
                        "relaxed_ms": relaxed_s * 1e3,
                        "speedup_exact": naive_s / exact_s,
                    }
                )
    return rows


def run_sharding(quick: bool = False, processes=(2, 8, 64), tokens: int = 256, metric: str = "bleu2") -> list[dict]:
    """Per-process scoring time when P processes each score their share of the sets, simulated in one process.

    A generation batch of P x n*g completions (one set per process at the paper's scale: 64
    processes x 24 completions) is scored once whole (``T_1``: what EVERY process did before
    sharding) and once as process 0's share (``T_share``, :func:`set_shards` + ``sets=``).
    Efficiency ``(T_1 / P) / T_share`` is 1 for perfect scaling; the per-call costs that still
    walk the whole batch's ids keep it below 1. Outside ``quick`` every share is timed too and the
    slowest is reported (the step waits for the slowest process). Best of several runs each, in
    CPU time of this (single-threaded) process, so that other load on the machine does not skew the ratio.
    """
    rows = []
    repeats = 3 if quick else 5
    for num_processes in processes:
        texts, set_ids, para_ids = make_batch(num_processes, tokens, seed=2)
        shards = set_shards(set_ids, num_processes)

        def share(rank):
            own = list(dict.fromkeys(set_ids[k] for k in np.flatnonzero(shards == rank)))
            return lambda: group_similarity_rewards(texts, set_ids, para_ids, metric, sets=own)

        cpu = time.process_time
        share(0)()  # warm-up outside the timings
        whole_s = best_of(lambda: group_similarity_rewards(texts, set_ids, para_ids, metric), 3, cpu)
        share_s = best_of(share(0), repeats, cpu)
        slowest = None if quick else max(best_of(share(rank), repeats, cpu) for rank in range(num_processes))
        rows.append(
            {
                "processes": num_processes,
                "completions": len(texts),
                "tokens": tokens,
                "metric": metric,
                "whole_batch_s": whole_s,
                "share_s": share_s,
                "slowest_share_s": slowest,
                "speedup_per_process": whole_s / share_s,
                "efficiency": (whole_s / num_processes) / share_s,
            }
        )
    return rows


def run_embedding(num_sets: int = 4, tokens: int = 32) -> dict:
    texts, set_ids, para_ids = make_batch(num_sets, tokens, seed=1)
    from grpo_sim.similarity import get_similarity

    metric = get_similarity("embedding:device=cpu")
    metric.matrix(texts[:2])  # load the model outside the timing
    exact_s = best_of(lambda: group_similarity_rewards(texts, set_ids, para_ids, metric), repeats=2)
    relaxed_s = best_of(
        lambda: group_similarity_rewards(texts, set_ids, para_ids, metric, approx={"kappa": 3, "samples": 1}), repeats=2
    )
    return {
        "completions": len(texts),
        "tokens": tokens,
        "exact_ms_per_completion": exact_s * 1e3 / len(texts),
        "relaxed_ms_per_completion": relaxed_s * 1e3 / len(texts),
    }
