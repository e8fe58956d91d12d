"""A flat TRL / open-r1 GRPO config carried over (trl_config: FILE), TRL-style flags, and hf: data sources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import psets_to_hf
from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.recipe import RecipeError, build_config, load_recipe

from recipe_helpers import config_only_model
from trainer_helpers import build_policy

#: an open-r1 recipe (recipes/Qwen2.5-1.5B-Instruct/grpo/config_demo.yaml) with a dotted-path reward function
OPEN_R1 = """
model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct
model_revision: main
torch_dtype: bfloat16
attn_implementation: sdpa
dataset_name: open-r1/OpenR1-Math-220k
dataset_prompt_column: problem
system_prompt: "You are a helpful AI Assistant."
bf16: false
use_vllm: false
do_eval: false
gradient_accumulation_steps: 4
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: false
learning_rate: 2.0e-05
log_completions: true
logging_steps: 1
lr_scheduler_type: cosine
max_completion_length: 1024
max_steps: -1
num_generations: 16
num_train_epochs: 1
output_dir: data/Qwen2.5-1.5B-Open-R1-GRPO
per_device_train_batch_size: 16
report_to: [wandb]
reward_funcs: ["reward_fns:words_from_target"]
reward_weights: [0.5]
save_strategy: epoch
seed: 42
temperature: 0.7
warmup_ratio: 0.1
use_peft: true
lora_r: 8
lora_alpha: 16
"""


def write(path: Path, text_or_data) -> Path:
    path.write_text(text_or_data if isinstance(text_or_data, str) else yaml.safe_dump(text_or_data))
    return path


def test_open_r1_config_maps_into_the_sections(tmp_path):
    write(tmp_path / "grpo.yaml", OPEN_R1)
    write(tmp_path / "recipe.yaml", {"trl_config": "grpo.yaml", "training": {"learning_rate": 1e-6}})
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.model.name_or_path == "Qwen/Qwen2.5-1.5B-Instruct" and recipe.model.revision == "main"
    assert recipe.model.dtype == "bfloat16" and recipe.model.attn_implementation == "sdpa"
    assert recipe.model.lora is not None and (recipe.model.lora.r, recipe.model.lora.alpha) == (8, 16)
    assert recipe.data.train == "hf:open-r1/OpenR1-Math-220k" and recipe.data.columns == {"prompt": "problem"}
    assert recipe.data.system_prompt == "You are a helpful AI Assistant."
    assert recipe.output_dir == "data/Qwen2.5-1.5B-Open-R1-GRPO"
    assert recipe.reward_terms() == [{"type": "function", "function": "reward_fns:words_from_target", "weight": 0.5}]
    t = recipe.training
    assert t["learning_rate"] == 1e-6  # the recipe's own key wins over the TRL config
    assert (t["num_generations"], t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (16, 16, 4)
    assert t["gradient_checkpointing_kwargs"] == {"use_reentrant": False} and t["report_to"] == ["wandb"]
    config = build_config(recipe, tmp_path / "out")  # warmup_ratio: transformers 5's fractional warmup_steps
    assert (config.warmup_steps, config.temperature, config.seed, config.log_completions) == (0.1, 0.7, 42, True)


def test_trl_config_problems_name_the_file_and_key(tmp_path):
    registry = OPEN_R1.replace('["reward_fns:words_from_target"]', "[accuracy, format]").replace("[0.5]", "[1, 1]")
    write(tmp_path / "grpo.yaml", registry + "wandb_entity: me\n")
    write(tmp_path / "recipe.yaml", {"trl_config": "grpo.yaml"})
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "recipe.yaml")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'grpo.yaml'}: 2 problem(s)")
    assert "reward_funcs: ['accuracy', 'format'] are registry names" in text and "rewards: list" in text
    assert "wandb_entity: not a GRPOConfig, ScriptArguments or ModelConfig key" in text
    # a rewards: list in the recipe replaces reward_funcs
    write(tmp_path / "grpo.yaml", registry)
    write(tmp_path / "recipe.yaml", {"trl_config": "grpo.yaml", "rewards": [{"type": "reference"}]})
    assert load_recipe(tmp_path / "recipe.yaml").reward_terms() == [{"type": "reference"}]
    write(tmp_path / "recipe.yaml", {"trl_config": "missing.yaml"})
    with pytest.raises(RecipeError, match="trl_config 'missing.yaml', but .* does not exist"):
        load_recipe(tmp_path / "recipe.yaml")


def test_trl_style_flags_act_as_set(tmp_path):
    model = config_only_model(tmp_path / "m")  # check looks for the model: a local directory, not loaded
    write(
        tmp_path / "recipe.yaml",
        {"model": {"name_or_path": model}, "data": {"train": "t.jsonl"}, "rewards": [{"type": "reference"}]},
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "check",
            str(tmp_path / "recipe.yaml"),
            "--no-data",
            "--learning_rate",
            "2e-6",
            "--model_revision=v1",
            "--bf16",
        ],
    )
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout.split(f"{tmp_path / 'recipe.yaml'}: valid")[0])
    assert resolved["training"]["learning_rate"] == 2e-6 and resolved["training"]["bf16"] is True
    assert resolved["model"]["revision"] == "v1"
    result = runner.invoke(
        app,
        [
            "plan",
            str(tmp_path / "recipe.yaml"),
            "-n",
            "1",
            "--num_generations",
            "4",
            "--per_device_train_batch_size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"num_generations\)\s*│\s*4\s*│", result.stdout), result.stdout
    result = runner.invoke(app, ["check", str(tmp_path / "recipe.yaml"), "--no-data", "--learnin_rate", "1", "stray"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "No such option: --learnin_rate" in result.output and "did you mean --learning_rate?" in result.output
    assert "'stray': unexpected argument" in result.output
    assert "--set training.learning_rate=2e-6" in result.output


# ----------------------------------------------------------------------------------------- hf: loading
@pytest.fixture(scope="module")
def psets_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf-sets")
    train, _, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    dataset = psets_to_hf(train)
    assert isinstance(dataset[0]["metadata"], str)  # the stored form the loader must read
    dataset.save_to_disk(str(base / "sets"))
    return base, dataset, build_policy(base / "policy")


TINY = [
    "training.use_vllm=false",
    "training.gradient_checkpointing=false",
    "training.report_to=[]",
    "training.max_steps=1",
    "training.num_generations=2",
    "training.per_device_train_batch_size=6",
    "training.max_completion_length=4",
    "training.save_strategy=no",
    "training.disable_tqdm=true",
    "model.dtype=float32",
    "evaluation.enabled=false",
    "data.paraphrases_per_set=3",
]


def _recipe(tmp_path: Path, train: str, policy: Path) -> list[str]:
    write(
        tmp_path / "r.yaml",
        {
            "model": {"name_or_path": str(policy)},
            "data": {"train": train},
            "rewards": [{"type": "consistency", "similarity": "token_f1"}],
        },
    )
    return [str(tmp_path / "r.yaml"), *[a for item in TINY for a in ("--set", item)]]


def test_hf_save_to_disk_dir_of_psets_checks_and_trains(psets_dir, tmp_path):
    base, _, policy = psets_dir
    args = _recipe(tmp_path, f"hf:{base / 'sets'}", policy)
    result = CliRunner().invoke(app, ["check", *args])
    assert result.exit_code == 0, result.output
    assert "6 training sets x 3 paraphrases" in result.output
    result = CliRunner().invoke(app, ["train", *args, "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/consistency/mean" in r for r in rows)


def test_hf_hub_name_and_split_reads_load_dataset(psets_dir, tmp_path, monkeypatch):
    import datasets

    _, dataset, policy = psets_dir
    calls = []

    def load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return dataset

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    result = CliRunner().invoke(app, ["check", *_recipe(tmp_path, "hf:someone/psets:validation", policy)])
    assert result.exit_code == 0, result.output
    assert calls and calls[0] == ("someone/psets", None, "validation")
    assert "6 training sets x 3 paraphrases" in result.output


def test_open_r1_style_config_trains_on_a_dataset_without_sets(psets_dir, tmp_path):
    """A TRL user's flat config, reward function and (prompt, reference) dataset: one CPU step from YAML."""
    from datasets import Dataset

    from grpo_sim.models import make_tiny_policy

    rows = [{"problem": f"what is {k} plus {k}?", "solution": [str(2 * k)]} for k in range(4)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "math"))
    # a policy that can read these prompts (training refuses one whose tokenizer maps them to <unk>)
    texts = ["Answer briefly."] + [r["problem"] for r in rows] + [a for r in rows for a in r["solution"]]
    make_tiny_policy(tmp_path / "policy", texts, seed=0, hidden_size=32, num_layers=1, num_heads=2)
    policy = tmp_path / "policy"
    flat = {
        "model_name_or_path": str(policy),
        "torch_dtype": "float32",
        "dataset_name": str(tmp_path / "math"),
        "dataset_prompt_column": "problem",
        "system_prompt": "Answer briefly.",
        "learning_rate": 1e-5,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_completion_length": 4,
        "max_steps": 1,
        "use_vllm": False,
        "report_to": [],
        "save_strategy": "no",
        "disable_tqdm": True,
        "logging_steps": 1,
        "reward_funcs": ["reward_fns:words_from_target"],
        "reward_weights": [1.0],
    }
    write(tmp_path / "grpo.yaml", flat)
    write(
        tmp_path / "recipe.yaml",
        {"trl_config": "grpo.yaml", "data": {"columns": {"answers": "solution"}}, "evaluation": {"enabled": False}},
    )
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "recipe.yaml"), "-o", str(tmp_path / "run"), "--gradient_checkpointing", "false"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("rewards/words_from_target/mean") is not None for r in rows), rows


