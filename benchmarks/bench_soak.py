"""Memory soak: does memory grow with the number of reward batches / training steps?

Rewards: one metric instance per lexical similarity, held for the whole run as the trainer holds
its own, scores thousands of generation batches of ever-new random text (a quarter of the words of
every completion are tokens never seen before, as numbers, names and typos are in real rollouts).
Python memory (tracemalloc) and RSS are sampled after a warm-up; growth is reported per 1,000
batches, as the least-squares slope and as the growth of the peak from the second to the last
quarter (about 0 for memory that stays within a bound). Training: a few hundred tiny PSGRPOTrainer
steps, RSS and tracemalloc sampled every step, slope per 1,000 steps over the second half.
"""

from __future__ import annotations

import gc
import os
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from grpo_sim.rewards import group_similarity_rewards, reference_rewards
from grpo_sim.similarity import get_similarity

METRICS = ("bleu2", "rouge_l", "token_f1", "exact_match", "chrf:word_order=2")
N, G, SETS, WORDS_PER_COMPLETION, FRESH_FRACTION = 4, 4, 4, 12, 0.25
COMMON = [f"word{k}" for k in range(2000)] + ["the", "a", "of", "in", "Paris", "France", ",", "."]


def rss_mb() -> float:
    """Resident set size now (Linux /proc), in MiB; peak RSS elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def slope_per_1000(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs, per 1,000 units of x."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), 1)[0] * 1000)


def peak_growth_per_1000(xs: list[float], ys: list[float]) -> float:
    """Growth of the peak between the second and the last quarter of the samples, per 1,000 units of x.

    Equals the slope for steady growth, and is about 0 for memory that rises and falls within a bound
    (a plain slope over a sawtooth depends on where the samples cut it).
    """
    q = len(xs) // 4
    if q < 1:
        return float("nan")
    second, last = slice(q, 2 * q), slice(3 * q, len(xs))
    dx = np.mean(xs[last]) - np.mean(xs[second])
    return float((max(ys[last]) - max(ys[second])) / dx * 1000)


def random_batch(rng: np.random.Generator, counter: list[int]):
    """One generation batch: SETS sets x N paraphrases x G rollouts, with fresh tokens in every completion."""
    texts, set_ids, para_ids, refs = [], [], [], []
    for s in range(SETS):
        base = list(rng.choice(COMMON, size=WORDS_PER_COMPLETION))
        for p in range(N):
            for _ in range(G):
                words = list(base)
                for k in np.flatnonzero(rng.random(WORDS_PER_COMPLETION) < FRESH_FRACTION):
                    counter[0] += 1
                    words[k] = f"t{counter[0]}x{int(rng.integers(1 << 30))}"  # never seen before
                texts.append(" ".join(words))
                set_ids.append(s)
                para_ids.append(p)
                refs.append(f"gold {counter[0]} {words[0]}")
    return texts, set_ids, para_ids, refs


def reward_soak(batches: int = 4000, samples: int = 20, seed: int = 0) -> dict:
    """Score ``batches`` batches with every metric; memory sampled ``samples`` times after a 10% warm-up."""
    rng = np.random.default_rng(seed)
    metrics = {name: get_similarity(name) for name in METRICS}
    counter = [0]
    warmup = max(1, batches // 10)
    every = max(1, (batches - warmup) // samples)
    xs, traced, rss = [], [], []
    tracemalloc.start()
    t0 = time.perf_counter()
    for b in range(1, batches + 1):
        texts, set_ids, para_ids, refs = random_batch(rng, counter)
        for name, metric in metrics.items():
            group_similarity_rewards(texts, set_ids, para_ids, metric)
            if name == "token_f1":  # the accuracy reward's path: hypotheses and references encoded separately
                reference_rewards(texts, refs, metric)
        if b >= warmup and (b - warmup) % every == 0:
            gc.collect()
            xs.append(b)
            traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
            rss.append(rss_mb())
    seconds = time.perf_counter() - t0
    tracemalloc.stop()
    vocab = {name: _vocab_entries(m) for name, m in metrics.items()}
    return {
        "batches": batches,
        "completions_per_batch": SETS * N * G,
        "fresh_tokens": counter[0],
        "seconds": seconds,
        "traced_mb_start": traced[0],
        "traced_mb_end": traced[-1],
        "traced_mb_peak": max(traced),
        "rss_mb_start": rss[0],
        "rss_mb_end": rss[-1],
        "traced_mb_per_1000": slope_per_1000(xs, traced),
        "traced_peak_mb_per_1000": peak_growth_per_1000(xs, traced),
        "rss_peak_mb_per_1000": peak_growth_per_1000(xs, rss),
        "vocab_entries": vocab,
    }


def _vocab_entries(metric) -> int:
    """Token -> id entries a metric instance holds (0 for metrics without a vocabulary)."""
    for attribute in ("_vocab", "_words"):
        vocab = getattr(metric, attribute, None)
        if vocab is not None:
            return len(vocab)
    return 0


def training_soak(steps: int = 300, seed: int = 0) -> dict:
    """``steps`` tiny PSGRPOTrainer steps; RSS and traced memory after every step, slope over the second half."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from grpo_sim.data.schema import to_training_rows
    from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
    from grpo_sim.models import load_policy, make_tiny_policy
    from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

    train, eval_, corpus = build_demo_dataset(64, 2, num_paraphrases=3, seed=seed)
    rows = Dataset.from_list(to_training_rows(train))
    xs, traced, rss = [], [], []

    class Sample(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            xs.append(state.global_step)
            traced.append(tracemalloc.get_traced_memory()[0] / 2**20)
            rss.append(rss_mb())

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy"
        make_tiny_policy(path, demo_text_corpus(train + eval_, corpus), hidden_size=32, num_layers=1, num_heads=2)
        model, tok = load_policy(path)
        args = PSGRPOConfig(
            output_dir=str(Path(tmp) / "out"),
            use_cpu=True,
            bf16=False,
            per_device_train_batch_size=6,
            num_generations=2,
            max_completion_length=8,
            max_steps=steps,
            learning_rate=1e-4,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            seed=seed,
            beta=0.0,
            disable_tqdm=True,
            similarity="bleu2",
            accuracy_weight=1.0,
        )
        trainer = PSGRPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tok, callbacks=[Sample()])
        trainer.remove_callback(PrinterCallback)
        tracemalloc.start()
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        tracemalloc.stop()
    half = len(xs) // 2
    return {
        "steps": steps,
        "seconds": seconds,
        "traced_mb_start": traced[0],
        "traced_mb_end": traced[-1],
        "rss_mb_start": rss[0],
        "rss_mb_end": rss[-1],
        "traced_mb_per_1000": slope_per_1000(xs[half:], traced[half:]),
        "rss_mb_per_1000": slope_per_1000(xs[half:], rss[half:]),
    }


def run(quick: bool = False) -> dict:
    return {
        "rewards": reward_soak(batches=200 if quick else 2000, samples=12 if quick else 40),
        "training": training_soak(steps=40 if quick else 300),
    }
