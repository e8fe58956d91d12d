"""The demo's arms are its recipes (grpo_sim/demo/recipes, linked as recipes/demo): one source of their settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from grpo_sim.demo import ARMS, DEMO_DATA_SETTINGS, arm_config, arm_recipe, demo_settings
from grpo_sim.demo.settings import RECIPES_DIR
from grpo_sim.trainer import PSGRPOConfig

ROOT = Path(__file__).resolve().parents[1]

#: The trainer settings `grpo-sim demo` trained its two arms with before the arms became recipes (the former
#: grpo_sim.demo.grpo_config_kwargs(DEMO_GRPO_SETTINGS, 4, reward, "out")), frozen: moving the settings into the
#: recipes must not change what the arms compute.
FORMER_DEMO_KWARGS = dict(
    output_dir="out",
    use_cpu=True,
    bf16=False,
    report_to=[],
    per_device_train_batch_size=64,
    gradient_accumulation_steps=1,
    save_strategy="no",
    logging_steps=10,
    disable_tqdm=True,
    dataloader_num_workers=0,
    gradient_checkpointing=False,
    max_steps=400,
    num_generations=4,
    temperature=1.0,
    max_completion_length=4,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    warmup_steps=0,
    beta=0.0,
    loss_type="dapo",
    scale_rewards="group",
    advantage_mode="set",
    similarity="token_f1",
    accuracy_metric="token_f1",
    relaxed_kappa=None,
    collapse_penalty=True,
    collapse_warn_entropy_ratio=0.0,
    seed=0,
)
FORMER_ARM_REWARDS = {
    "ps_grpo": {"consistency_weight": 1.0, "accuracy_weight": 1.0},
    "grpo_accuracy_only": {"consistency_weight": 0.0, "accuracy_weight": 1.0},
}
#: the first recipe form's reward shorthand: resolved into reward_terms (compared), left None by recipes
LEGACY_REWARD_FIELDS = {"similarity", "consistency_weight", "accuracy_weight", "accuracy_metric"}


def _config(arm: str) -> PSGRPOConfig:
    return arm_config(arm_recipe(arm, demo_settings(quick=False, seed=0), policy_dir="policy"), "out")


def _differences(a: PSGRPOConfig, b: PSGRPOConfig) -> set[str]:
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


def test_arms_train_with_the_former_demo_settings():
    for arm, rewards in FORMER_ARM_REWARDS.items():
        former = PSGRPOConfig(**FORMER_DEMO_KWARGS, **rewards)
        assert _differences(former, _config(arm)) <= LEGACY_REWARD_FIELDS, arm
        assert former.reward_terms == _config(arm).reward_terms


def test_arms_differ_only_in_their_reward_terms():
    configs = {arm: _config(arm) for arm in ARMS}
    for arm, config in configs.items():
        assert _differences(config, configs["ps_grpo"]) <= {"reward_terms"}, arm
    terms = {arm: {t["name"]: t for t in c.reward_terms} for arm, c in configs.items()}
    assert set(terms["grpo_accuracy_only"]) == {"accuracy"}
    assert set(terms["ps_grpo"]) == {"consistency", "accuracy"}
    assert set(terms["ps_grpo_consistency_only"]) == {"consistency"}  # label-free
    assert configs["ps_grpo_consistency_only"].collapse_penalty is True  # the collapse guard stays on
    relaxed = terms["ps_grpo_relaxed"]["consistency"]["relaxed"]
    n = DEMO_DATA_SETTINGS["num_paraphrases"]
    assert relaxed["kappa"] < n - 1 and relaxed["samples"] == 1
    assert terms["ps_grpo"]["consistency"].get("relaxed") is None
    assert terms["ps_grpo_relaxed"]["accuracy"] == terms["ps_grpo"]["accuracy"]


def test_recipes_are_package_data_and_recipes_demo_points_at_them():
    assert (ROOT / "recipes" / "demo").resolve() == RECIPES_DIR
    assert {p.name for p in RECIPES_DIR.glob("*.yaml")} == set(ARMS.values())
    for arm in ARMS:  # the recipe's data section is the demo's data
        demo = arm_recipe(arm, demo_settings(seed=3)).data.source_options
        assert {k: demo[k] for k in DEMO_DATA_SETTINGS} == DEMO_DATA_SETTINGS and demo["seed"] == 3


def test_demo_recipe_trains_through_grpo_sim_train(tmp_path, monkeypatch):
    """`grpo-sim train recipes/demo/ps_grpo.yaml` end to end, with a tiny warm start and budget."""
    import json

    import pytest
    from typer.testing import CliRunner

    import grpo_sim.demo.settings as settings
    from grpo_sim.cli import app

    pytest.importorskip("matplotlib")
    monkeypatch.setattr(settings, "DEMO_WARMSTART_SETTINGS", {"steps": 20, "batch_size": 8})
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "recipes" / "demo" / "ps_grpo.yaml"),
            "-o",
            str(tmp_path / "run"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--set",
            "data.source_options.num_train_sets=8",
            "--set",
            "data.source_options.num_eval_sets=4",
            "--set",
            "training.max_steps=2",
            "--set",
            "training.per_device_train_batch_size=32",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())
    assert summary["num_sets"] == 4 and 0 <= summary["consistency_e2e_exact"] <= 1
    meta = json.loads(next((tmp_path / "cache").glob("warmstart-*/warmstart.json")).read_text())
    assert meta["config"]["steps"] == 20
