"""Flat TRL / open-r1 GRPO configs and TRL-style command-line flags, translated into recipe sections.

A TRL user's config is one flat mapping of ``GRPOConfig`` fields plus TRL's ``ScriptArguments``
(``dataset_name``, ``dataset_config``, ``dataset_train_split``, ...) and ``ModelConfig``
(``model_name_or_path``, ``model_revision``, ``torch_dtype``, ``use_peft``, ``lora_r``, ...) keys.
A recipe names it with ``trl_config: FILE``; :func:`sections_from_flat` maps every key to the section it
belongs in, and the recipe's own keys win. ``grpo-sim train RECIPE --learning_rate 2e-6`` flags go
through the same mapping (:func:`flags_to_overrides`) and become ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from .validation import RecipeError

#: flat key -> (section, key) in a recipe
MODEL_KEYS = {
    "model_name_or_path": "name_or_path",
    "model_revision": "revision",
    "torch_dtype": "dtype",
    "dtype": "dtype",
    "attn_implementation": "attn_implementation",
    "trust_remote_code": "trust_remote_code",
}
DATA_KEYS = {
    "dataset_config": "config",
    "system_prompt": "system_prompt",
}
#: GRPOConfig fields that a recipe sets in another section
OWNED_KEYS = {
    "model_init_kwargs": ("model", "model_init_kwargs"),
    "chat_template_kwargs": ("model", "chat_template_kwargs"),
    "multi_objective_aggregation": ("reward", "aggregation"),
}
LORA_KEYS = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lora_target_modules": "target_modules"}
#: ScriptArguments / ModelConfig keys that change nothing in a grpo-sim run (logging, loading speed-ups grpo-sim
#: does not use); accepted so that a TRL config carries over unchanged
IGNORED_KEYS = {"dataset_streaming", "ignore_bias_buffers", "use_peft"}


def _training_fields() -> set[str]:
    from .trainer import PSGRPOConfig

    return {f.name for f in dataclasses.fields(PSGRPOConfig) if f.init}


def _known_flat_keys() -> set[str]:
    return {
        *_training_fields(),
        *MODEL_KEYS,
        *DATA_KEYS,
        *OWNED_KEYS,
        *LORA_KEYS,
        *IGNORED_KEYS,
        "warmup_ratio",
        "dataset_name",
        "dataset_train_split",
        "dataset_test_split",
        "dataset_prompt_column",
        "output_dir",
    }


def sections_from_flat(
    flat: dict[str, Any], source: str, recipe_has_rewards: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Recipe sections for a flat TRL config, and one problem per key that cannot be carried over.

    ``reward_funcs`` (dotted paths) become function terms unless the recipe has its own ``rewards:`` list."""
    sections: dict[str, Any] = {}
    problems: list[str] = []
    training_fields = _training_fields()

    def put(section: str, key: str, value: Any) -> None:
        sections.setdefault(section, {})[key] = value

    dataset = flat.get("dataset_name")
    if dataset is not None:
        train_split = flat.get("dataset_train_split")
        put("data", "train", f"hf:{dataset}" + (f":{train_split}" if train_split else ""))
        test_split = flat.get("dataset_test_split")
        if test_split and flat.get("eval_strategy", "no") != "no":
            put("data", "eval", f"hf:{dataset}:{test_split}")
    elif "dataset_train_split" in flat or "dataset_test_split" in flat:
        problems.append(f"{source}: dataset_train_split/dataset_test_split without dataset_name")
    if flat.get("dataset_prompt_column"):
        put("data", "columns", {"prompt": flat["dataset_prompt_column"]})
    if flat.get("use_peft"):
        put("model", "lora", {LORA_KEYS[k]: v for k, v in flat.items() if k in LORA_KEYS})
    funcs = flat.get("reward_funcs")
    if funcs is not None and not recipe_has_rewards:
        terms, problem = _function_terms(funcs, flat.get("reward_weights"), source)
        if problem:
            problems.append(problem)
        else:
            sections["rewards"] = terms
    for key, value in flat.items():
        if key in (
            "dataset_name",
            "dataset_train_split",
            "dataset_test_split",
            "dataset_prompt_column",
            "reward_funcs",
            "reward_weights",
            *LORA_KEYS,
            *IGNORED_KEYS,
        ):
            continue
        if key in MODEL_KEYS:
            put("model", MODEL_KEYS[key], value)
        elif key in DATA_KEYS:
            put("data", DATA_KEYS[key], value)
        elif key in OWNED_KEYS:
            put(*OWNED_KEYS[key], value)
        elif key == "warmup_ratio" and key not in training_fields:
            # transformers 5 folded warmup_ratio into warmup_steps: a value below 1 is the fraction of the steps
            if isinstance(value, (int, float)) and 0 <= value < 1:
                put("training", "warmup_steps", value)
            else:
                problems.append(f"{source}: warmup_ratio: expected a fraction in [0, 1), got {value!r}")
        elif key == "output_dir":
            sections["output_dir"] = value
        elif key in training_fields:
            put("training", key, value)
        else:
            problems.append(
                f"{source}: {key}: not a GRPOConfig, ScriptArguments or ModelConfig key grpo-sim can "
                "carry over; set its recipe equivalent in the recipe instead (see the README)"
            )
    # a TRL config has no model section of its own kind: a dtype of `null` means TRL's default
    if sections.get("model", {}).get("dtype", "") is None:
        sections["model"].pop("dtype")
    return sections, problems


