"""The evaluation after training: prompts formatted exactly as training formats them (system prompt, chat template
arguments), and ordinary (prompt, reference) rows scored against their references instead of being skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.models import CHAT_TEMPLATE, load_tokenizer
from grpo_sim.recipe import load_recipe, parse_recipe
from grpo_sim.runner import evaluate_final, load_data, run_training, training_rows

from trainer_helpers import build_policy

SYSTEM = "Answer with one word."
# the tiny policy's template plus an argument it reads: chat_template_kwargs must reach the rendering
STYLED_TEMPLATE = "{% if style is defined %}<style> {{ style }} {% endif %}" + CHAT_TEMPLATE


@pytest.fixture(scope="module")
def styled_policy(tmp_path_factory):
    base = tmp_path_factory.mktemp("styled")
    path = build_policy(base / "policy")
    tokenizer = load_tokenizer(path)
    tokenizer.chat_template = STYLED_TEMPLATE
    tokenizer.save_pretrained(path)
    return base, path


def trl_prompt_ids(tokenizer, messages, chat_template_kwargs):
    """What GRPOTrainer._tokenize_prompts gives a conversational prompt (trl 1.16)."""
    return tokenizer.apply_chat_template(
        conversation=[messages], add_generation_prompt=True, tokenize=True, return_dict=True, **chat_template_kwargs
    )["input_ids"][0]


def test_set_evaluation_prompts_are_the_training_prompts(styled_policy, tmp_path):
    """The final consistency evaluation ignored data.system_prompt and model.chat_template_kwargs."""
    _, policy = styled_policy
    _, eval_sets, _ = build_demo_dataset(1, 2, num_paraphrases=3, seed=0)
    recipe = parse_recipe(
        {
            "model": {"name_or_path": policy, "chat_template_kwargs": {"style": "terse"}},
            "data": {"train": "unused.jsonl", "system_prompt": SYSTEM},
            "evaluation": {"levels": ["e2e"], "metrics": ["exact_match"], "max_new_tokens": 2},
        }
    )
    evaluate_final(recipe, Path(policy), eval_sets, tmp_path / "eval")
    evaluated = [json.loads(line)["prompt"] for line in (tmp_path / "eval" / "predictions.jsonl").open()]

    tokenizer = load_tokenizer(policy)
    kwargs = recipe.model.chat_template_kwargs
    trained = training_rows(eval_sets, recipe)["prompt"]
    assert trained[0][0] == {"role": "system", "content": SYSTEM}
    assert evaluated == [
        tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True, **kwargs) for m in trained
    ]
    assert evaluated[0].startswith(f"<style> terse <system> {SYSTEM} <user> ")
    # and token for token what TRL feeds the policy during training (the evaluation encodes the rendered text)
    assert [tokenizer(text, add_special_tokens=False)["input_ids"] for text in evaluated] == [
        trl_prompt_ids(tokenizer, m, kwargs) for m in trained
    ]


def test_ordinary_rows_are_evaluated_after_training_against_their_references(styled_policy, tmp_path):
    """Ordinary data used to skip the evaluation (logged); now the final policy's greedy answers are scored with
    the recipe's reference similarity and the evaluation metrics, prompts formatted as in training."""
    from grpo_sim.similarity.text import normalize_answer

    base, policy = styled_policy
    train, eval_sets, _ = build_demo_dataset(6, 3, num_paraphrases=3, seed=0)
    for name, sets in (("train", train), ("eval", eval_sets)):
        with open(base / f"{name}.rows.jsonl", "w") as fh:
            for s in sets:
                fh.write(json.dumps({"question": s.question, "answer": s.answers}) + "\n")
    recipe_path = tmp_path / "rows.yaml"
    recipe_path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": policy, "chat_template_kwargs": {"style": "terse"}},
                "data": {
                    "train": str(base / "train.rows.jsonl"),
                    "eval": str(base / "eval.rows.jsonl"),
                    "columns": {"prompt": "question", "answers": "answer"},
                    "system_prompt": SYSTEM,
                },
                "rewards": [{"type": "reference", "name": "overlap", "similarity": "token_f1"}],
                "training": {
                    "learning_rate": 1e-3,
                    "num_generations": 2,
                    "per_device_train_batch_size": 6,
                    "max_completion_length": 3,
                    "max_steps": 1,
                    "save_strategy": "no",
                    "report_to": [],
                    "seed": 0,
                    "beta": 0.0,
                    "disable_tqdm": True,
                },
                "evaluation": {"metrics": ["exact_match"], "max_new_tokens": 3},
            }
        )
    )
    recipe = load_recipe(recipe_path)
    result = run_training(recipe, output_dir=tmp_path / "run", progress=False)

    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert result.evaluation is not None and summary["kind"] == "rows" and summary["num_rows"] == 3
    predictions = [json.loads(line) for line in (tmp_path / "run" / "eval" / "predictions.jsonl").open()]
    tokenizer = load_tokenizer(policy)
    rows = load_data(recipe.data.eval, recipe, "eval")
    assert [p["prompt"] for p in predictions] == [
        tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True, style="terse")
        for r in training_rows(rows, recipe).to_list()
    ]
    assert all(SYSTEM in p["prompt"] for p in predictions)
    # exact match by hand: the normalised answer equals one of the normalised references
    by_hand = [
        float(any(normalize_answer(p["answer"]) == normalize_answer(ref) for ref in p["references"]["answers"]))
        for p in predictions
    ]
    assert [p["accuracy_exact"] for p in predictions] == by_hand
    assert summary["accuracy_exact"] == pytest.approx(sum(by_hand) / 3)
    assert 0.0 <= summary["reference_overlap"] <= 1.0 and summary["reference_overlap_rows"] == 3
    assert (tmp_path / "run" / "eval" / "report.md").read_text().count("reference_overlap") == 1
    assert "## Evaluation (held-out rows)" in (tmp_path / "run" / "final" / "README.md").read_text()


def test_row_scores_are_the_best_similarity_to_the_references_by_hand():
    import math

    from grpo_sim.eval.rows import score_rows

    rows = [{"answers": ["Paris"]}, {"answers": ["a cat sat down", "dog"]}, {"answers": None}, {"answers": "x"}]
    scores = score_rows(
        ["paris", "the cat sat", "anything", ""],
        rows,
        {"f1": ("token_f1", "answers"), "em": ("exact_match", "answers")},
    )
    # "the cat sat" vs "a cat sat down": articles dropped -> {cat, sat} vs {cat, sat, down}: P 1, R 2/3, F1 0.8
    assert scores["f1"][[0, 1, 3]].tolist() == pytest.approx([1.0, 0.8, 0.0])
    assert scores["em"][[0, 1, 3]].tolist() == [1.0, 0.0, 0.0]
    assert math.isnan(scores["f1"][2]) and math.isnan(scores["em"][2])  # no reference: not scored
