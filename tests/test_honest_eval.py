"""Evaluation that a degenerate model cannot fool: collapse figures (empty answers, one answer across
different sets) next to consistency everywhere, warnings at the named thresholds, and long-form accuracy
measured with ROUGE-L / BLEU-2 / embedding instead of EM / F1. Answers are small made-up lists checked by hand."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from grpo_sim.cli import _summary_table, app
from grpo_sim.data import write_psets
from grpo_sim.eval import evaluate_model
from grpo_sim.eval.metrics import (
    EMPTY_ANSWER_WARN_RATE,
    MODAL_ANSWER_WARN_SHARE,
    collapse_warnings,
    cross_set_modal_answer,
    summarize,
)
from grpo_sim.runner import RunResult
from grpo_sim.similarity import get_similarity

from realdata import REALDATA, needs_realdata

GOLD = ["Paris", "Rome", "Oslo", "Bern"]
# four sets of three wordings each
SETS = [
    {
        "set_id": f"s{i}",
        "question": f"capital {i}?",
        "answers": [GOLD[i]],
        "paraphrases": [{"paraphrase_id": j, "question": f"capital {i}, wording {j}?"} for j in range(3)],
    }
    for i in range(4)
]


def _preds(answers_by_set):
    return [
        {"set_id": f"s{i}", "paraphrase_id": j, "answer": a}
        for i, answers in enumerate(answers_by_set)
        for j, a in enumerate(answers)
    ]


ALL_EMPTY = _preds([["", " ", "."]] * 4)
CONSTANT = _preds([["Sinclair Lewis"] * 3, ["sinclair lewis."] * 3, ["Sinclair Lewis"] * 3, ["Bern", "x", "Bern"]])
HEALTHY = _preds([[g] * 3 for g in GOLD])


def test_cross_set_modal_answer_by_hand():
    # "the" normalises to "" like "" and "."; sets a, a, b -> the empty answer, 2 sets, 3 answers
    assert cross_set_modal_answer(["", "the", "."], ["a", "a", "b"]) == ("", 2, 3)
    assert cross_set_modal_answer(
        ["Sinclair Lewis", "sinclair lewis.", "Sinclair Lewis", "x"], ["a", "b", "c", "c"]
    ) == ("sinclair lewis", 3, 3)
    # agreement inside a set is not collapse: every set consistent with its own answer -> nothing shared
    assert cross_set_modal_answer(["paris", "paris", "rome", "rome"], ["a", "a", "b", "b"]) == (None, 0, 0)
    # "no": 3 answers in 2 sets beats "yes": 2 answers in 2 sets
    assert cross_set_modal_answer(["yes", "yes", "no", "no", "no"], list("abcdd")) == ("no", 2, 3)
    # equal counts: more sets wins, then alphabetical order
    assert cross_set_modal_answer(["d", "d", "c", "c"], ["x", "y", "z", "z"]) == ("d", 2, 2)
    assert cross_set_modal_answer(["d", "c", "d", "c"], ["x", "x", "y", "y"]) == ("c", 2, 2)
    assert cross_set_modal_answer(["same", "same"], ["only", "only"]) == (None, 0, 0)
    with pytest.raises(ValueError, match="2 answers but 1 set ids"):
        cross_set_modal_answer(["a", "b"], ["x"])


def test_degenerate_all_empty_is_flagged():
    s = summarize(SETS, ALL_EMPTY, metrics=("exact_match",), n_boot=0)
    assert s["consistency_e2e_exact"] == 1.0 and s["accuracy_em"] == 0.0  # what a consistency-only view sees
    assert s["empty_answer_rate"] == 1.0
    assert s["cross_set_modal_answer"] == "" and s["cross_set_modal_answer_sets"] == 4
    assert s["cross_set_modal_answer_share"] == 1.0 and s["cross_set_modal_answer_gold_sets"] == 0
    # one warning: the empty answer's modal warning would only repeat the empty one
    assert len(s["collapse_warnings"]) == 1 and "100% of the answers are empty" in s["collapse_warnings"][0]


def test_one_constant_answer_is_flagged():
    s = summarize(SETS, CONSTANT, metrics=("exact_match",), n_boot=0)
    # exact-match consistency: sets 0-2 agree fully (1), set 3 "bern","x","bern": 2 of 6 ordered pairs
    assert s["consistency_e2e_exact"] == pytest.approx((3 + 1 / 3) / 4)
    assert s["accuracy_em"] == pytest.approx((0 + 0 + 0 + 2 / 3) / 4)
    assert s["empty_answer_rate"] == 0.0
    assert s["cross_set_modal_answer"] == "sinclair lewis" and s["cross_set_modal_answer_sets"] == 3
    assert s["cross_set_modal_answer_share"] == pytest.approx(9 / 12)  # equal-sized sets: share of all answers
    assert s["cross_set_modal_answer_gold_sets"] == 0
    (warning,) = s["collapse_warnings"]
    assert "75% of the answers are the answer 'sinclair lewis', given in 3 different sets" in warning
    assert "gold answer of none of them" in warning


def test_healthy_answers_raise_no_warning_even_with_shared_gold():
    s = summarize(SETS, HEALTHY, metrics=("exact_match",), n_boot=0)
    assert s["consistency_e2e_exact"] == 1.0 and s["accuracy_em"] == 1.0
    assert s["empty_answer_rate"] == 0.0 and s["cross_set_modal_answer_share"] == 0.0
    assert s["cross_set_modal_answer"] is None and s["collapse_warnings"] == []
    # two yes/no questions whose gold is "yes": a shared answer, but the right one in every set giving it
    yes_sets = [dict(x, answers=["yes"]) if x["set_id"] in ("s0", "s1") else x for x in SETS]
    yes_preds = _preds([["yes"] * 3, ["Yes."] * 3, ["Oslo"] * 3, ["Bern"] * 3])
    s = summarize(yes_sets, yes_preds, metrics=("exact_match",), n_boot=0)
    assert s["cross_set_modal_answer_share"] == 0.5 and s["cross_set_modal_answer_gold_sets"] == 2
    assert s["collapse_warnings"] == []


def test_warning_thresholds_are_the_named_constants():
    assert EMPTY_ANSWER_WARN_RATE == 0.2 and MODAL_ANSWER_WARN_SHARE == 0.3
    assert collapse_warnings({"empty_answer_rate": 0.2})
    assert not collapse_warnings({"empty_answer_rate": 0.19})
    base = {"cross_set_modal_answer": "oslo", "cross_set_modal_answer_sets": 2}
    assert collapse_warnings(dict(base, cross_set_modal_answer_share=0.3), who="baseline")[0].startswith("baseline: ")
    assert not collapse_warnings(dict(base, cross_set_modal_answer_share=0.29))
    assert collapse_warnings({}) == []  # an old summary without the figures


def test_report_eval_output_and_summary_show_figures_and_warning(tmp_path):
    data = tmp_path / "data.jsonl"
    write_psets(data, SETS)
    base_dir = tmp_path / "base"
    evaluate_model(
        None,
        str(data),
        output_dir=base_dir,
        predictions=HEALTHY,
        levels=("e2e",),
        metrics=("exact_match",),
        n_boot=50,
        plots=False,
        name="healthy",
    )
    result = evaluate_model(
        None,
        str(data),
        output_dir=tmp_path / "after",
        predictions=CONSTANT,
        levels=("e2e",),
        metrics=("exact_match",),
        n_boot=50,
        plots=False,
        baseline=str(base_dir),
        name="after",
    )
    summary = json.loads((tmp_path / "after" / "summary.json").read_text())
    for who in ("model", "baseline"):
        assert {"cross_set_modal_answer_share", "empty_answer_rate"} <= set(summary["models"][who])
    assert summary["cross_set_modal_answer_share"] == pytest.approx(0.75) and summary["collapse_warnings"]
    diff = summary["comparison"]["differences"]["cross_set_modal_answer_share"]
    assert diff["diff"] == pytest.approx(0.75)
    report = (tmp_path / "after" / "report.md").read_text()
    assert "## Warning: possible collapse" in report
    assert "model: 75% of the answers are the answer 'sinclair lewis'" in report
    assert "comparison: the model's consistency differences" in report
    assert report.index("## Consistency") < report.index("## Collapse figures") < report.index("## Notes")
    assert "| one answer across different sets (share) | 0.750" in report
    assert "most common answer across different sets: 'sinclair lewis', given in 3 sets" in report
    healthy_report = (base_dir / "report.md").read_text()
    assert "Warning" not in healthy_report and "| empty answers (share) | 0.000" in healthy_report

    preds = tmp_path / "constant.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in CONSTANT))
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--replay",
            str(preds),
            str(data),
            "-o",
            str(tmp_path / "cli"),
            "--metrics",
            "exact_match",
            "--levels",
            "e2e",
            "--n-boot",
            "20",
            "--no-plots",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "one answer across different sets" in r.output and "empty answers (share)" in r.output
    assert "warning: model: 75% of the answers are the answer 'sinclair lewis'" in " ".join(r.output.split())
    assert result["collapse_warnings"] == summary["collapse_warnings"]


def _table_text(result):
    console = Console(record=True, width=400)
    console.print(_summary_table(result))
    return console.export_text()


def test_end_of_train_summary_table_shows_figures_and_warning(tmp_path):
    data = tmp_path / "data.jsonl"
    write_psets(data, SETS)
    run = tmp_path / "run"

    def run_result(preds):
        evaluation = evaluate_model(
            None,
            str(data),
            output_dir=run / "eval",
            predictions=preds,
            levels=("e2e",),
            metrics=("exact_match", "bleu2"),
            n_boot=20,
            plots=False,
        )
        return RunResult(
            output_dir=run,
            final_model=run / "final",
            global_step=3,
            seconds=1.0,
            last_metrics={"reward": 0.5},
            evaluation=evaluation,
        )

    text = _table_text(run_result(ALL_EMPTY))
    assert "eval consistency_e2e_exact" in text and "eval empty_answer_rate" in text
    assert "eval cross_set_modal_answer_share" in text
    assert text.index("eval consistency_e2e_bleu2") < text.index("eval empty_answer_rate")
    assert "WARNING" in text and "100% of the answers are empty" in text
    text = _table_text(run_result(CONSTANT))
    assert "WARNING" in text and "'sinclair lewis'" in text and "0.7500" in text
    text = _table_text(run_result(HEALTHY))
    assert "WARNING" not in text and "eval cross_set_modal_answer_share" in text


LONG_GOLD = [
    "Because the air molecules scatter blue light much more strongly than red light, the sky looks blue.",
    "Your stomach muscles contract and push the food along while acids break it into small pieces.",
]


def test_long_form_reports_rouge_bleu_embedding_not_em_f1():
    sets = [
        {
            "set_id": f"l{i}",
            "question": f"why {i}?",
            "answers": [g, "Short other reference text here ok."],
            "paraphrases": [{"paraphrase_id": j, "question": f"why {i}, wording {j}?"} for j in range(2)],
        }
        for i, g in enumerate(LONG_GOLD)
    ]
    # set l0 repeats its first reference word for word; set l1 shares no word with either reference
    preds = _preds([[LONG_GOLD[0]] * 2, ["zebra quantum violin", "zebra quantum violin"]])
    s = summarize(
        sets, [dict(p, set_id=p["set_id"].replace("s", "l")) for p in preds], metrics=("bleu2", "embedding"), n_boot=0
    )
    assert s["answer_form"] == "long"
    assert "accuracy_em" not in s and "accuracy_f1" not in s
    assert s["accuracy_rouge_l"] == pytest.approx(0.5) and s["accuracy_bleu2"] == pytest.approx(0.5)
    emb = get_similarity("embedding")
    unrelated = max(
        emb.paired(emb.encode(["zebra quantum violin"]), emb.encode([ref]))[0] for ref in sets[1]["answers"]
    )
    assert s["accuracy_embedding"] == pytest.approx((1.0 + max(0.0, unrelated)) / 2, abs=1e-6)
    assert "EM and token F1 do not fit long answers" in s["accuracy_note"]
    # without an embedding metric there is no embedding accuracy, and the note says how to get it
    s = summarize(sets, [dict(p, set_id=p["set_id"].replace("s", "l")) for p in preds], metrics=("bleu2",), n_boot=0)
    assert "accuracy_embedding" not in s and "add 'embedding'" in s["accuracy_note"]


@needs_realdata
def test_real_eli5_is_scored_as_long_form(tmp_path):
    from grpo_sim.data.importers import import_eli5

    sets = import_eli5(REALDATA / "eli5_category_test.sample.json")
    rows = []
    for s in sets:
        second = s.paraphrases[0].model_copy(update={"paraphrase_id": 1, "question": "Explain: " + s.question})
        s.paraphrases.append(second)
        rows += [{"set_id": s.set_id, "paraphrase_id": p, "answer": s.answers[0]} for p in (0, 1)]
    result = evaluate_model(
        None,
        sets,
        output_dir=tmp_path,
        predictions=rows,
        levels=("e2e",),
        metrics=("bleu2", "rouge_l"),
        n_boot=0,
        plots=False,
    )
    assert result["answer_form"] == "long" and "accuracy_em" not in result and "accuracy_f1" not in result
    assert result["accuracy_rouge_l"] == pytest.approx(1.0) and result["accuracy_bleu2"] == pytest.approx(1.0)
    report = (tmp_path / "report.md").read_text()
    assert "exact match" not in report and "accuracy: BLEU-2 to the references" in report