def _function_terms(funcs: Any, weights: Any, source: str) -> tuple[list[dict[str, Any]], str | None]:
    """``reward_funcs`` given as dotted paths (as ``trl grpo`` takes them) -> function terms."""
    funcs = [funcs] if isinstance(funcs, str) else funcs
    if not isinstance(funcs, list) or not all(isinstance(f, str) for f in funcs):
        return [], f"{source}: reward_funcs: expected a list of dotted paths, got {funcs!r}"
    registry = [f for f in funcs if "." not in f and ":" not in f]
    if registry:
        return [], (
            f"{source}: reward_funcs: {registry} are registry names (open-r1's get_reward_funcs); grpo-sim "
            "imports reward functions by dotted path: give e.g. 'my_pkg.rewards:accuracy_reward', or write "
            "a rewards: list in the recipe (it replaces reward_funcs)"
        )
    if weights is not None and (not isinstance(weights, list) or len(weights) != len(funcs)):
        return [], (
            f"{source}: reward_weights: expected one weight per reward_funcs entry ({len(funcs)}), got {weights!r}"
        )
    weights = weights or [1.0] * len(funcs)
    return [{"type": "function", "function": f, "weight": w} for f, w in zip(funcs, weights)], None


def flags_to_overrides(args: list[str]) -> list[str]:
    """TRL-style flags after the recipe (``--learning_rate 2e-6``, ``--bf16``, ``--model_name_or_path=X``) ->
    ``--set`` overrides (``training.learning_rate=2e-6``). ValueError names each flag that is not one."""
    flat: dict[str, str] = {}
    problems: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            problems.append(f"{arg!r}: unexpected argument (overrides are --set key.path=value)")
            i += 1
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"  # a bare flag, as TRL's parser reads --bf16
        key = key.replace("-", "_")
        if key in _known_flat_keys():
            flat[key] = value
        else:
            hint = difflib.get_close_matches(key, ["set", "output_dir", *_known_flat_keys()], n=1, cutoff=0.6)
            problems.append(
                f"No such option: --{key} (neither a grpo-sim option nor a GRPOConfig, ScriptArguments or "
                f"ModelConfig field){f'; did you mean --{hint[0]}?' if hint else ''}"
            )
        i += 1
    if "reward_funcs" in flat or "reward_weights" in flat:
        problems.append("--reward_funcs/--reward_weights: write the reward terms in the recipe's rewards: list")
        flat = {k: v for k, v in flat.items() if k not in ("reward_funcs", "reward_weights")}
    sections, more = sections_from_flat(flat, "command line")
    problems += [p.replace("command line: ", "--", 1) for p in more]
    if problems:
        raise RecipeError(
            "command line: " + "; ".join(problems) + ". A recipe key is overridden with "
            "--set section.key=value, e.g. --set training.learning_rate=2e-6",
            problems,
        )
    return [f"{path}={value}" for path, value in _flatten(sections)]


def _flatten(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out
