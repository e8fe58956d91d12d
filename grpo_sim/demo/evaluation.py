"""Held-out evaluation of the demo's policies at the paper's three levels, and paired comparisons.

* **retriever**: Jaccard similarity of the passages BM25 retrieved for the paraphrases of a set
  (``consistency_retriever_jaccard``; BM25 is fixed, so it is the same for every policy);
* **generator**: every paraphrase of a set answered with the same passages, those of paraphrase 0
  (``consistency_generator_*``): what the policy changes when only the wording differs;
* **end-to-end**: every paraphrase with its own retrieved passages (``consistency_e2e_*``), as deployed.

Accuracy is scored on the end-to-end answers. Everything comes from :mod:`grpo_sim.eval`
(``generate_predictions`` and ``summarize_with_details``); the demo adds its collapse figure (sets answered
identically and wrongly) and the accuracy on the wordings the warm start saw clean vs noisy labels for.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = [
    "COMPARED_KEYS",
    "COMPARISONS",
    "EVAL_LEVELS",
    "SUMMARY_FIELDS",
    "evaluate_policy",
    "identical_wrong",
    "paired_comparisons",
    "wording_accuracy",
]

#: Generation levels evaluated (the retriever level needs no generation).
EVAL_LEVELS = ("e2e", "generator")

#: Per-policy fields every summary row has.
SUMMARY_FIELDS = (
    "accuracy_em",
    "accuracy_f1",
    "consistency_e2e_bleu2",
    "consistency_e2e_exact",
    "consistency_e2e_embedding",
    "consistency_generator_exact",
    "consistency_generator_bleu2",
    "consistency_retriever_jaccard",
    "frac_empty",
    "frac_sets_identical_wrong",
    "num_sets",
)

#: Paired comparisons in ``summary.json["comparisons"]``: ``a_minus_b`` for each ``(a, b)``.
COMPARISONS = (
    ("ps_grpo", "base"),
    ("grpo_accuracy_only", "base"),
    ("ps_grpo_consistency_only", "base"),
    ("ps_grpo_relaxed", "base"),
    ("ps_grpo", "grpo_accuracy_only"),
    ("ps_grpo_consistency_only", "ps_grpo"),
    ("ps_grpo_relaxed", "ps_grpo"),
)

#: Per-set figures compared in each pair.
COMPARED_KEYS = ("consistency_e2e_exact", "consistency_generator_exact", "accuracy_em", "frac_sets_identical_wrong")


def identical_wrong(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> list[float]:
    """Per set, 1.0 when all its paraphrases got the same normalised answer and that answer is not gold
    (collapse onto a wrong answer; the evaluator's ``empty_answer_rate`` covers empties), else 0.0."""
    from ..similarity.text import normalize_answer

    out = []
    for s, group in zip(sets, answers):
        norm = {normalize_answer(a) for a in group}
        out.append(float(len(norm) == 1 and not norm & {normalize_answer(g) for g in s.answers}))
    return out


def wording_accuracy(
    sets: Sequence[Any], answers: Sequence[Sequence[str]], noisy: Mapping[str, Any]
) -> dict[str, float]:
    """Exact-match accuracy on the wordings whose warm-start labels were noisy vs the clean ones
    (``noisy``: relation -> template ids, :data:`grpo_sim.demo.warmstart.NOISY_TEMPLATES`): where the warm
    start's inconsistency comes from."""
    from ..similarity.text import normalize_answer

    hits: dict[str, list[float]] = {"noisy": [], "clean": []}
    for s, group in zip(sets, answers):
        rel = s.metadata.get("relation")
        tids = s.metadata.get("templates")
        if rel is None or tids is None:
            continue
        gold = {normalize_answer(g) for g in s.answers}
        for t, a in zip(tids, group):
            hits["noisy" if t in set(noisy.get(rel, ())) else "clean"].append(float(normalize_answer(a) in gold))
    return {f"accuracy_em_{k}_wordings": (sum(v) / len(v) if v else float("nan")) for k, v in hits.items()}


def evaluate_policy(
    model,
    tokenizer,
    sets: Sequence[Any],
    noisy_templates: Mapping[str, Any],
    max_new_tokens: int = 4,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Greedy evaluation of one policy at the three levels -> flat summary dict (the evaluator's keys plus
    ``frac_empty`` = ``empty_answer_rate``, ``frac_sets_identical_wrong`` and the accuracy on noisy vs clean
    wordings). ``_answers`` (end-to-end answers per set) and ``_per_set`` (the evaluator's per-set rows, with
    ``frac_sets_identical_wrong``) are for the caller and are not written to the summary."""
    from ..eval import generate_predictions, summarize_with_details

    preds = []
    for level in EVAL_LEVELS:
        preds += generate_predictions(
            model,
            tokenizer,
            sets,
            level=level,
            template="rag_short_answer",
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            do_sample=False,
            progress=False,
        )
    table = {(p["set_id"], p["paraphrase_id"]): p["answer"] for p in preds if p["level"] == "e2e"}
    answers = [[table[(s.set_id, p.paraphrase_id)] for p in s.paraphrases] for s in sets]
    summary, per_set = summarize_with_details(sets, preds, metrics=("bleu2", "rouge_l", "exact_match", "embedding"))
    wrong = identical_wrong(sets, answers)
    for row, value in zip(per_set, wrong):
        row["frac_sets_identical_wrong"] = value
    summary["evaluator"] = "grpo_sim.eval"
    summary["frac_empty"] = summary["empty_answer_rate"]
    summary["frac_sets_identical_wrong"] = sum(wrong) / max(1, len(wrong))
    summary.update(wording_accuracy(sets, answers, noisy_templates))
    summary["_answers"] = answers
    summary["_per_set"] = per_set
    return summary


def paired_comparisons(
    per_set: Mapping[str, Sequence[Mapping[str, Any]]], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Paired differences over the same held-out sets (:func:`grpo_sim.eval.metrics.paired_difference`:
    ``{"diff", "ci", "num_sets"}`` with a 95% percentile-bootstrap interval) of :data:`COMPARED_KEYS` for
    :data:`COMPARISONS`; ``per_set`` maps a policy to its evaluator per-set rows. Pairs with a missing side and
    keys a side lacks are left out."""
    from ..eval.metrics import paired_difference

    out: dict[str, Any] = {}
    for a, b in COMPARISONS:
        if a not in per_set or b not in per_set:
            continue
        keys = [k for k in COMPARED_KEYS if per_set[a] and k in per_set[a][0] and k in per_set[b][0]]
        out[f"{a}_minus_{b}"] = {
            key: paired_difference(per_set[a], per_set[b], key, n_boot=n_boot, seed=seed) for key in keys
        }
    return out
