"""Settings of the long-form demo (``grpo-sim demo --task longform``, :mod:`grpo_sim.demo.longform`): data, warm
start, the GRPO settings both arms share, the arms' reward terms and the compared figures."""

from __future__ import annotations

import copy
from typing import Any

LONGFORM_DATA_SETTINGS: dict[str, Any] = {
    "num_train_sets": 600,
    "num_eval_sets": 200,
    "num_paraphrases": 4,
    "passages_per_prompt": 3,
}

#: Warm start (see :class:`grpo_sim.demo.longform_world.LongformWarmStartConfig`).
LONGFORM_WARMSTART_SETTINGS: dict[str, Any] = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 8,
    "curriculum_steps": 300,
    "name_steps": 1200,
    "steps": 1300,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "warmup_steps": 100,
    "phrasing_fidelity": 0.75,
}

#: The GRPO settings shared by both arms (:class:`grpo_sim.trainer.PSGRPOConfig` fields, except
#: ``sets_per_step``: paraphrase sets per generation batch = per optimizer step). As in the short
#: demo, advantages are normalised over a whole set (``advantage_mode="set"``), embeddings stay
#: frozen (held-out names keep their "pretrained" vectors) and the entropy warning is off (sentences
#: of a fixed form legitimately become near-deterministic); the collapse penalty stays on.
LONGFORM_GRPO_SETTINGS: dict[str, Any] = {
    "max_steps": 250,
    "sets_per_step": 4,
    "num_generations": 4,
    "temperature": 1.0,
    "max_completion_length": 10,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "advantage_mode": "set",
    "collapse_penalty": True,
    "collapse_warn_entropy_ratio": 0.0,
}

_ACCURACY_TERM = {"type": "reference", "name": "accuracy", "weight": 1.0, "similarity": "token_f1"}
#: The only difference between the arms: their reward terms (:mod:`grpo_sim.reward_terms`).
ARM_REWARD_TERMS: dict[str, list[dict[str, Any]]] = {
    "grpo_accuracy_only": [_ACCURACY_TERM],
    "ps_grpo": [{"type": "consistency", "name": "consistency", "weight": 1.0, "similarity": "bleu2"}, _ACCURACY_TERM],
}
ARMS = tuple(ARM_REWARD_TERMS)
POLICIES = ("base",) + ARMS

#: ``quick=True``: a smoke test of the pipeline in seconds (the numbers mean nothing).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"num_train_sets": 16, "num_eval_sets": 6},
    "warmstart": {"name_steps": 10, "steps": 10, "curriculum_steps": 5, "batch_size": 8, "warmup_steps": 2},
    "grpo": {"max_steps": 2, "sets_per_step": 1},
}

#: Paired comparisons ``a_minus_b`` in ``summary.json["comparisons"]`` and the keys compared.
COMPARISONS = (("ps_grpo", "base"), ("grpo_accuracy_only", "base"), ("ps_grpo", "grpo_accuracy_only"))
COMPARED_KEYS = (
    "consistency_e2e_bleu2",
    "consistency_e2e_embedding",
    "phrasing_agreement",
    "accuracy_f1",
    "accuracy_rouge_l",
    "accuracy_entity",
)
#: The issue's criterion on PS-GRPO minus accuracy-only: consistency interval above 0, accuracy not lower.
ACCURACY_NOT_LOWER_MARGIN = -0.02
EVAL_METRICS = ("bleu2", "rouge_l", "exact_match", "embedding")
MAX_NEW_TOKENS = 12


def longform_settings(quick: bool = False, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"data", "warmstart", "grpo"}`` settings of a run."""
    s = {
        "data": dict(LONGFORM_DATA_SETTINGS),
        "warmstart": dict(LONGFORM_WARMSTART_SETTINGS),
        "grpo": copy.deepcopy(LONGFORM_GRPO_SETTINGS),
    }
    if quick:
        for part, over in QUICK_OVERRIDES.items():
            s[part].update(over)
    for part in s.values():
        part["seed"] = seed
    return s
