"""The ``training:`` section: every key checked against PSGRPOConfig / GRPOConfig / TrainingArguments (a field of
it, not one a recipe key owns, its type, its range) before any config is built."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from pathlib import Path
from typing import Any

from pydantic import (
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
)

from ..validation import did_you_mean
from .schema import owned_config_fields


def _range(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> tuple[typing.Callable[[float], bool], str]:
    """A (test, description) pair for a numeric range; the test also rejects NaN and infinities."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")

    def test(value: float) -> bool:
        if not math.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or (value < high if high_open else value <= high)

    return test, " and ".join(parts) or "finite"


_AT_LEAST_ONE = _range(1)
# GRPOConfig/TrainingArguments fields that TRL divides by or that make no sense outside a range; GRPOConfig
# itself accepts nearly all of these (e.g. num_generations: 0 ends in a ZeroDivisionError inside TRL).
TRAINING_RANGES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    **{
        name: _AT_LEAST_ONE
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "num_generations",
            "num_generations_eval",
            "generation_batch_size",
            "steps_per_generation",
            "max_completion_length",
            "num_iterations",
            "eval_accumulation_steps",
            "vllm_tensor_parallel_size",
            "ddp_timeout",
            "ref_model_sync_steps",
        )
    },
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (train for num_train_epochs) or >= 1"),
    "num_train_epochs": _range(0, low_open=True),
    "learning_rate": _range(0, low_open=True),  # 0 trains nothing while every step still runs
    "weight_decay": _range(0),
    "adam_beta1": _range(0, 1, high_open=True),
    "adam_beta2": _range(0, 1, high_open=True),
    "adam_epsilon": _range(0, low_open=True),
    "max_grad_norm": _range(0),
    "warmup_steps": _range(0),
    "logging_steps": _range(0, low_open=True),
    "save_steps": _range(0, low_open=True),
    "eval_steps": _range(0, low_open=True),
    "temperature": _range(0, low_open=True),
    "top_p": _range(0, 1, low_open=True),
    "top_k": _range(0),
    "min_p": _range(0, 1),
    "repetition_penalty": _range(0, low_open=True),
    "beta": _range(0),
    "epsilon": _range(0),
    "epsilon_high": _range(0),
    "delta": _range(0, low_open=True),
    "top_entropy_quantile": _range(0, 1),
    "vllm_gpu_memory_utilization": _range(0, 1, low_open=True),
    "vllm_server_timeout": _range(0, low_open=True),
    "vllm_server_port": _range(1, 65535),
    "vllm_group_port": _range(1, 65535),
    "seed": _range(0, 2**32 - 1),  # numpy's seed range
    "data_seed": _range(0, 2**32 - 1),
    "dataloader_num_workers": _range(0),
    "collapse_warn_identical": _range(0, 1),
    "collapse_warn_empty": _range(0, 1),
    "collapse_warn_entropy_ratio": _range(0, 1),
}
# Typed `int | None` in GRPOConfig, but None ends in a TypeError inside TRL.
_NOT_NULL = {"num_generations"}
# TrainingArguments fields that take a JSON file path (read relative to the current directory) or a mapping.
_CONFIG_FILE_FIELDS = {"deepspeed", "accelerator_config", "fsdp_config"}


@functools.lru_cache(maxsize=1)
def _training_fields() -> dict[str, Any]:
    from ..trainer import PSGRPOConfig

    hints = typing.get_type_hints(PSGRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(PSGRPOConfig) if f.init}


def _check_training(training: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Type-check (and coerce, e.g. YAML's string '1e-6' to a float) every training key."""
    fields = _training_fields()
    owned = owned_config_fields()
    problems = []
    coerced = dict(training)
    for key, value in training.items():
        if key in owned:
            problems.append(f"training.{key}: set it as {owned[key]}")
            coerced.pop(key)
            continue
        if key not in fields:
            problems.append(f"training.{key}: not a GRPOConfig/TrainingArguments field{did_you_mean(key, fields)}")
            coerced.pop(key)
            continue
        if key in _CONFIG_FILE_FIELDS and isinstance(value, (str, bool)):
            if isinstance(value, bool) or not Path(value).is_file():
                what = f"{value} does not exist" if isinstance(value, str) else f"got {str(value).lower()}"
                problems.append(f"training.{key}: expects a path to a JSON config file or a mapping; {what}")
                coerced.pop(key)
                continue
        try:
            adapter = TypeAdapter(fields[key])
        except PydanticSchemaGenerationError:  # an annotation pydantic cannot check: GRPOConfig validates it below
            continue
        try:
            if isinstance(value, bool) and "bool" not in str(fields[key]):
                value = "no" if value is False else "yes"  # YAML 1.1 reads a bare `no` as False
            value = adapter.validate_python(value)
            coerced[key] = value.value if isinstance(value, enum.Enum) else value  # keep YAML-friendly types
        except ValidationError as exc:
            expected = getattr(fields[key], "__name__", str(fields[key]))
            problems.append(f"training.{key}: {value!r} is not a valid {expected} ({exc.errors()[0]['msg']})")
            coerced.pop(key)
            continue
        problem = (
            f"training.{key}: must be set (null is not allowed)"
            if key in _NOT_NULL and coerced[key] is None
            else _range_problem(key, coerced[key])
        )
        if problem:
            problems.append(problem)
            coerced.pop(key)
    return coerced, problems


def _range_problem(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    test, description = TRAINING_RANGES.get(key, (lambda v: not math.isnan(v), "a number"))
    return None if test(value) else f"training.{key}: must be {description}, got {value!r}"
