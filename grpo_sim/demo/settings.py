"""What the demo runs: its data, warm-start and quick settings, and its arms (the recipes in ``recipes/``).

The GRPO settings of every arm exist once, in the arm's recipe (``grpo_sim/demo/recipes/*.yaml``, also
reachable as ``recipes/demo/``); :func:`arm_recipe` loads one with the run's seed, data size and warm start,
and :func:`arm_config` builds its trainer config with the same :func:`grpo_sim.recipe.build_config` as
``grpo-sim train``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ARMS",
    "DemoDataSettings",
    "ARM_LABELS",
    "DEMO_DATA_SETTINGS",
    "DEMO_WARMSTART_SETTINGS",
    "QUICK_OVERRIDES",
    "RECIPES_DIR",
    "REWARD_LABELS",
    "arm_config",
    "arm_recipe",
    "demo_settings",
]


class DemoDataSettings(BaseModel):
    """``data.source_options`` of ``data.train: demo``, the bundled synthetic sets; these defaults are also the full
    ``grpo-sim demo``'s. 200 held-out sets: the standard error of a consistency mean over sets is then about 0.025."""

    model_config = ConfigDict(extra="forbid")

    num_train_sets: int = Field(600, ge=1)
    num_eval_sets: int = Field(200, ge=1)
    num_paraphrases: int = Field(4, ge=2, le=6)
    passages_per_prompt: int = Field(3, ge=1)
    seed: int = 0


#: The recipes of the demo's arms (package data, so an installed grpo-sim finds them too).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"

#: ``summary.json`` key -> recipe of each GRPO arm, in the order the table lists them. The arms differ only in
#: their reward terms (tests/test_demo_recipe.py checks that): the accuracy-only ablation, PS-GRPO (consistency +
#: accuracy), the label-free arm (consistency only) and PS-GRPO with the relaxed consistency reward.
ARMS: dict[str, str] = {
    "grpo_accuracy_only": "grpo_accuracy_only.yaml",
    "ps_grpo": "ps_grpo.yaml",
    "ps_grpo_consistency_only": "ps_grpo_consistency_only.yaml",
    "ps_grpo_relaxed": "ps_grpo_relaxed.yaml",
}

#: Row labels of the table and the plot (``base`` is the warm start).
ARM_LABELS: dict[str, str] = {
    "base": "warm start",
    "grpo_accuracy_only": "GRPO acc.-only",
    "ps_grpo": "PS-GRPO",
    "ps_grpo_consistency_only": "PS-GRPO cons.-only",
    "ps_grpo_relaxed": "PS-GRPO relaxed",
}

#: Data of the full demo (``quick=True`` shrinks it): the recipe schema's ``data.demo`` defaults, one source for
#: ``grpo-sim demo`` and recipes with ``data.train: demo`` (the seed is the demo's --seed).
DEMO_DATA_SETTINGS: dict[str, Any] = DemoDataSettings().model_dump(exclude={"seed"})

#: Overrides of :class:`grpo_sim.demo.warmstart.WarmStartConfig`'s defaults for the demo: none, its defaults are
#: the demo's warm start (the seed is the run's).
DEMO_WARMSTART_SETTINGS: dict[str, Any] = {}

#: Settings that replace the above when ``quick=True`` (smoke test: seconds, not minutes). ``grpo`` values are
#: recipe ``training`` keys (2 sets x 4 paraphrases x 4 rollouts per step).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"num_train_sets": 16, "num_eval_sets": 6},
    "warmstart": {"steps": 30, "curriculum_steps": 10, "batch_size": 16, "warmup_steps": 5},
    "grpo": {"max_steps": 2, "per_device_train_batch_size": 32},
}

#: What the accuracy reward of GRPO scores against: ``gold`` (the training sets' gold answers)
#: or ``warmstart`` (the warm start's own noisy training labels, see :func:`grpo_sim.demo.run_demo`).
REWARD_LABELS = ("gold", "warmstart")


def demo_settings(quick: bool = False, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"data", "warmstart", "grpo"}`` settings of a run: data size, warm-start config and the overrides the
    run applies to every arm's recipe (empty for the full demo: the recipes hold its GRPO settings)."""
    from .warmstart import WarmStartConfig

    s: dict[str, dict[str, Any]] = {
        "data": dict(DEMO_DATA_SETTINGS),
        "warmstart": {**DEMO_WARMSTART_SETTINGS},
        "grpo": {},
    }
    if quick:
        for part, over in QUICK_OVERRIDES.items():
            s[part].update(copy.deepcopy(over))
    s["data"]["seed"] = seed
    s["warmstart"] = WarmStartConfig(**{**s["warmstart"], "seed": seed}).to_dict()
    s["grpo"]["seed"] = seed
    return s


def arm_recipe(arm: str, settings: Mapping[str, Mapping[str, Any]], policy_dir: str | None = None):
    """The recipe of ``arm`` with the run's data size and seed, training overrides and (``policy_dir``) warm
    start in place of the recipe's ``grpo-sim:demo-warmstart``."""
    from ..recipe import load_recipe

    if arm not in ARMS:
        raise ValueError(f"unknown demo arm {arm!r}; the arms are {sorted(ARMS)}")
    overrides = [f"data.source_options.{k}={v}" for k, v in settings["data"].items()]
    overrides += [f"training.{k}={v}" for k, v in settings["grpo"].items()]
    if policy_dir is not None:
        overrides.append(f"model.name_or_path={policy_dir}")
    return load_recipe(RECIPES_DIR / ARMS[arm], overrides)


def arm_config(recipe: Any, output_dir: str):
    """The arm's :class:`~grpo_sim.trainer.PSGRPOConfig`, built from its recipe as ``grpo-sim train`` builds it;
    only what the demo prints differs (no tqdm bars: one compact progress line every 50 steps)."""
    from ..recipe import build_config
    from ..runner import cpu_defaults

    recipe = cpu_defaults(recipe)
    recipe = recipe.model_copy(update={"training": {**recipe.training, "disable_tqdm": True}})
    return build_config(recipe, output_dir)
