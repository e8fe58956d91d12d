"""`grpo-sim plan` reports the vLLM settings TRL 1.16 rejects for a launch, before anything launches."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.plan import model_is_moe, plan_batches
from grpo_sim.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
PAPER_8B = ROOT / "recipes" / "llama3.1-8b" / "triviaqa_ps_grpo.yaml"  # server mode, n 6 x g 4, batch 24
runner = CliRunner()


def recipe(*overrides: str):
    return load_recipe(PAPER_8B, list(overrides))


def test_colocate_tensor_parallel_must_divide_the_processes():
    # TRL's VLLMGeneration raises "tensor_parallel_size (3) must divide world size (16) evenly"
    plan = plan_batches(recipe("training.vllm_mode=colocate", "training.vllm_tensor_parallel_size=3"), 16, 2)
    assert any("vllm_tensor_parallel_size 3 must divide the 16 training processes" in p for p in plan.problems)
    fits = plan_batches(recipe("training.vllm_mode=colocate", "training.vllm_tensor_parallel_size=4"), 16, 2)
    assert fits.problems == [] and fits.warnings == []


def test_colocate_tensor_parallel_groups_spanning_machines_are_warned_about():
    # 12 processes on 2 machines = 6 per machine; TP 4 divides 12 but makes the group of ranks 4..7 span both
    plan = plan_batches(
        recipe(
            "training.vllm_mode=colocate",
            "training.vllm_tensor_parallel_size=4",
            "training.per_device_train_batch_size=2",
        ),
        12,
        2,
    )
    assert plan.problems == []
    assert any("span machines" in w for w in plan.warnings)


def test_unknown_vllm_mode_is_a_problem():
    plan = plan_batches(recipe("training.vllm_mode=remote"), 8)
    assert any("'server' or 'colocate'" in p for p in plan.problems)


def test_server_mode_warns_about_tensor_parallel_and_local_host():
    plan = plan_batches(recipe("training.vllm_tensor_parallel_size=2"), 16, 2)
    assert plan.problems == []
    assert any("applies to colocate mode only" in w for w in plan.warnings)
    assert any("vllm_server_host is 0.0.0.0 on 2 machines" in w for w in plan.warnings)
    remote = plan_batches(recipe("training.vllm_server_host=10.0.0.9"), 16, 2)
    assert remote.warnings == []
    assert plan_batches(recipe(), 8, 1).warnings == []  # one machine: the server may well be local


def test_server_data_parallel_is_for_mixture_of_experts_only(tmp_path):
    dense, moe = tmp_path / "dense", tmp_path / "moe"
    dense.mkdir()
    moe.mkdir()
    (dense / "config.json").write_text(json.dumps({"model_type": "llama", "num_attention_heads": 32}))
    (moe / "config.json").write_text(json.dumps({"model_type": "qwen3_moe", "num_experts": 128}))
    assert (model_is_moe(str(dense)), model_is_moe(str(moe)), model_is_moe("org/unknown")) == (False, True, None)

    known_dense = plan_batches(recipe(f"model.name_or_path={dense}"), 8, vllm_data_parallel=2)
    assert any("data parallel 2" in p and "dense model" in p for p in known_dense.problems)
    assert plan_batches(recipe(f"model.name_or_path={moe}"), 8, vllm_data_parallel=2).problems == []
    hub_id = plan_batches(recipe(), 8, vllm_data_parallel=2)  # cannot be told offline: a warning, not a problem
    assert hub_id.problems == [] and any("mixture-of-experts models only" in w for w in hub_id.warnings)
    assert plan_batches(recipe(f"model.name_or_path={dense}"), 8, vllm_data_parallel=1).problems == []


def test_plan_command_prints_warnings_and_fails_on_rejected_settings():
    ok = runner.invoke(app, ["plan", str(PAPER_8B), "-p", "16", "-m", "2", "--vllm-data-parallel", "2"])
    assert ok.exit_code == 0, ok.output
    assert "warning:" in ok.output and "mixture-of-experts" in ok.output
    bad = runner.invoke(
        app,
        [
            "plan",
            str(PAPER_8B),
            "-p",
            "16",
            "--set",
            "training.vllm_mode=colocate",
            "--set",
            "training.vllm_tensor_parallel_size=3",
        ],
    )
    assert bad.exit_code == 2 and "must divide the 16 training processes" in bad.output
