"""check and train refuse a launch that cannot fit its GPUs (grpo_sim.plan_memory.check_memory_fits, one of the
start checks): one message naming the largest terms and the fix, before anything is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from grpo_sim.cli import app

from recipe_helpers import write_tiny_workspace

cli = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("memcheck"), with_eval=False, max_steps=1)


def test_check_refuses_a_launch_over_the_gpu_memory(workspace):
    result = cli.invoke(app, ["check", str(workspace / "tiny.yaml"), "--gpu-memory", "64MiB"])
    assert result.exit_code != 0
    assert "memory:" in result.output and "largest terms:" in result.output and "Fix:" in result.output
    assert "Traceback" not in result.output
    fits = cli.invoke(app, ["check", str(workspace / "tiny.yaml"), "--gpu-memory", "80GiB"])
    assert fits.exit_code == 0, fits.output
    bad = cli.invoke(app, ["check", str(workspace / "tiny.yaml"), "--gpu-memory", "eighty"])
    assert bad.exit_code != 0 and "--gpu-memory: 'eighty' is not a memory size" in bad.output
    assert "Traceback" not in bad.output


def test_check_sizes_the_strategy_of_the_accelerate_config(workspace, monkeypatch):
    """The same launch on 2 GPUs: DDP keeps 20 B/param per GPU, ZeRO-3 shards it; a GPU between the two fits one."""
    from pathlib import Path

    from grpo_sim.plan_memory import longest_prompt_tokens, plan_memory, read_prompt_tokens
    from grpo_sim.recipe import load_recipe

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    recipe = load_recipe(workspace / "tiny.yaml")
    assert longest_prompt_tokens([]) is None and read_prompt_tokens(recipe) > 32
    configs = {"ddp": "configs/accelerate/multi_gpu.yaml", "zero3": "configs/accelerate/zero3.yaml"}
    totals = {
        k: plan_memory(recipe, 2, c, "80GiB", read_prompt_tokens(recipe)).estimate.total for k, c in configs.items()
    }
    assert totals["ddp"] > totals["zero3"]
    between = str((totals["ddp"] + totals["zero3"]) // 2)  # bytes
    args = ["check", str(workspace / "tiny.yaml"), "-p", "2", "--gpu-memory", between, "--accelerate-config"]
    ddp = cli.invoke(app, [*args, configs["ddp"]])
    zero3 = cli.invoke(app, [*args, configs["zero3"]])
    assert ddp.exit_code != 0 and "under ddp on 2 GPU(s)" in ddp.output
    assert zero3.exit_code == 0, zero3.output


def test_train_on_a_gpu_too_small_stops_before_writing(workspace, tmp_path, monkeypatch):
    """train measures its own GPU (torch.cuda): stand in a 64 MiB one."""
    import grpo_sim.plan_memory as plan_memory

    monkeypatch.setattr(plan_memory, "cuda_memory", lambda: 64 * 2**20)
    out = tmp_path / "run"
    result = cli.invoke(app, ["train", str(workspace / "tiny.yaml"), "--output-dir", str(out)])
    assert result.exit_code != 0
    assert "memory:" in result.output and "largest terms:" in result.output
    assert not out.exists()


def test_check_on_a_gpu_machine_sizes_its_gpu(workspace, monkeypatch):
    import grpo_sim.plan_memory as plan_memory

    monkeypatch.setattr(plan_memory, "cuda_memory", lambda: 64 * 2**20)
    result = cli.invoke(app, ["check", str(workspace / "tiny.yaml")])
    assert result.exit_code != 0 and "memory:" in result.output


def test_prompt_tokens_follow_the_recipe_template(workspace):
    """A longer prompt template makes longer prompts: the estimate formats the sets as training does."""
    from grpo_sim.plan_memory import longest_prompt_tokens
    from grpo_sim.recipe import load_recipe
    from grpo_sim.runner.loading import load_sets

    recipe = load_recipe(workspace / "tiny.yaml")
    sets = load_sets(recipe.data.train, recipe, "train")
    short = longest_prompt_tokens(sets, "{question}")
    long = longest_prompt_tokens(sets, "rag_short_answer")
    assert short < long
    assert longest_prompt_tokens(sets, "{question}", "x" * 300) == short + 100  # the system prompt counts too
