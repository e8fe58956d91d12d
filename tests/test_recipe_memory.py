"""Every shipped GPU recipe fits the GPUs its ``hardware`` section names, by the memory model, with margin
(issue #24: the DDP embedding recipe and the 24 GB LoRA recipe did not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_sim.memory import SHIPPED_MARGIN, model_shape
from grpo_sim.plan import plan_batches
from grpo_sim.plan_memory import plan_memory
from grpo_sim.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.yaml") if p.parent.name not in ("_base", "sweeps")
)
GPU_RECIPES = [r for r in RECIPES if model_shape(load_recipe(ROOT / r).model.name_or_path) is not None]


def test_the_gpu_recipes_are_found():
    assert len(GPU_RECIPES) >= 9  # qwen2.5-3b x 4, llama3.1-8b x 3, semantic-reward x 2, mixed


@pytest.mark.parametrize("relative", GPU_RECIPES)
def test_shipped_recipe_fits_its_stated_gpus(relative, monkeypatch):
    monkeypatch.chdir(ROOT)  # accelerate_config paths are relative to the repository root, as in the launch lines
    recipe = load_recipe(ROOT / relative)
    hw = recipe.hardware
    assert hw.gpu and hw.gpu_memory and hw.num_processes and hw.accelerate_config, f"{relative}: no hardware section"
    header = (ROOT / relative).read_text().splitlines()[:4]
    assert any("sized for" in line.lower() for line in header), f"{relative}: the header names no GPUs"
    n = 1 if recipe.data.format == "prompts" else recipe.data.paraphrases_per_set or 6
    batches = plan_batches(recipe, hw.num_processes, paraphrases_per_set=n)
    assert batches.problems == []
    plan = plan_memory(recipe, generation_batch=batches.generation_batch)
    est = plan.estimate
    assert plan.problems == [], plan.problems
    assert est.fits(margin=SHIPPED_MARGIN), f"{relative}: {est.total / 2**30:.1f} GiB of {hw.gpu_memory}"


def test_the_old_ddp_embedding_recipe_did_not_fit(monkeypatch):
    """Issue #24 item 1: eli5_embedding.yaml under DDP (configs/accelerate/multi_gpu.yaml), as shipped before."""
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(ROOT / "recipes/semantic-reward/eli5_embedding.yaml")
    plan = plan_memory(recipe, accelerate_config="configs/accelerate/multi_gpu.yaml")
    assert plan.estimate.launch.strategy == "ddp" and plan.estimate.fits() is False
    assert any("ZeRO-2" in p for p in plan.problems)


def test_the_old_24gb_lora_recipe_left_vllm_no_kv_cache(monkeypatch):
    """Issue #24 item 2: at vllm_gpu_memory_utilization 0.3 of a 24 GB card vLLM's weights fill its reservation."""
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(
        ROOT / "recipes/qwen2.5-3b/triviaqa_lora_24gb.yaml", ["training.vllm_gpu_memory_utilization=0.3"]
    )
    plan = plan_memory(recipe)
    assert any("refuses to start" in p for p in plan.problems)


def test_llama_colocate_without_a_model_length_cannot_start(monkeypatch):
    """Issue #24 item 2: the documented colocate variant of the Llama recipes, vLLM sized for 131,072 tokens."""
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(
        ROOT / "recipes/llama3.1-8b/triviaqa_ps_grpo.yaml",
        ["training.vllm_mode=colocate", "training.vllm_max_model_length=131072"],
    )
    plan = plan_memory(recipe, num_processes=8)
    assert any("max_model_len 131072" in p for p in plan.problems)


def test_plan_prints_the_memory_table(monkeypatch):
    from typer.testing import CliRunner

    from grpo_sim.cli import app

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["plan", "recipes/qwen2.5-3b/triviaqa_lora_24gb.yaml"])
    assert result.exit_code == 0, result.output
    for expected in ("memory per training GPU", "vLLM reservation (colocate)", "total per GPU", "memory fits"):
        assert expected in result.output
    tight = CliRunner().invoke(app, ["plan", "recipes/qwen2.5-3b/triviaqa_lora_24gb.yaml", "--gpu-memory", "16GiB"])
    assert tight.exit_code != 0 and "largest terms" in tight.output
