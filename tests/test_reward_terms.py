"""Reward terms: parsing, each term's values by hand, and the trainer on ordinary (prompt, reference) data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from grpo_sim.reward_terms import legacy_reward_terms, parse_reward_terms
from grpo_sim.sampler import SetLayoutError
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer, _FunctionReward, _ReferenceReward, _SetTermPlaceholder

from trainer_helpers import build_policy, common_args, dataset, policy


def chat(text):
    return [{"role": "assistant", "content": text}]


# ------------------------------------------------------------------------------------------ parsing
def test_terms_get_defaults_and_names():
    terms = parse_reward_terms(
        [
            {"type": "consistency"},
            {"type": "reference", "similarity": "bleu2", "weight": 0.5},
            {"type": "agreement"},
            {"type": "function", "function": "reward_fns:words_from_target", "kwargs": {"target": 2}},
        ]
    )
    assert [t.name for t in terms] == ["consistency", "reference", "agreement", "words_from_target"]
    assert terms[0].similarity == "bleu2" and terms[1].similarity == "bleu2" and terms[1].weight == 0.5
    assert terms[2].ignore_empty and terms[3].kwargs == {"target": 2}
    assert [t.needs_sets for t in terms] == [True, False, True, False]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ([{"type": "consistensy"}], "rewards[0].type: must be one of consistency, reference, agreement, function"),
        ([{"type": "reference", "relaxed": {"kappa": 2}}], "rewards[0]: unknown key(s) ['relaxed'] for a reference"),
        ([{"type": "reference", "similarity": "blue2"}], "rewards[0].similarity: unknown similarity 'blue2'"),
        ([{"type": "consistency", "relaxed": {"kappa": 0}}], "rewards[0].relaxed: relaxed reward: kappa must be"),
        ([{"type": "function"}], "rewards[0].function: required"),
        ([{"type": "function", "function": "reward_fns:nope"}], "module 'reward_fns' has no attribute 'nope'"),
        ([{"type": "function", "function": "no_such_pkg.x:f"}], "cannot import module 'no_such_pkg.x'"),
        ([{"type": "function", "function": "reward_fns:NOT_CALLABLE"}], "'NOT_CALLABLE' is not callable"),
        ([{"type": "reference", "weight": float("nan")}], "rewards[0].weight: must be a finite number"),
        ([{"type": "reference"}, {"type": "reference"}], "two terms are named 'reference'"),
        ([], "the list is empty"),
    ],
)
def test_term_errors_name_the_entry_and_key(raw, expected):
    with pytest.raises(ValueError) as err:
        parse_reward_terms(raw)
    assert expected in str(err.value)


def test_shorthand_fields_become_terms():
    assert legacy_reward_terms() == [
        {"type": "consistency", "name": "consistency", "weight": 1.0, "similarity": "bleu2", "relaxed": None}
    ]
    config = PSGRPOConfig(
        output_dir="x", use_cpu=True, bf16=False, similarity="token_f1", accuracy_weight=0.5, relaxed_kappa=2
    )
    assert config.reward_terms == [
        {
            "type": "consistency",
            "name": "consistency",
            "weight": 1.0,
            "similarity": "token_f1",
            "relaxed": {"kappa": 2, "samples": 1},
        },
        {"type": "reference", "name": "accuracy", "weight": 0.5, "similarity": "token_f1", "column": None},
    ]
    with pytest.raises(ValueError, match="either as reward_terms or with the shorthand"):
        PSGRPOConfig(
            output_dir="x", use_cpu=True, bf16=False, similarity="bleu2", reward_terms=[{"type": "consistency"}]
        )


# ------------------------------------------------------------------------------------------ values by hand
def test_reference_term_scores_the_best_reference():
    # SQuAD token F1: "the cat sat" -> {cat, sat} vs {cat, sat, on}: P = 1, R = 2/3, F1 = 0.8; "dog" vs "a dog" = 1;
    # no reference -> None (TRL skips it in the weighted sum)
    term = _ReferenceReward("gold", "token_f1", "answers")
    values = term(
        completions=[chat("the cat sat"), chat("dog"), chat("x")], answers=[["cat sat on", "zebra"], "a dog", None]
    )
    assert values[0] == pytest.approx(0.8) and values[1] == 1.0 and values[2] is None
    with pytest.raises(ValueError, match="needs a 'answers' column"):
        term(completions=[chat("x")], critique=["y"])


def test_function_term_binds_kwargs_as_trl_calls_it():
    # words_from_target with target 2: "a b" -> 0, "a b c d" -> -2
    term = _FunctionReward("len", __import__("reward_fns").words_from_target, {"target": 2})
    assert term(prompts=["p", "p"], completions=[chat("a b"), chat("a b c d")], completion_ids=[[1], [2]]) == [
        0.0,
        -2.0,
    ]
    with pytest.raises(ValueError, match=r"kwargs \['target'\] clash"):
        term(completions=[chat("a")], target=[5])


def test_agreement_and_consistency_columns_by_hand(tmp_path):
    """The set terms' columns as the trainer fills them from a gathered batch (one process)."""
    from types import SimpleNamespace

    from grpo_sim.reward_terms import parse_reward_terms as parse

    # set A, paraphrases 0..2, one rollout each: "paris", "paris", "rome". Agreement: para 0 sees {paris, rome}
    # (tie: both are majority) -> 1; para 1 likewise -> 1; para 2 sees {paris: 2} -> "rome" is not it -> 0.
    # Consistency (exact match, exact reward): mean over the other paraphrases: 0 -> (1 + 0)/2, 1 -> 0.5, 2 -> 0.
    texts = ["paris", "paris", "rome"]
    terms = parse([{"type": "consistency", "similarity": "exact_match"}, {"type": "agreement"}])
    args = PSGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, reward_terms=[t.as_dict() for t in terms])
    fake = SimpleNamespace(
        args=args,
        _set_terms=list(enumerate(terms)),
        _term_metrics={},
        similarity=__import__("grpo_sim.similarity", fromlist=["get_similarity"]).get_similarity("exact_match"),
        accelerator=SimpleNamespace(num_processes=1, process_index=0),
        _reward_seed=lambda mode: (0, 0, 0),
    )
    consistency = PSGRPOTrainer._consistency_rewards(fake, texts, ["A"] * 3, [0, 1, 2], "train", 0, terms[0])
    np.testing.assert_allclose(consistency, [0.5, 0.5, 0.0])
    from grpo_sim.rewards import majority_agreement_rewards

    np.testing.assert_array_equal(majority_agreement_rewards(texts, ["A"] * 3, [0, 1, 2]), [1.0, 1.0, 0.0])
    assert _SetTermPlaceholder("agreement")(completions=texts) == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------ in the trainer
