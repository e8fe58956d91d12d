"""A raw recipe mapping validated into a :class:`~.schema.Recipe` (every problem at once), a recipe file loaded,
and the PSGRPOConfig built from a recipe (as this launch or another one would)."""

from __future__ import annotations

import copy
import functools
import os
import typing
from typing import Any

from pydantic import (
    ValidationError,
)

from ..validation import RecipeError, did_you_mean, format_problems, format_validation
from .files import apply_overrides, load_raw
from .paths import add_recipe_dir_to_path, resolve_data_path
from .schema import LEGACY_REWARD_KEYS, ModelSettings, Recipe, owned_config_fields
from .training_keys import _check_training, _training_fields


def _without(data: dict[str, Any], locs: typing.Iterable[tuple]) -> dict[str, Any]:
    """``data`` without the deepest existing key on each error location (so its default applies)."""
    data = copy.deepcopy(data)
    for loc in locs:
        parent, key, node = None, None, data
        for part in loc:
            if not (isinstance(node, dict) and part in node):
                break
            parent, key, node = node, part, node[part]
        if parent is not None:
            parent.pop(key)
    return data


def check_recipe(data: dict[str, Any], source: str = "<recipe>") -> tuple[Recipe | None, list[str]]:
    """Every problem of a raw (merged, overridden) recipe mapping, and the recipe.

    With problems, the recipe is a best effort (bad keys dropped, so their defaults apply) that
    later checks (data, batch arithmetic) can still run on, so that all problems are reported at
    once; it is None when even that cannot be built (e.g. a required key is missing).
    """
    problems: list[str] = []
    unknown = set(data) - set(Recipe.model_fields)
    for key in sorted(unknown):
        if key in _training_fields() and key not in owned_config_fields():  # a flat TRL / open-r1 config
            problems.append(
                f"{key}: a GRPOConfig/TrainingArguments field at the top level: move it under training: "
                "(or keep the flat TRL config in its own file and name it with trl_config: FILE)"
            )
        elif key in ModelSettings.model_fields or key in ("model_name_or_path", "model_revision"):
            problems.append(
                f"{key}: a model setting at the top level: move it under model: (model.name_or_path, "
                "model.revision, ...)"
            )
        elif key in ("dataset_name", "dataset_config", "dataset_train_split", "system_prompt"):
            problems.append(
                f"{key}: a data setting at the top level: use data.train (hf:NAME[:SPLIT]), "
                "data.config, data.system_prompt"
            )
        else:
            problems.append(f"{key}: unknown top-level key{did_you_mean(key, Recipe.model_fields)}")
    clean = {k: v for k, v in data.items() if k not in unknown}
    add_recipe_dir_to_path(source)  # a function term's module may sit next to the recipe file
    recipe = None
    try:
        recipe = Recipe.model_validate(clean)
    except ValidationError as exc:
        problems.extend(format_validation(exc, Recipe))
        try:
            recipe = Recipe.model_validate(_without(clean, [tuple(e["loc"]) for e in exc.errors()]))
        except ValidationError:
            recipe = None
    problems.extend(_reward_problems(clean))
    if recipe is not None:
        from ..sources import source_option_problems

        recipe.data.source_options, option_problems = source_option_problems(recipe.data)
        problems.extend(option_problems)
    training = clean.get("training") or {}
    coerced: dict[str, Any] = {}
    if isinstance(training, dict):
        coerced, training_problems = _check_training(training)
        problems.extend(training_problems)
    if recipe is not None:
        recipe.training = coerced
        recipe._source = source
        # data paths relative to the recipe file (else the current directory): recipe/paths.py; a registered data
        # source's name (data.train: demo) is never a path
        from ..sources import DATA_SOURCES

        if recipe.data.train not in DATA_SOURCES:
            recipe.data.train = resolve_data_path(recipe.data.train, source)
        if recipe.data.eval not in DATA_SOURCES:
            recipe.data.eval = resolve_data_path(recipe.data.eval, source)
    return recipe, problems


def _reward_problems(data: dict[str, Any]) -> list[str]:
    """The ``rewards:`` terms (each checked: similarity specs resolve, functions import) and their mix with the
    shorthand ``reward:`` keys."""
    from ..reward_terms import parse_reward_terms

    terms = data.get("rewards")
    if terms is None:
        return []
    problems = []
    reward = data.get("reward") if isinstance(data.get("reward"), dict) else {}
    legacy = [key for key in LEGACY_REWARD_KEYS if reward.get(key) is not None]
    if legacy:
        problems.append(
            f"reward.{legacy[0]}: the shorthand reward keys ({', '.join(LEGACY_REWARD_KEYS)}) and a "
            "rewards: list cannot be mixed; move them into rewards: as consistency / reference terms"
        )
    try:
        parse_reward_terms(terms, "rewards")
    except ValueError as exc:
        problems.extend(str(exc).splitlines())
    return problems


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a raw (merged, overridden) recipe mapping; RecipeError lists every problem."""
    recipe, problems = check_recipe(data, source)
    if problems:
        raise RecipeError(format_problems(source, problems), problems)
    assert recipe is not None
    return recipe


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Load, merge ``extends``, apply ``--set`` overrides and validate a recipe file."""
    raw = apply_overrides(load_raw(path), overrides)
    return parse_recipe(raw, source=str(path))


@functools.lru_cache(maxsize=None)
def config_class_for_launch(num_processes: int) -> type:
    """PSGRPOConfig whose ``world_size`` is a launch's process count, so that ``GRPOConfig.__post_init__`` derives
    THAT launch's batch (steps_per_generation, generation_batch_size) in this one process. For checks and plans
    only: a run trains with the plain PSGRPOConfig, whose world size is the real one."""
    from ..trainer import PSGRPOConfig

    def post_init(self) -> None:
        try:
            PSGRPOConfig.__post_init__(self)
        except ValueError as exc:
            # a later rule (e.g. generation_batch_size % num_generations) rejected the batch TRL derived: keep it
            # on the error, so that a plan can still show the numbers and the nearest valid settings
            derived = (self.steps_per_generation, self.generation_batch_size)
            exc.derived_batch = derived if None not in derived else None  # type: ignore[attr-defined]
            raise

    return type(
        f"PSGRPOConfigFor{num_processes}Processes",
        (PSGRPOConfig,),
        {
            "world_size": property(lambda self: num_processes),
            "__post_init__": post_init,
            "__doc__": config_class_for_launch.__doc__,
        },
    )


def build_config(recipe: Recipe, output_dir: str | os.PathLike[str], num_processes: int | None = None):
    """PSGRPOConfig from a recipe; GRPOConfig's own checks are reported against the recipe file.

    ``num_processes``: build it as a launch of that many processes would (see :func:`config_class_for_launch`)."""
    from ..trainer import PSGRPOConfig

    kwargs = recipe.trainer_kwargs(output_dir)
    config_class = PSGRPOConfig if num_processes is None else config_class_for_launch(num_processes)
    try:
        return config_class(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"{recipe._source}: training settings rejected by GRPOConfig: {exc}") from None
    except ImportError as exc:  # e.g. training.deepspeed without the deepspeed package
        raise RecipeError(f"{recipe._source}: training settings need a package that is not installed: {exc}") from None
