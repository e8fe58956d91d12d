"""grpo_sim.validation: one formatter for recipe and sweep-file errors."""

from __future__ import annotations

from typing import Optional

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from grpo_sim.validation import did_you_mean, format_validation, location_text


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = 1.0


class _Root(BaseModel):
    model_config = ConfigDict(extra="forbid")
    section: Optional[_Inner] = None
    items: list[_Inner] = []
    by_key: dict[str, _Inner] = {}


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"section": {"learning_rat": 1}},
            "section.learning_rat: unknown key in section; did you mean 'learning_rate'?",
        ),
        (
            {"items": [{"learning_rat": 1}]},
            "items.0.learning_rat: unknown key in items.0; did you mean 'learning_rate'?",
        ),
        (
            {"by_key": {"a.b": {"learning_rat": 1}}},
            "by_key[a.b].learning_rat: unknown key in by_key[a.b]; did you mean",
        ),
        ({"sectoin": {}}, "sectoin: unknown key in top level; did you mean 'section'?"),
        ({"section": {"learning_rate": "x"}}, "section.learning_rate: Input should be a valid number"),
    ],
)
def test_problems_name_the_key_and_the_closest_known_one(data, expected):
    with pytest.raises(ValidationError) as info:
        _Root.model_validate(data)
    (problem,) = format_validation(info.value, _Root)
    assert problem.startswith(expected), problem


def test_helpers():
    assert did_you_mean("trian", ["train", "eval"]) == "; did you mean 'train'?"
    assert did_you_mean("zzz", ["train"]) == ""
    assert location_text(()) == "top level"
    assert location_text(("parameters", "training.lr", "low")) == "parameters[training.lr].low"
