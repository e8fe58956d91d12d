"""The demo's recipe sources: ``data.train: demo`` (the bundled synthetic paraphrase sets) and
``model.name_or_path: grpo-sim:demo-warmstart`` (the demo's warm-started policy).

Registered through grpo-sim's own entry points (pyproject.toml, group ``grpo_sim.sources``), as any package
registers its sources: :mod:`grpo_sim.sources` names no layer above it and loads these only when a recipe names them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..sources import DataSource, ModelSource, source_options
from .run import demo_data, demo_warmstart
from .settings import DemoDataSettings


def _demo_settings(recipe: Any) -> DemoDataSettings:
    """The demo data's settings: the recipe's source options when it trains on the demo, else the defaults (a
    recipe may start from the demo's warm start with other data)."""
    options = source_options(recipe)
    return options if isinstance(options, DemoDataSettings) else DemoDataSettings()


def _demo_sets(recipe: Any, split: str) -> list:
    train, eval_ = demo_data(_demo_settings(recipe))
    return train if split == "train" else eval_


def _demo_warmstart(recipe: Any, cache_dir: Path | None) -> str:
    return str(demo_warmstart(_demo_settings(recipe), cache_dir=cache_dir))


#: ``data.train: demo``; its ``data.source_options`` are :class:`~grpo_sim.demo.settings.DemoDataSettings`
DEMO_DATA = DataSource(_demo_sets, lambda recipe: _demo_settings(recipe).num_paraphrases, options=DemoDataSettings)
#: ``model.name_or_path: grpo-sim:demo-warmstart``
DEMO_WARMSTART = ModelSource(_demo_warmstart)
