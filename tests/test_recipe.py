"""Recipe loading and validation: every error path with its message, extends, --set, shipped recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grpo_sim.plan import plan_batches
from grpo_sim.recipe import RecipeError, apply_overrides, build_config, load_recipe, parse_recipe
from grpo_sim.runner import cpu_defaults

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "model": {"name_or_path": "some/model"},
    "data": {"train": "train.jsonl"},
    "reward": {"similarity": "bleu2", "accuracy": {"metric": "token_f1", "weight": 1.0}},
    "training": {"learning_rate": 1e-6, "num_generations": 4, "per_device_train_batch_size": 24},
}


def write(tmp_path, data, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def problems_of(data, tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(write(tmp_path, data))
    return str(err.value)


def test_valid_recipe_and_trainer_kwargs(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    config = build_config(cpu_defaults(recipe), tmp_path / "out")
    # the shorthand reward keys become a consistency term and an accuracy (reference) term
    assert config.reward_terms == [
        {"type": "consistency", "name": "consistency", "weight": 1.0, "similarity": "bleu2", "relaxed": None},
        {"type": "reference", "name": "accuracy", "weight": 1.0, "similarity": "token_f1", "column": None},
    ]
    assert config.advantage_mode == "paraphrase"
    assert config.learning_rate == 1e-6 and config.num_generations == 4


@pytest.mark.parametrize(
    "patch, expected",
    [
        (
            {"training": {"learning_rat": 1e-6}},
            "training.learning_rat: not a GRPOConfig/TrainingArguments field; did you mean 'learning_rate'?",
        ),
        ({"reward": {"similarty": "bleu2"}}, "reward.similarty: unknown key in reward; did you mean 'similarity'?"),
        ({"modle": {}}, "modle: unknown top-level key; did you mean 'model'?"),
        (
            {"model": {"name_or_path": "x", "lora": {"alpah": 8}}},
            "model.lora.alpah: unknown key in model.lora; did you mean 'alpha'?",
        ),
        ({"reward": {"similarity": "blue2"}}, "unknown similarity 'blue2'. Did you mean 'bleu2'?"),
        ({"reward": {"advantage": "group"}}, "reward.advantage: Input should be 'paraphrase', 'set' or 'batch'"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate: 'fast' is not a valid float"),
        ({"training": {"num_generations": 2.5}}, "training.num_generations: 2.5 is not a valid"),
        ({"training": {"similarity": "bleu2"}}, "training.similarity: set it as reward.similarity instead"),
        ({"model": {"dtype": "fp8"}}, "model.dtype: Input should be"),
        ({"data": {"train": "x", "paraphrases_per_set": 1}}, "data.paraphrases_per_set: Input should be greater than"),
    ],
)
def test_errors_name_the_key_path(tmp_path, patch, expected):
    from grpo_sim.recipe import deep_merge

    message = problems_of(deep_merge(BASE, patch), tmp_path)
    assert str(tmp_path / "recipe.yaml") in message
    assert expected in message


def test_all_problems_reported_at_once(tmp_path):
    data = dict(BASE, training={"learning_rat": 1, "bettta": 0.1}, extra=1)
    message = problems_of(data, tmp_path)
    assert "3 problem(s)" in message and "learning_rat" in message and "bettta" in message and "extra" in message


def test_missing_sections(tmp_path):
    message = problems_of({"training": {}}, tmp_path)
    assert "model: required key is missing" in message and "data: required key is missing" in message


def test_grpo_config_arithmetic_is_reported_against_the_recipe(tmp_path):
    data = dict(BASE, training={"num_generations": 5, "per_device_train_batch_size": 8})
    recipe = load_recipe(write(tmp_path, data))
    with pytest.raises(RecipeError, match=r"recipe.yaml: training settings rejected by GRPOConfig: .*divisible"):
        build_config(cpu_defaults(recipe), tmp_path / "out")


def test_extends_and_overrides(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    child = {
        "extends": "base.yaml",
        "reward": {"similarity": "rouge_l", "relaxed": {"kappa": 2}},
        "model": {"lora": {"r": 8}},
    }
    recipe = load_recipe(
        write(tmp_path, child, "child.yaml"),
        ["training.learning_rate=2e-5", "reward.accuracy=null", "training.report_to=[wandb]"],
    )
    assert recipe.reward.similarity == "rouge_l" and recipe.reward.relaxed.kappa == 2
    assert recipe.model.name_or_path == "some/model" and recipe.model.lora.r == 8
    assert recipe.training["learning_rate"] == 2e-5 and recipe.training["num_generations"] == 4
    assert recipe.training["report_to"] == ["wandb"]
    assert recipe.reward.accuracy is None
    resolved = yaml.safe_load(recipe.dump_yaml())
    assert "extends" not in resolved and resolved["reward"]["relaxed"] == {"kappa": 2, "samples": 1}


def test_extends_errors(tmp_path):
    write(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    write(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(write(tmp_path, {"extends": "nope.yaml"}, "c.yaml"))
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_override_errors():
    with pytest.raises(RecipeError, match="expected key.path=value"):
        apply_overrides({}, ["training.learning_rate"])
    with pytest.raises(RecipeError, match="not a section"):
        apply_overrides({"model": {"name_or_path": "x"}}, ["model.name_or_path.sub=1"])


def test_yaml_scientific_notation_strings_are_accepted(tmp_path):
    # PyYAML reads 1e-6 (no dot) as a string; the recipe still means a float
    path = tmp_path / "r.yaml"
    path.write_text("model: {name_or_path: m}\ndata: {train: t}\ntraining: {learning_rate: 1e-6}\n")
    recipe = load_recipe(path)
    assert build_config(cpu_defaults(recipe), tmp_path / "o").learning_rate == 1e-6


def test_every_shipped_recipe_validates():
    # _base/ holds fragments that recipes extend; sweeps/ holds sweep files (tested with the sweeps)
    recipes = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if p.parent.name not in {"_base", "sweeps"})
    assert len(recipes) >= 9, recipes
    for path in recipes:
        recipe = load_recipe(path)
        build_config(cpu_defaults(recipe), "/tmp/grpo-sim-recipe-check")
        for processes in (1, 7, 8):  # one GPU, 7 trainers + 1 vLLM GPU, a full node
            plan = plan_batches(recipe, num_processes=processes)
            assert not plan.problems, (path, processes, plan.problems)


def test_parse_recipe_source_name():
    with pytest.raises(RecipeError, match="^inline:"):
        parse_recipe({"model": {}}, source="inline")


def test_bare_yaml_no_means_the_string_no(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {name_or_path: m}\ndata: {train: t}\ntraining: {save_strategy: no, bf16: no}\n")
    recipe = load_recipe(path)
    assert recipe.training["save_strategy"] == "no" and recipe.training["bf16"] is False


def test_plan_arithmetic_and_problems(tmp_path):
    recipe = load_recipe(ROOT / "recipes" / "qwen2.5-3b" / "triviaqa_ps_grpo.yaml")
    plan = plan_batches(recipe, num_processes=7)
    rows = dict(plan.rows())
    # 24 per device x 7 processes x 4 steps per generation = 672 completions = 28 sets of 6 x 4
    assert rows["generation batch (completions)"] == "672" and rows["sets per generation batch"] == "28"
    assert rows["rollouts per vLLM call (server)"] == "672 = 168 prompts x n=4"
    assert rows["completions per optimizer step"] == "672"
    bad = load_recipe(
        ROOT / "recipes" / "qwen2.5-3b" / "triviaqa_ps_grpo.yaml",
        ["training.per_device_train_batch_size=10", "training.gradient_accumulation_steps=1"],
    )
    plan = plan_batches(bad, num_processes=3)
    assert len(plan.problems) == 1
    assert "generation batch 30" in plan.problems[0] and "nearest valid batches: 24 or 48" in plan.problems[0]
    assert "per_device_train_batch_size a multiple of 8" in plan.problems[0]
    both = load_recipe(
        ROOT / "recipes" / "demo" / "ps_grpo.yaml",
        ["training.generation_batch_size=64", "training.steps_per_generation=2"],
    )
    assert "not both" in plan_batches(both).problems[0]
    uneven = plan_batches(recipe, num_processes=7, num_machines=2)
    assert "do not split evenly" in uneven.problems[0]


def test_shipped_accelerate_configs_parse():
    from accelerate.commands.config.config_args import ClusterConfig

    configs = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
    names = {p.stem for p in configs}
    assert {"single_gpu", "multi_gpu", "zero2", "zero3", "fsdp", "multi_node", "cpu_2proc"} <= names
    for path in configs:
        config = ClusterConfig.from_yaml_file(str(path))
        assert config.num_processes >= 1


# ------------------------------------------------------------------ one source of truth: the schema's ConfigFields
def test_every_config_field_a_section_owns_is_refused_under_training_naming_its_key(tmp_path):
    """Which PSGRPOConfig fields the sections own is read off the schema (no table kept beside it)."""
    from grpo_sim.recipe import Recipe
    from grpo_sim.recipe.schema import _config_keys
    from grpo_sim.recipe.training_keys import _training_fields

    marked = list(_config_keys(Recipe))
    assert {m.name for _, m in marked} >= {"advantage_mode", "reward_terms", "model_init_kwargs"}
    for path, marker in marked:
        assert marker.name in _training_fields(), f"{path} marks {marker.name}, which PSGRPOConfig lacks"
        message = problems_of({**BASE, "training": {marker.name: None}}, tmp_path)
        expected = marker.refuse_as or f"{path} instead"
        assert f"training.{marker.name}: set it as {expected}" in message


def test_a_key_added_to_a_section_reaches_the_config_with_no_second_edit(tmp_path):
    """A new section key marked with the PSGRPOConfig field it sets is applied and refused under training:."""
    from typing import Annotated

    from pydantic import Field

    from grpo_sim.recipe import ConfigField, Recipe, RewardSettings, owned_config_fields

    class RewardWithScaling(RewardSettings):
        scaling: Annotated[str | None, ConfigField("scale_rewards")] = None

    class RecipeWithScaling(Recipe):
        reward: RewardWithScaling = Field(default_factory=RewardWithScaling)

    recipe = RecipeWithScaling.model_validate({**BASE, "reward": {"scaling": "batch"}})
    assert build_config(cpu_defaults(recipe), tmp_path / "out").scale_rewards == "batch"
    unset = RecipeWithScaling.model_validate(BASE)
    assert build_config(cpu_defaults(unset), tmp_path / "out").scale_rewards == "group"  # TRL's default stands
    assert owned_config_fields(RecipeWithScaling)["scale_rewards"] == "reward.scaling instead"
    assert "scale_rewards" not in owned_config_fields()


@pytest.mark.parametrize("rate", [0, 0.0, -1e-6])
def test_a_learning_rate_that_trains_nothing_is_refused(tmp_path, rate):
    """learning_rate: 0 was accepted (every step ran, nothing changed); negatives were already refused."""
    message = problems_of({**BASE, "training": {**BASE["training"], "learning_rate": rate}}, tmp_path)
    assert f"training.learning_rate: must be > 0, got {rate!r}" in message
