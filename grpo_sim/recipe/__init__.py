"""YAML recipes -> validated config objects, before anything heavy loads.

A recipe has four sections (see ``recipes/`` and the README)::

    extends: base.yaml            # optional: deep-merged underneath this file
    trl_config: grpo.yaml         # optional: a flat TRL / open-r1 GRPO config, mapped into the sections below
                                  # (model_name_or_path -> model.name_or_path, dataset_name -> data.train, the
                                  # GRPOConfig fields -> training); this file's keys win
    model:    {name_or_path, dtype, attn_implementation, lora, merge_adapters}
    data:     {train, eval, prompt, paraphrases_per_set, max_train_sets, max_eval_sets, source_options, ...}
    reward:   {similarity, consistency_weight, relaxed, accuracy, advantage, collapse_penalty, ...}
    training: any PSGRPOConfig / GRPOConfig / TrainingArguments field (learning_rate, beta, ...)
    evaluation: {enabled, max_new_tokens, batch_size, levels, metrics}
    sft:      {model, output_dir, epochs, max_steps, learning_rate, batch_size, ...}  (grpo-sim sft only)

Every problem is reported with the file and key path (``recipe.yaml: training.learning_rat: unknown
key; did you mean 'learning_rate'?``), all problems at once.

The package's modules: :mod:`.schema` (the sections and the keys that set PSGRPOConfig fields),
:mod:`.training_keys` (the ``training:`` keys checked against GRPOConfig), :mod:`.files` (YAML, ``extends``,
``trl_config``, ``--set``), :mod:`.load` (validation of the whole recipe, loading a file, building the config).
"""

from ..validation import RecipeError, format_problems
from .files import apply_overrides, deep_merge, load_raw
from .load import build_config, check_recipe, config_class_for_launch, load_recipe, parse_recipe
from .schema import (
    LEGACY_REWARD_KEYS,
    AccuracySettings,
    ConfigField,
    DataSettings,
    EvaluationSettings,
    LoraSettings,
    ModelSettings,
    Recipe,
    RelaxedSettings,
    RewardSettings,
    SFTSettings,
    config_kwargs,
    owned_config_fields,
)
from .training_keys import TRAINING_RANGES

__all__ = [
    "LEGACY_REWARD_KEYS",
    "TRAINING_RANGES",
    "AccuracySettings",
    "ConfigField",
    "DataSettings",
    "EvaluationSettings",
    "LoraSettings",
    "ModelSettings",
    "Recipe",
    "RecipeError",
    "RelaxedSettings",
    "RewardSettings",
    "SFTSettings",
    "apply_overrides",
    "build_config",
    "check_recipe",
    "config_class_for_launch",
    "config_kwargs",
    "deep_merge",
    "format_problems",
    "load_raw",
    "load_recipe",
    "owned_config_fields",
    "parse_recipe",
]