@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


def prompt_rows(n=6):
    """Ordinary (prompt, reference) rows: no set ids."""
    rows = dataset().to_list()[:n]
    return Dataset.from_list([{"prompt": r["prompt"], "answers": r["answers"]} for r in rows])


def train_once(trainer_cls, args, policy_path, data, reward_funcs=None):
    model, tokenizer = policy(policy_path)
    trainer = trainer_cls(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, reward_funcs=reward_funcs
    )
    trainer.train()
    return trainer


def test_every_term_is_logged_under_its_name(policy_path, tmp_path):
    terms = [
        {"type": "consistency", "similarity": "token_f1", "relaxed": {"kappa": 1}},
        {"type": "reference", "name": "accuracy", "similarity": "token_f1"},
        {"type": "agreement", "weight": 0.5},
        {"type": "function", "function": "reward_fns:words_from_target", "kwargs": {"target": 1}},
    ]
    args = PSGRPOConfig(**common_args(tmp_path), reward_terms=terms)
    trainer = train_once(PSGRPOTrainer, args, policy_path, dataset())
    logged = next(h for h in trainer.state.log_history if "reward" in h)
    for name in ("consistency", "accuracy", "agreement", "words_from_target"):
        assert f"rewards/{name}/mean" in logged, sorted(logged)
    assert logged["rewards/words_from_target/mean"] <= 0


