"""The model-based similarity rewards the ZeRO-3 test compares with and without DeepSpeed."""

from __future__ import annotations

COMPLETIONS = ["Paris is the capital of France.", "The capital is Paris.", "It is Lyon.", "Lyon, I think."]
REFERENCES = ["Paris", "the capital of France is Paris", "Paris", ["Paris", "Lyon"]]
SET_IDS = ["s", "s", "s", "s"]
PARAPHRASE_IDS = [0, 0, 1, 1]


PASSAGES = [
    {"id": "p1", "text": "Paris is the capital of France."},
    {"id": "p2", "text": "Lyon lies on the Rhone."},
    {"id": "p3", "text": "Berlin is the capital of Germany."},
]


def score_cases() -> dict[str, list[float]]:
    """The ``embedding`` reference reward, the ``bmas`` group reward and dense retrieval scores (same encoder)."""
    import numpy as np

    from grpo_sim.data.dense import DenseRetriever
    from grpo_sim.rewards import group_similarity_rewards, reference_rewards

    retriever = DenseRetriever(PASSAGES)
    scores, ids = retriever.search(retriever.encode_queries(["capital of France", "river in Lyon"]), 2)
    return {
        "embedding_reference": reference_rewards(COMPLETIONS, REFERENCES, "embedding").tolist(),
        "bmas_group": group_similarity_rewards(COMPLETIONS, SET_IDS, PARAPHRASE_IDS, "bmas").tolist(),
        "dense_retrieval_scores": np.asarray(scores, dtype=np.float64).ravel().tolist(),
        "dense_retrieval_ids": np.asarray(ids, dtype=np.float64).ravel().tolist(),
    }
