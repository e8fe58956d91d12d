"""The shipped recipes build the same PSGRPOConfig they built before the reward-term rewrite.

tests/data/shipped_recipe_configs.json holds ``PSGRPOConfig.to_dict()`` of every shipped recipe (CPU
defaults applied, output_dir 'OUT'), captured on main before recipes gained reward terms.
Regenerate only for a deliberate change of a shipped recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_sim.recipe import build_config, load_recipe
from grpo_sim.runner import cpu_defaults

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((Path(__file__).parent / "data" / "shipped_recipe_configs.json").read_text())


def built_config(relative: str) -> dict:
    config = build_config(cpu_defaults(load_recipe(ROOT / relative)), "OUT")
    return json.loads(json.dumps(config.to_dict(), default=str))


@pytest.mark.parametrize("relative", sorted(SNAPSHOT))
def test_shipped_recipe_builds_the_captured_config(relative):
    assert built_config(relative) == SNAPSHOT[relative]
