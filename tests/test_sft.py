"""``grpo-sim sft``: a supervised warm start on the recipe's data that ``grpo-sim train`` takes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import Paraphrase, ParaphraseSet, Passage, build_rag_prompt, write_psets
from grpo_sim.recipe import RecipeError, load_recipe
from grpo_sim.runner import COMPLETE_MARKER
from grpo_sim.sft import sft_config, sft_rows

runner = CliRunner()
pytestmark = pytest.mark.slow


def sets(n_sets: int = 4, with_answers: bool = True) -> list[ParaphraseSet]:
    names = ["Ada", "Bert", "Cleo", "Dirk", "Emil", "Fay"]
    out = []
    for i in range(n_sets):
        who, city = names[i % 6], names[(i + 3) % 6] + "burg"
        passage = Passage(id=f"p{i}", title=who, text=f"{who} was born in {city} .")
        out.append(
            ParaphraseSet(
                set_id=f"s{i}",
                question=f"Where was {who} born ?",
                answers=[city] if with_answers else [],
                paraphrases=[
                    Paraphrase(paraphrase_id=0, question=f"Where was {who} born ?", passages=[passage]),
                    Paraphrase(paraphrase_id=1, question=f"What is the birthplace of {who} ?", passages=[passage]),
                ],
            )
        )
    return out


def test_sft_rows_are_the_grpo_prompts_with_the_first_gold_answer():
    data = sets(2) + sets(1, with_answers=False)
    data[0].answers.append("an alias")
    rows, skipped = sft_rows(data, "rag_short_answer")
    assert skipped == 1 and len(rows) == 4
    first = data[0].paraphrases[1]
    assert rows[1] == {
        "prompt": [{"role": "user", "content": build_rag_prompt(first.question, first.passages)}],
        "completion": [{"role": "assistant", "content": "Dirkburg"}],
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("sft")
    write_psets(base / "train.jsonl", sets(4))
    write_psets(base / "eval.jsonl", sets(6)[4:])
    result = runner.invoke(
        app,
        [
            "model",
            "init",
            "--data",
            str(base / "train.jsonl"),
            "--data",
            str(base / "eval.jsonl"),
            "--out",
            str(base / "init"),
            "--hidden-size",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
            "--max-completion-length",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    recipe = {
        "model": {"name_or_path": str(base / "sft" / "final")},
        "data": {"train": str(base / "train.jsonl"), "eval": str(base / "eval.jsonl")},
        "reward": {"similarity": "token_f1", "accuracy": {"metric": "token_f1", "weight": 1.0}},
        "sft": {
            "model": str(base / "init"),
            "output_dir": str(base / "sft"),
            "max_steps": 4,
            "batch_size": 4,
            "save_steps": 2,
            "logging_steps": 1,
            "learning_rate": 0.01,
            "args": {"lr_scheduler_type": "constant", "disable_tqdm": True},
        },
        "training": {
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 3,
            "max_steps": 1,
            "report_to": [],
            "disable_tqdm": True,
            "save_strategy": "no",
        },
        "evaluation": {"max_new_tokens": 3, "metrics": ["exact_match"], "levels": ["e2e"]},
    }
    (base / "r.yaml").write_text(yaml.safe_dump(recipe))
    return base


def test_sft_writes_a_model_that_train_takes_and_resumes_bit_identically(workspace, tmp_path):
    result = runner.invoke(app, ["sft", str(workspace / "r.yaml")])
    assert result.exit_code == 0, result.output
    run = workspace / "sft"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert (run / "checkpoint-2" / COMPLETE_MARKER).exists() and (run / "final" / "model.safetensors").exists()
    assert (run / "eval" / "summary.json").exists() and "empty_answer_rate" in (run / "final" / "README.md").read_text()
    for card in (run / "README.md", run / "final" / "README.md"):  # grpo-sim's card, not TRL's stock one
        text = card.read_text()
        assert "[None]" not in text and "https://github.com/)" not in text and "schema_version" not in text
        assert str(workspace / "init") in text and "train.jsonl" in text
    before = load_file(str(workspace / "init" / "model.safetensors"))
    after = load_file(str(run / "final" / "model.safetensors"))
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    # a non-empty run directory is refused, as for train
    again = runner.invoke(app, ["sft", str(workspace / "r.yaml")])
    assert again.exit_code == 2 and "--resume auto" in again.output
    # resume from checkpoint-2 in a fresh directory: the same final weights
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(run / "checkpoint-2", part / "checkpoint-2")
    shutil.copy(run / "recipe.resolved.yaml", part / "recipe.resolved.yaml")
    resumed = runner.invoke(app, ["sft", str(workspace / "r.yaml"), "-o", str(part), "--resume", "auto"])
    assert resumed.exit_code == 0, resumed.output
    resumed_weights = load_file(str(part / "final" / "model.safetensors"))
    assert all(torch.equal(after[k], resumed_weights[k]) for k in after)
    # grpo-sim train starts from the warm start (model.name_or_path: sft/final)
    trained = runner.invoke(app, ["train", str(workspace / "r.yaml"), "-o", str(tmp_path / "grpo")])
    assert trained.exit_code == 0, trained.output
    card = (tmp_path / "grpo" / "README.md").read_text()
    assert "[None]" not in card and str(run / "final") in card


def test_sft_settings_are_checked(workspace, tmp_path):
    with pytest.raises(RecipeError, match="sft.epochs"):
        load_recipe(workspace / "r.yaml", ["sft.epochs=0"])
    with pytest.raises(RecipeError, match="sft.learning_rat: unknown key.*did you mean 'learning_rate'"):
        load_recipe(workspace / "r.yaml", ["sft.learning_rat=1"])
    with pytest.raises(RecipeError, match="rejected by trl.SFTConfig"):
        sft_config(load_recipe(workspace / "r.yaml", ["sft.args.no_such_field=1"]), tmp_path)
    short = runner.invoke(
        app, ["sft", str(workspace / "r.yaml"), "-o", str(tmp_path / "s"), "--set", f"sft.model={workspace / 'short'}"]
    )
    assert short.exit_code != 0
    # a model whose positions do not cover the prompts is refused before training, with the fix
    runner.invoke(
        app,
        [
            "model",
            "init",
            "--data",
            str(workspace / "train.jsonl"),
            "--out",
            str(workspace / "short"),
            "--hidden-size",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
        ],
    )
    config = json.loads((workspace / "short" / "config.json").read_text())
    config["max_position_embeddings"] = 8
    (workspace / "short" / "config.json").write_text(json.dumps(config))
    refused = runner.invoke(
        app, ["sft", str(workspace / "r.yaml"), "-o", str(tmp_path / "s2"), "--set", f"sft.model={workspace / 'short'}"]
    )
    assert refused.exit_code == 2 and "max_position_embeddings 8" in refused.output
    assert "grpo-sim model init" in refused.output and not Path(tmp_path / "s2" / "final").exists()


def test_model_card_has_no_placeholder_link_nor_bookkeeping_keys(workspace):
    from grpo_sim.runner import RunResult, model_card

    recipe = load_recipe(workspace / "r.yaml")
    evaluation = {
        "schema_version": 2,
        "num_sets": 5,
        "accuracy_em": 0.25,
        "empty_answer_rate": 0.7,
        "cross_set_modal_answer_share": 0.7,
        "cross_set_modal_answer": "",
        "collapse_warnings": [],
    }
    card = model_card(
        recipe,
        RunResult(workspace / "run", None, 3, 1.0, evaluation=evaluation),
        {"train_sets": 4, "paraphrases_per_set": 2},
    )
    assert "](https://github.com/)" not in card and "schema_version" not in card
    assert "| num_sets | 5 |" in card and "| accuracy_em | 0.2500 |" in card
    assert "**Warning:**" in card and "empty" in card
