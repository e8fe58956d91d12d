"""One tiny recipe workspace for the tests that train through the CLI: a tiny local policy, 6 training (and 2
held-out) paraphrase sets of 3 wordings, and ``tiny.yaml`` that trains a few CPU steps on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from grpo_sim.data.schema import write_psets
from grpo_sim.demo.world import build_demo_dataset

from trainer_helpers import build_policy

#: the training section of tiny.yaml; ``write_tiny_workspace(**training)`` overrides single keys
TINY_TRAINING: dict[str, Any] = {
    "learning_rate": 1e-3,
    "num_generations": 2,
    "per_device_train_batch_size": 6,
    "max_completion_length": 4,
    "max_steps": 4,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 2,
    "report_to": [],
    "seed": 0,
    "beta": 0.0,
    "disable_tqdm": True,
}
#: consistency (token-F1 across paraphrases) + accuracy (token-F1 against the gold answers)
TINY_REWARD = {"similarity": "token_f1", "accuracy": {"metric": "token_f1", "weight": 1.0}}


def write_tiny_workspace(
    base: Path, *, with_eval: bool = True, reward: dict[str, Any] | None = None, **training: Any
) -> Path:
    """``base`` with policy/, train.jsonl (+ eval.jsonl) and tiny.yaml (evaluation off); returns ``base``."""
    policy = build_policy(base / "policy")
    train, eval_, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    write_psets(base / "train.jsonl", train)
    data = {"train": str(base / "train.jsonl")}
    if with_eval:
        write_psets(base / "eval.jsonl", eval_)
        data["eval"] = str(base / "eval.jsonl")
    recipe = {
        "model": {"name_or_path": policy},
        "data": data,
        "reward": reward or TINY_REWARD,
        "training": {**TINY_TRAINING, **training},
        "evaluation": {"enabled": False},
    }
    (base / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return base


def config_only_model(path: Path) -> str:
    """A model directory that passes the start checks (it has a config.json) without weights: for tests of `check`
    and the start checks, which never load a model (a hub id would have to be in the local cache offline)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "qwen2"}')
    return str(path)
