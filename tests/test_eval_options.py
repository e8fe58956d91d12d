"""The eval option bundles keep the defaults of the public functions whose keywords they carry."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from grpo_sim.eval import (
    GenerationOptions,
    ScoringOptions,
    evaluate_model,
    generate_predictions,
    summarize,
    summarize_with_details,
)


@pytest.mark.parametrize(
    "options, functions",
    [
        (ScoringOptions, (summarize, summarize_with_details, evaluate_model)),
        (GenerationOptions, (generate_predictions, evaluate_model)),
    ],
)
def test_option_defaults_are_the_functions_defaults(options, functions):
    for field in dataclasses.fields(options):
        for function in functions:
            parameter = inspect.signature(function).parameters.get(field.name)
            if parameter is None:
                assert function is evaluate_model and field.name == "confidence", (function, field.name)
                continue
            assert parameter.default == field.default, (function.__name__, field.name)