def test_ordinary_prompts_train_exactly_as_trl(policy_path, tmp_path):
    """Rows without set ids, a reference and a function term: TRL's sampler, groups, advantages and loss."""
    import reward_fns

    from grpo_sim.rewards import reference_rewards

    def accuracy(completions, answers, **kwargs):
        return [float(v) for v in reference_rewards(completions, answers, "token_f1")]

    def words_from_target(completions, **kwargs):
        return reward_fns.words_from_target(completions, target=2)

    terms = [
        {"type": "reference", "name": "accuracy", "similarity": "token_f1", "weight": 1.0},
        {"type": "function", "function": "reward_fns:words_from_target", "kwargs": {"target": 2}, "weight": 0.5},
    ]
    extra = dict(shuffle_dataset=False, max_steps=2, per_device_train_batch_size=4)
    ours = train_once(
        PSGRPOTrainer,
        PSGRPOConfig(**common_args(tmp_path / "ours", **extra), reward_terms=terms, collapse_penalty=False),
        policy_path,
        prompt_rows(),
    )
    theirs = train_once(
        GRPOTrainer,
        GRPOConfig(**common_args(tmp_path / "trl", **extra), reward_weights=[1.0, 0.5]),
        policy_path,
        prompt_rows(),
        reward_funcs=[accuracy, words_from_target],
    )
    for key in ("loss", "reward", "rewards/accuracy/mean", "rewards/words_from_target/mean"):
        assert [h.get(key) for h in ours.state.log_history if "loss" in h] == [
            h.get(key) for h in theirs.state.log_history if "loss" in h
        ], key
    for (name, a), b in zip(ours.model.named_parameters(), theirs.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_set_terms_on_ordinary_prompts_are_an_error(policy_path, tmp_path):
    model, tokenizer = policy(policy_path)
    for term in ("consistency", "agreement"):
        args = PSGRPOConfig(**common_args(tmp_path), reward_terms=[{"type": term}])
        with pytest.raises(SetLayoutError, match=rf"\['{term}'\] compare the paraphrases of a set"):
            PSGRPOTrainer(model=model, args=args, train_dataset=prompt_rows(), processing_class=tokenizer)
    args = PSGRPOConfig(**common_args(tmp_path), reward_terms=[{"type": "reference", "column": "critique"}])
    with pytest.raises(SetLayoutError, match=r"missing column\(s\) \['critique'\]"):
        PSGRPOTrainer(model=model, args=args, train_dataset=prompt_rows(), processing_class=tokenizer)


def test_flat_trl_config_keys_name_their_section(tmp_path):
    import yaml

    from grpo_sim.recipe import RecipeError, load_recipe

    flat = {
        "model": {"name_or_path": "m"},
        "data": {"train": "t.jsonl"},
        "learning_rate": 2e-6,
        "model_revision": "main",
        "dataset_name": "x/y",
        "rewards": [{"type": "reference"}],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(flat))
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "r.yaml")
    text = str(err.value)
    assert "learning_rate: a GRPOConfig/TrainingArguments field at the top level: move it under training:" in text
    assert "model_revision: a model setting at the top level: move it under model:" in text
    assert "dataset_name: a data setting at the top level: use data.train (hf:NAME[:SPLIT])" in text


def test_training_reward_weights_is_a_recipe_error(tmp_path):
    """Before reward terms, `training.reward_weights: [1.0]` passed check and failed in train."""
    import yaml

    from grpo_sim.recipe import RecipeError, load_recipe

    recipe = {"model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "training": {"reward_weights": [1.0]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match=r"training.reward_weights: set it as each term's weight in rewards:"):
        load_recipe(tmp_path / "r.yaml")
