"""The model-based similarity rewards the ZeRO-3 test compares with and without DeepSpeed."""

from __future__ import annotations

COMPLETIONS = ["Paris is the capital of France.", "The capital is Paris.", "It is Lyon.", "Lyon, I think."]
REFERENCES = ["Paris", "the capital of France is Paris", "Paris", ["Paris", "Lyon"]]
SET_IDS = ["s", "s", "s", "s"]
PARAPHRASE_IDS = [0, 0, 1, 1]


def score_cases() -> dict[str, list[float]]:
    """The ``embedding`` reference reward and the ``bmas`` group reward of the fixed completions."""
    from grpo_sim.rewards import group_similarity_rewards, reference_rewards

    return {
        "embedding_reference": reference_rewards(COMPLETIONS, REFERENCES, "embedding").tolist(),
        "bmas_group": group_similarity_rewards(COMPLETIONS, SET_IDS, PARAPHRASE_IDS, "bmas").tolist(),
    }
