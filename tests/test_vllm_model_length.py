"""vLLM sized to the run (issue #24 item 4): vllm_max_model_length defaults to the longest prompt (as TRL formats
it) + max_completion_length; unset, TRL passes None and vLLM sizes for the model's whole context."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.runner.loading import vllm_model_length

from recipe_helpers import write_tiny_workspace

cli = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("vllm_len"), with_eval=False, max_steps=1)


def test_longest_prompt_plus_completion(workspace):
    from transformers import AutoTokenizer

    from grpo_sim.recipe import load_recipe
    from grpo_sim.runner.loading import load_sets, training_rows

    recipe = load_recipe(workspace / "tiny.yaml")
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.name_or_path)
    prompts = training_rows(load_sets(recipe.data.train, recipe, "train"), recipe)["prompt"]
    lengths = [
        len(tokenizer(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True))["input_ids"])
        for p in prompts
    ]
    assert vllm_model_length(tokenizer, prompts, 16) == max(lengths) + 16
    assert vllm_model_length(tokenizer, ["a b c"], 5) == len(tokenizer("a b c")["input_ids"]) + 5


def test_train_passes_the_default_to_the_trainer(workspace, tmp_path, monkeypatch):
    """The trainer (and so TRL's vLLM engine) gets vllm_max_model_length set from the data when the recipe leaves it
    unset, and the recipe's value when it sets one."""
    from grpo_sim import trainer as trainer_module

    seen = []

    class Stop(Exception):
        pass

    def capture(self, *args, **kwargs):
        seen.append(kwargs["args"].vllm_max_model_length)
        raise Stop

    monkeypatch.setattr(trainer_module.PSGRPOTrainer, "__init__", capture)
    base = ["train", str(workspace / "tiny.yaml"), "--set", "training.use_vllm=true", "--set"]
    for n, extra in enumerate(["training.max_completion_length=7", "training.vllm_max_model_length=999"]):
        result = cli.invoke(app, [*base, extra, "--output-dir", str(tmp_path / f"run{n}")])
        assert isinstance(result.exception, Stop), result.output
    assert 7 < seen[0] < 999 and seen[1] == 999
