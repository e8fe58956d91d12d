"""Named data and model sources: what a recipe names instead of a path or a hub id.

``data.train: demo`` and ``model.name_or_path: grpo-sim:demo-warmstart`` are the bundled demo's
entries; the runner, ``grpo-sim check`` and ``grpo-sim plan`` look names up here instead of knowing
the demo. A package adds its own with :func:`register_data_source` / :func:`register_model_source`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class DataSource:
    #: (recipe, split 'train' | 'eval') -> paraphrase sets or ordinary rows, as runner.load_data returns them
    load: Callable[[Any, str], list]
    #: recipe -> n (paraphrases per set), known without loading the data
    paraphrases_per_set: Callable[[Any], int | None]


@dataclass(frozen=True)
class ModelSource:
    #: (recipe, cache_dir) -> a local model directory, built or fetched as the source does
    resolve: Callable[[Any, Path | None], str]


DATA_SOURCES: dict[str, DataSource] = {}
MODEL_SOURCES: dict[str, ModelSource] = {}


def register_data_source(name: str, source: DataSource) -> None:
    DATA_SOURCES[name] = source


def register_model_source(name: str, source: ModelSource) -> None:
    MODEL_SOURCES[name] = source


def _demo_sets(recipe: Any, split: str) -> list:
    from .demo import demo_data

    train, eval_ = demo_data(recipe.data.demo)
    return train if split == "train" else eval_


def _demo_warmstart(recipe: Any, cache_dir: Path | None) -> str:
    from .demo import demo_warmstart

    return str(demo_warmstart(recipe.data.demo, cache_dir=cache_dir))


# the bundled demo (settings in the recipe's data.demo section)
register_data_source("demo", DataSource(_demo_sets, lambda recipe: recipe.data.demo.num_paraphrases))
register_model_source("grpo-sim:demo-warmstart", ModelSource(_demo_warmstart))
