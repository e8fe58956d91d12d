"""Evaluation numbers checked by hand on fixed predictions (replay mode), intervals, bad inputs."""

import json
import math

import numpy as np
import pytest

from grpo_sim.data.retrieval import retriever_consistency
from grpo_sim.eval import (
    EvalError,
    bootstrap_ci,
    check_predictions,
    metric_key,
    paired_difference,
    pairwise_consistency,
    read_predictions,
    summarize,
    summarize_with_details,
)


def _para(pid, question, ids):
    return {"paraphrase_id": pid, "question": question, "passages": [{"id": i, "text": f"text {i}"} for i in ids]}


SETS = [
    {
        "set_id": "A",
        "question": "Who sat?",
        "answers": ["the cat"],
        "paraphrases": [
            _para(0, "Who sat?", ["a", "b", "c"]),
            _para(1, "Which animal sat?", ["a", "b", "d"]),
            _para(2, "Who was sitting?", ["e"]),
        ],
    },
    {
        "set_id": "B",
        "question": "Capital of France?",
        "answers": ["Paris"],
        "paraphrases": [
            _para(0, "Capital of France?", ["x", "y"]),
            _para(1, "France's capital?", ["y", "x"]),
            _para(2, "What is the French capital?", ["x", "y"]),
        ],
    },
]
E2E = {"A": ["the cat sat", "the cat", "a dog"], "B": ["Paris", "Paris", "Paris."]}
GEN = {"A": ["the cat", "the cat", "the cat"], "B": ["Paris", "London", "Paris"]}


def _rows(answers, level):
    return [
        {
            "set_id": s,
            "paraphrase_id": k,
            "answer": a,
            "level": level,
            "passage_ids": [p["id"] for p in SETS["AB".index(s)]["paraphrases"][k]["passages"]],
        }
        for s, group in answers.items()
        for k, a in enumerate(group)
    ]


PREDS = _rows(E2E, "e2e") + _rows(GEN, "generator")

# hand-worked numbers (see the comments in test_hand_checked_summary)
BLEU_A = (math.sqrt(1 / 3) + math.exp(-0.5)) / 6
BLEU_B = (3 + 2 * math.exp(-1)) / 6


def test_pairwise_and_jaccard_by_hand():
    # BLEU-2 (sacrebleu, effective order, exp smoothing), ordered pairs i != j:
    # ("the cat sat" | ref "the cat")  p1 = 2/3, p2 = 1/2, BP = 1           -> sqrt(1/3)
    # ("the cat" | ref "the cat sat")  p1 = p2 = 1,  BP = exp(1 - 3/2)       -> exp(-0.5)
    # "a dog" shares no token with the others                                -> 0 (4 pairs)
    assert pairwise_consistency(E2E["A"], "bleu2") == pytest.approx(BLEU_A, abs=1e-12)
    # ("Paris" | "Paris") = 1 twice; ("Paris" | "Paris .") = exp(1 - 2) twice (BP, 1 token);
    # ("Paris ." | "Paris") = sqrt(1/2 * 1/2) = 0.5 twice (p2 smoothed to 1 / (2 * 1))
    assert pairwise_consistency(E2E["B"], "bleu2") == pytest.approx(BLEU_B, abs=1e-12)
    # ROUGE-L: LCS("the cat sat", "the cat") = 2 -> F = 2 * (2/3) * 1 / (2/3 + 1) = 0.8, both orders
    assert pairwise_consistency(E2E["A"], "rouge_l") == pytest.approx(1.6 / 6)
    assert pairwise_consistency(E2E["A"], "exact_match") == 0.0
    assert pairwise_consistency(["x", "x", "y"], "exact_match") == pytest.approx(2 / 6)
    # Jaccard: {a,b,c} vs {a,b,d} = 2/4; with {e}: 0 -> (0.5 + 0.5) / 6 ordered pairs
    assert retriever_consistency([["a", "b", "c"], ["a", "b", "d"], ["e"]]) == pytest.approx(1 / 6)
    with pytest.raises(EvalError, match="at least 2"):
        pairwise_consistency(["only one"], "bleu2")