def test_plan_reads_the_batch_trl_derives_for_the_launch(tmp_path):
    """plan's steps_per_generation / generation batch are GRPOConfig.__post_init__'s for a launch of P processes."""
    from grpo_sim.plan import launch_batch_config, plan_batches
    from grpo_sim.trainer import PSGRPOConfig

    write(
        tmp_path / "r.yaml",
        {
            "model": {"name_or_path": "m"},
            "data": {"train": "t.jsonl", "paraphrases_per_set": 2},
            "rewards": [{"type": "consistency"}],
            "training": {"gradient_accumulation_steps": 3},
        },
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    config = launch_batch_config(recipe, 5)
    assert isinstance(config, PSGRPOConfig) and config.world_size == 5
    default_batch = PSGRPOConfig(output_dir=str(tmp_path), bf16=False).per_device_train_batch_size
    assert (config.steps_per_generation, config.generation_batch_size) == (3, default_batch * 5 * 3)
    plan = plan_batches(recipe, num_processes=5)
    assert (plan.per_device_batch, plan.steps_per_generation, plan.generation_batch) == (
        default_batch,
        3,
        config.generation_batch_size,
    )


def test_demo_data_defaults_have_one_source():
    """The recipe schema's data.demo defaults were 400/100 sets while grpo-sim demo used 600/200."""
    from grpo_sim.demo import DEMO_DATA_SETTINGS
    from grpo_sim.demo.settings import DemoDataSettings

    assert DEMO_DATA_SETTINGS == DemoDataSettings().model_dump(exclude={"seed"})
    assert (DEMO_DATA_SETTINGS["num_train_sets"], DEMO_DATA_SETTINGS["num_eval_sets"]) == (600, 200)
