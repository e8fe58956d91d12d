"""Shared helpers for the trainer tests: a tiny local policy and paraphrase-set data."""

from __future__ import annotations

from datasets import Dataset

from grpo_sim.data.schema import to_training_rows
from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
from grpo_sim.models import load_policy, make_tiny_policy


def demo_rows(num_sets: int = 6, num_paraphrases: int = 3):
    train, eval_, corpus = build_demo_dataset(num_sets, 2, num_paraphrases=num_paraphrases, seed=0)
    return train, eval_, corpus, to_training_rows(train)


def build_policy(path, num_sets: int = 6, num_paraphrases: int = 3):
    train, eval_, corpus, _ = demo_rows(num_sets, num_paraphrases)
    make_tiny_policy(path, demo_text_corpus(train + eval_, corpus), seed=0, hidden_size=32, num_layers=1, num_heads=2)
    return str(path)


def dataset(num_sets: int = 6, num_paraphrases: int = 3) -> Dataset:
    return Dataset.from_list(demo_rows(num_sets, num_paraphrases)[3])


def policy(path):
    return load_policy(path)


def common_args(output_dir, **overrides):
    args = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=6,
        num_generations=2,
        max_completion_length=5,
        max_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        beta=0.0,
        temperature=1.0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    args.update(overrides)
    return args


def free_port() -> int:
    """A TCP port nobody listens on now (fixed ports collide when test runs overlap)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
