"""The shipped recipes build the same PSGRPOConfig they built before the reward-term rewrite.

tests/data/shipped_recipe_configs.json holds ``PSGRPOConfig.to_dict()`` of every shipped recipe (CPU
defaults applied, output_dir 'OUT'), captured on main before recipes gained reward terms.
Regenerate only for a deliberate change of a shipped recipe.

Since then the rewards are ``reward_terms``; the old shorthand fields (similarity, consistency_weight,
accuracy_weight, accuracy_metric, relaxed_kappa, relaxed_samples) are unset in a built config, and
their captured values must come back as the equivalent terms. One deliberate change: model_init_kwargs
now carries the model section's from_pretrained arguments (TRL builds the reference model from them when
beta > 0; before, the reference of a bf16/sdpa recipe was loaded in float32 with the default attention).
And one deliberate change of a default (issue 21): ``collapse_penalty`` left unset is None, which means "on for
paraphrase sets, off on ordinary rows" (a drop-in for trl.GRPOTrainer); every shipped recipe trains on paraphrase
sets, where None is the captured True. Fields added to PSGRPOConfig since the capture (``NEW_FIELDS``: the vLLM
weight sync of issue 25) must build to their defaults, since no shipped recipe sets them. Every other field is
compared as is.
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


SHORTHAND = (
    "similarity",
    "consistency_weight",
    "accuracy_weight",
    "accuracy_metric",
    "relaxed_kappa",
    "relaxed_samples",
)


#: PSGRPOConfig fields added after the capture, with the value every shipped recipe builds (their defaults)
NEW_FIELDS = {"vllm_weight_sync": "auto", "vllm_sync_dir": None}


def terms_of_captured(old: dict) -> list[dict]:
    """What the captured shorthand meant: consistency (if weighted) then accuracy vs gold (if weighted)."""
    terms = []
    if old["consistency_weight"]:
        relaxed = (
            None if old["relaxed_kappa"] is None else {"kappa": old["relaxed_kappa"], "samples": old["relaxed_samples"]}
        )
        terms.append(
            {
                "type": "consistency",
                "name": "consistency",
                "weight": old["consistency_weight"],
                "similarity": old["similarity"],
                "relaxed": relaxed,
            }
        )
    if old["accuracy_weight"]:
        terms.append(
            {
                "type": "reference",
                "name": "accuracy",
                "weight": old["accuracy_weight"],
                "similarity": old["accuracy_metric"],
                "column": None,
            }
        )
    return terms


@pytest.mark.parametrize("relative", sorted(SNAPSHOT))
def test_shipped_recipe_builds_the_captured_config(relative):
    old, new = SNAPSHOT[relative], built_config(relative)
    assert new["reward_terms"] == terms_of_captured(old)
    assert all(new[name] is None for name in SHORTHAND)
    model = load_recipe(ROOT / relative).model
    expected_init = (
        None
        if model.dtype == "auto" and not model.attn_implementation
        else {"dtype": model.dtype, "attn_implementation": model.attn_implementation, "trust_remote_code": False}
    )
    assert old["model_init_kwargs"] is None and new["model_init_kwargs"] == expected_init
    assert old["collapse_penalty"] is True
    assert new["collapse_penalty"] is (True if load_recipe(ROOT / relative).reward.collapse_penalty else None)
    assert build_config(cpu_defaults(load_recipe(ROOT / relative)), "OUT").collapse_penalty_for(paraphrase_sets=True)
    rest = set(old) - set(SHORTHAND) - {"model_init_kwargs", "collapse_penalty"}
    assert set(new) - set(SHORTHAND) == rest | {"reward_terms", "model_init_kwargs", "collapse_penalty"} | set(
        NEW_FIELDS
    )
    assert {k: new[k] for k in NEW_FIELDS} == NEW_FIELDS
    assert {k: new[k] for k in rest} == {k: old[k] for k in rest}
