"""recipes/demo/*.yaml must describe exactly the arms `grpo-sim demo` trains."""

from __future__ import annotations

from pathlib import Path

from grpo_sim.demo import ARM_REWARDS, DEMO_DATA_SETTINGS, DEMO_GRPO_SETTINGS, grpo_config_kwargs
from grpo_sim.recipe import build_config, load_recipe
from grpo_sim.runner import cpu_defaults
from grpo_sim.trainer import PSGRPOConfig

ROOT = Path(__file__).resolve().parents[1]


def test_demo_recipes_match_the_demo_settings():
    for recipe_name, arm in (("ps_grpo", "ps_grpo"), ("grpo_accuracy_only", "accuracy_only")):
        recipe = load_recipe(ROOT / "recipes" / "demo" / f"{recipe_name}.yaml")
        n = recipe.data.source_options["num_paraphrases"]
        expected = PSGRPOConfig(**grpo_config_kwargs(DEMO_GRPO_SETTINGS, n, arm, "out"))
        ours = build_config(cpu_defaults(recipe), "out")
        for key in ("learning_rate", "lr_scheduler_type", "num_generations", "per_device_train_batch_size",
                    "max_completion_length", "temperature", "beta", "loss_type", "scale_rewards", "max_steps",
                    "reward_terms", "advantage_mode", "collapse_penalty", "seed", "collapse_warn_entropy_ratio"):
            assert getattr(ours, key) == getattr(expected, key), (recipe_name, key)
        accuracy = [t["weight"] for t in ours.reward_terms if t["name"] == "accuracy"]
        assert accuracy == [ARM_REWARDS[arm]["accuracy_weight"]]
        assert recipe.model.freeze_embeddings == DEMO_GRPO_SETTINGS.get("freeze_embeddings", False)
        demo = recipe.data.source_options
        for key, value in DEMO_DATA_SETTINGS.items():
            assert demo[key] == value, (key, demo[key], value)


def test_demo_recipe_trains_through_grpo_sim_train(tmp_path, monkeypatch):
    """`grpo-sim train recipes/demo/ps_grpo.yaml` end to end, with a tiny warm start and budget."""
    import json

    import pytest
    from typer.testing import CliRunner

    import grpo_sim.demo as demo
    from grpo_sim.cli import app

    pytest.importorskip("matplotlib")
    monkeypatch.setattr(demo, "DEMO_WARMSTART_SETTINGS", {**demo.DEMO_WARMSTART_SETTINGS, "steps": 20,
                                                          "batch_size": 8})
    result = CliRunner().invoke(app, [
        "train", str(ROOT / "recipes" / "demo" / "ps_grpo.yaml"), "-o", str(tmp_path / "run"),
        "--cache-dir", str(tmp_path / "cache"),
        "--set", "data.source_options.num_train_sets=8", "--set", "data.source_options.num_eval_sets=4",
        "--set", "training.max_steps=2", "--set", "training.per_device_train_batch_size=32",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert summary["num_sets"] == 4 and 0 <= summary["consistency_e2e_exact"] <= 1
    assert list((tmp_path / "cache").glob("warmstart-*/warmstart.json"))