def test_hand_checked_summary():
    s, per_set = summarize_with_details(
        SETS, PREDS, metrics=("bleu2", "rouge_l", "exact_match", "token_f1"), n_boot=200, seed=0
    )
    assert s["num_sets"] == 2 and s["num_paraphrases"] == 6 and s["num_predictions"] == 12
    assert s["answer_form"] == "short"
    # accuracy (best over gold "the cat" / "Paris"): A = [0, 1, 0] EM, [2/3, 1, 0] F1, [0.8, 1, 0] ROUGE-L
    assert s["accuracy_em"] == pytest.approx((1 / 3 + 1) / 2)
    assert s["accuracy_f1"] == pytest.approx((5 / 9 + 1) / 2)
    assert s["accuracy_rouge_l"] == pytest.approx((0.6 + 1) / 2)
    # end-to-end consistency
    assert s["consistency_e2e_bleu2"] == pytest.approx((BLEU_A + BLEU_B) / 2, abs=1e-12)
    assert s["consistency_e2e_rouge_l"] == pytest.approx((1.6 / 6 + 1) / 2)
    assert s["consistency_e2e_exact"] == pytest.approx(0.5)  # A: all differ; B: all "paris"
    assert s["consistency_e2e_token_f1"] == pytest.approx((2 * (2 / 3) / 6 + 1) / 2)
    # generator consistency: A identical -> 1; B "Paris","London","Paris" -> 2 of 6 ordered pairs
    for key in ("bleu2", "rouge_l", "exact", "token_f1"):
        assert s[f"consistency_generator_{key}"] == pytest.approx((1 + 1 / 3) / 2)
    # retriever: A = 1/6, B = 1 (same ids, order ignored)
    assert s["consistency_retriever_jaccard"] == pytest.approx((1 / 6 + 1) / 2)
    assert s["empty_answer_rate"] == 0.0
    # every number in [0, 1] with an interval containing it
    for key in [k for k in s if f"{k}_ci" in s]:
        lo, hi = s[f"{key}_ci"]
        assert 0.0 <= lo <= s[key] + 1e-12 <= hi + 2e-12 <= 1.0 + 2e-12, key
    rows = {r["set_id"]: r for r in per_set}
    assert rows["A"]["consistency_e2e_bleu2"] == pytest.approx(BLEU_A)
    assert rows["A"]["consistency_retriever_jaccard"] == pytest.approx(1 / 6)
    assert rows["A"]["em_by_position"] == [0.0, 1.0, 0.0]
    assert rows["A"]["f1_by_position"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert rows["B"]["consistency_generator_exact"] == pytest.approx(1 / 3)
    json.dumps(s), json.dumps(per_set)  # JSON-ready


def test_summarize_contract_keys_and_replay_without_data():
    s = summarize(SETS, PREDS, metrics=("bleu2", "exact_match"), n_boot=50)
    for key in (
        "accuracy_em",
        "accuracy_f1",
        "accuracy_rouge_l",
        "consistency_e2e_bleu2",
        "consistency_e2e_exact",
        "consistency_generator_bleu2",
        "consistency_retriever_jaccard",
        "num_sets",
    ):
        assert key in s
    # without the data: sets, passage ids and gold answers come from the rows
    rows = [dict(r, answers=SETS["AB".index(r["set_id"])]["answers"]) for r in PREDS]
    s2 = summarize(None, rows, metrics=("bleu2", "exact_match"), n_boot=50)
    for key in ("accuracy_em", "consistency_e2e_bleu2", "consistency_generator_exact", "consistency_retriever_jaccard"):
        assert s2[key] == pytest.approx(s[key]), key
    # e2e only: no generator keys, a note instead; no passage ids -> retriever None + note
    bare = [{k: v for k, v in r.items() if k != "passage_ids"} for r in PREDS if r["level"] == "e2e"]
    s3 = summarize(None, bare, metrics=("exact_match",), n_boot=0)
    assert "consistency_generator_exact" not in s3 and "consistency_generator_note" in s3
    assert s3["consistency_retriever_jaccard"] is None and "passage ids" in s3["consistency_retriever_jaccard_note"]
    assert s3["accuracy_em"] is None and "gold" in s3["accuracy_em_note"]
    assert s3["consistency_e2e_exact_ci"] is None  # n_boot = 0


def test_embedding_consistency_matches_direct_computation():
    from grpo_sim.similarity import get_similarity

    s, per_set = summarize_with_details(SETS, PREDS, metrics=("embedding",), n_boot=20)
    emb = get_similarity("embedding")
    expected = []
    for sid in "AB":
        m = emb.matrix(E2E[sid])
        expected.append((m.sum() - np.trace(m)) / 6)
    assert [r["consistency_e2e_embedding"] for r in per_set] == pytest.approx(expected, abs=1e-9)
    assert s["consistency_generator_embedding"] == pytest.approx(
        (1.0 + np.mean([(emb.matrix(GEN["B"]).sum() - 3) / 6])) / 2, abs=1e-6
    )
    assert 0.0 <= s["consistency_e2e_embedding"] <= 1.0


def test_bootstrap_known_cases():
    assert bootstrap_ci([0.3] * 7, n_boot=500, seed=1) == pytest.approx((0.3, 0.3))
    # two values: replicate means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    lo, hi = bootstrap_ci([0.0, 1.0], n_boot=4000, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    # 400 Bernoulli(0.5) values: the interval is close to 0.5 +- 1.96 * 0.5 / 20
    vals = np.array([0.0, 1.0] * 200)
    lo, hi = bootstrap_ci(vals, n_boot=4000, seed=0)
    assert lo == pytest.approx(0.5 - 1.96 * 0.025, abs=0.008) and hi == pytest.approx(0.5 + 1.96 * 0.025, abs=0.008)
    assert bootstrap_ci(vals, n_boot=300, seed=3) == bootstrap_ci(vals, n_boot=300, seed=3)
    assert bootstrap_ci([np.nan, 0.2, 0.2], n_boot=100) == pytest.approx((0.2, 0.2))
    assert bootstrap_ci([1.0, 2.0], n_boot=0) is None


def test_paired_difference():
    a = [
        {"set_id": "s1", "k": 0.5},
        {"set_id": "s2", "k": 0.7},
        {"set_id": "s3", "k": 0.9},
        {"set_id": "only_a", "k": 0.0},
    ]
    b = {"s1": 0.4, "s2": 0.6, "s3": 0.8, "only_b": 1.0}
    d = paired_difference(a, b, "k", n_boot=200, seed=0)
    assert d["diff"] == pytest.approx(0.1) and d["ci"] == pytest.approx([0.1, 0.1]) and d["num_sets"] == 3
    d2 = paired_difference({"s1": 1.0, "s2": 0.0}, {"s1": 0.0, "s2": 0.0}, "k", n_boot=2000)
    assert d2["diff"] == 0.5 and d2["ci"] == [0.0, 1.0]
    with pytest.raises(EvalError, match="no set"):
        paired_difference({"x": 1.0}, {"y": 1.0}, "k")


def test_metric_keys():
    assert metric_key("exact_match")[0] == "exact"
    assert metric_key("bleu2") == ("bleu2", "bleu2")
    assert metric_key("e5=embedding:model=/m") == ("e5", "embedding:model=/m")
    assert metric_key("bleu:n=3")[0] == "bleu_n_3"
    s = summarize(SETS, PREDS, metrics=("b3=bleu:n=3", "exact_match"), n_boot=0)
    assert "consistency_e2e_b3" in s
    with pytest.raises(EvalError, match="both be reported"):
        summarize(SETS, PREDS, metrics=("bleu2", "bleu2"), n_boot=0)
    with pytest.raises(EvalError, match="unknown similarity"):
        summarize(SETS, PREDS, metrics=("bleu7x",), n_boot=0)


def test_bad_predictions_are_named(tmp_path):
    with pytest.raises(EvalError, match=r"row 2: missing field 'answer'"):
        check_predictions([{"set_id": "A", "paraphrase_id": 0, "answer": "x"}, {"set_id": "A", "paraphrase_id": 1}])
    with pytest.raises(EvalError, match="paraphrase_id' must be an integer"):
        check_predictions([{"set_id": "A", "paraphrase_id": "one", "answer": "x"}])
    with pytest.raises(EvalError, match="level"):
        check_predictions([{"set_id": "A", "paraphrase_id": 0, "answer": "x", "level": "e3e"}])
    with pytest.raises(EvalError, match="duplicate prediction"):
        check_predictions([{"set_id": "A", "paraphrase_id": 0, "answer": "x"}] * 2)
    path = tmp_path / "preds.jsonl"
    path.write_text('{"set_id": "A", "paraphrase_id": 0, "answer": "x"}\n\n{"set_id": "A", "answer": "y"}\n')
    with pytest.raises(EvalError, match=r"preds.jsonl: line 3: missing field 'paraphrase_id'"):
        read_predictions(path)
    path.write_text('{"set_id": "A", "paraphrase_id": 0, "answer": "x"\n')
    with pytest.raises(EvalError, match="line 1: not valid JSON"):
        read_predictions(path)
    e2e = [r for r in PREDS if r["level"] == "e2e"]
    with pytest.raises(EvalError, match=r"set 'B' paraphrase_id 2"):
        summarize(SETS, e2e[:-1], n_boot=0, metrics=("exact_match",))
    with pytest.raises(EvalError, match="'Z' is not in the data"):
        summarize(SETS, e2e + [{"set_id": "Z", "paraphrase_id": 0, "answer": "x"}], n_boot=0, metrics=("exact_match",))
    with pytest.raises(EvalError, match="has no paraphrase_id 9"):
        summarize(SETS, e2e + [{"set_id": "A", "paraphrase_id": 9, "answer": "x"}], n_boot=0, metrics=("exact_match",))
    # a set with a single wording is scored for accuracy, not consistency (docs/own-data.md; issue #22)
    one = [dict(SETS[0], set_id="solo", paraphrases=SETS[0]["paraphrases"][:1])]
    s = summarize(one, [{"set_id": "solo", "paraphrase_id": 0, "answer": "x"}], n_boot=0, metrics=("exact_match",))
    assert s["consistency_e2e_exact"] is None and s["accuracy_em"] is not None
    assert "1 of 1 sets have a single wording (e.g. 'solo')" in s["data_note"]


def test_partial_coverage_and_collapse_note():
    only_a = [r for r in PREDS if r["set_id"] == "A"]
    s = summarize(SETS, only_a, n_boot=0, metrics=("exact_match",))
    assert s["num_sets"] == 1 and "1 of 2 sets" in s["data_note"]
    empty = [dict(r, answer="") for r in PREDS]
    s = summarize(SETS, empty, n_boot=0, metrics=("exact_match",))
    assert s["empty_answer_rate"] == 1.0 and "collapse" in s["empty_answer_rate_note"]
    assert s["consistency_e2e_exact"] == 1.0 and s["accuracy_em"] == 0.0
