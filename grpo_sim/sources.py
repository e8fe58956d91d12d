"""Named data and model sources: what a recipe names instead of a path or a hub id.

``data.train: demo`` and ``model.name_or_path: grpo-sim:demo-warmstart`` are the bundled demo's
entries; the runner, ``grpo-sim check`` and ``grpo-sim plan`` look names up here instead of knowing
the demo. A package adds its own with :func:`register_data_source` / :func:`register_model_source`.
A data source declares its options as a pydantic model; a recipe gives them as ``data.source_options``
and the source's model checks them (:func:`source_option_problems`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError


@dataclass(frozen=True)
class DataSource:
    #: (recipe, split 'train' | 'eval') -> paraphrase sets or ordinary rows, as runner.load_data returns them
    load: Callable[[Any, str], list]
    #: recipe -> n (paraphrases per set), known without loading the data
    paraphrases_per_set: Callable[[Any], int | None]
    #: the source's settings, given in the recipe as data.source_options (None: it takes none)
    options: type[BaseModel] | None = None


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


def source_options(recipe: Any) -> BaseModel | None:
    """The validated ``data.source_options`` of the data source ``data.train`` names (None when it names none, or
    one without options)."""
    source = DATA_SOURCES.get(recipe.data.train)
    if source is None or source.options is None:
        return None
    return source.options.model_validate(recipe.data.source_options)


def source_option_problems(data: Any) -> tuple[dict[str, Any], list[str]]:
    """(the options with their defaults filled in, every problem naming ``data.source_options.KEY``) of a recipe's
    data section. With problems, the options are what validates without the bad keys (their defaults stand in)."""
    from difflib import get_close_matches

    given = data.source_options
    source = DATA_SOURCES.get(data.train)
    if source is None or source.options is None:
        if not given:
            return {}, []
        takes = sorted(name for name, s in DATA_SOURCES.items() if s.options is not None)
        return {}, [
            f"data.source_options: data.train {data.train!r} is not a registered data source that takes "
            f"options ({', '.join(takes)}); remove data.source_options"
        ]
    try:
        return source.options.model_validate(given).model_dump(mode="json"), []
    except ValidationError as exc:
        problems, bad = [], set()
        known = list(source.options.model_fields)
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            bad.add(key)
            path = ".".join(["data.source_options", *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                close = get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f" (it takes {', '.join(known)})"
                problems.append(f"{path}: not an option of data source {data.train!r}{hint}")
            else:
                problems.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
        kept = {key: value for key, value in given.items() if key not in bad}
        try:
            return source.options.model_validate(kept).model_dump(mode="json"), problems
        except ValidationError:  # a required option is missing: nothing valid to stand in
            return {}, problems


# ------------------------------------------------------------------------------------------ the bundled demo
class DemoDataSettings(BaseModel):
    """``data.source_options`` of ``data.train: demo``, the bundled synthetic sets; these defaults are also the full
    ``grpo-sim demo``'s. 200 held-out sets: the standard error of a consistency mean over sets is then about 0.025."""

    model_config = ConfigDict(extra="forbid")

    num_train_sets: int = Field(600, ge=1)
    num_eval_sets: int = Field(200, ge=1)
    num_paraphrases: int = Field(4, ge=2, le=6)
    passages_per_prompt: int = Field(3, ge=1)
    seed: int = 0


def _demo_settings(recipe: Any) -> DemoDataSettings:
    """The demo data's settings: the recipe's source options when it trains on the demo, else the defaults (a
    recipe may start from the demo's warm start with other data)."""
    options = source_options(recipe)
    return options if isinstance(options, DemoDataSettings) else DemoDataSettings()


def _demo_package() -> Any:
    """The demo package, imported by name when a recipe uses it: the demo sits above the run layer and imports this
    module (its data options), so this module must not import it (tests/test_architecture.py: no import cycle)."""
    return importlib.import_module("grpo_sim.demo")


def _demo_sets(recipe: Any, split: str) -> list:
    train, eval_ = _demo_package().demo_data(_demo_settings(recipe))
    return train if split == "train" else eval_


def _demo_warmstart(recipe: Any, cache_dir: Path | None) -> str:
    return str(_demo_package().demo_warmstart(_demo_settings(recipe), cache_dir=cache_dir))


register_data_source(
    "demo", DataSource(_demo_sets, lambda recipe: _demo_settings(recipe).num_paraphrases, options=DemoDataSettings)
)
register_model_source("grpo-sim:demo-warmstart", ModelSource(_demo_warmstart))
