"""Named data / model sources: the demo is one registered entry, and a package can add its own."""

from __future__ import annotations

import pytest
import yaml

from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.recipe import load_recipe
from grpo_sim.runner import check_start, cpu_defaults, load_data, resolve_model_path
from grpo_sim.sources import (
    DATA_SOURCES,
    MODEL_SOURCES,
    DataSource,
    ModelSource,
    register_data_source,
    register_model_source,
)


def test_the_demo_is_a_registered_source():
    assert "demo" in DATA_SOURCES and "grpo-sim:demo-warmstart" in MODEL_SOURCES


def test_a_registered_source_checks_like_a_file(tmp_path, monkeypatch):
    train, _, _ = build_demo_dataset(4, 0, num_paraphrases=3, seed=1)
    monkeypatch.setitem(DATA_SOURCES, "tiny-sets", None)  # removed again after the test
    monkeypatch.setitem(MODEL_SOURCES, "tests:policy", None)
    register_data_source("tiny-sets", DataSource(lambda recipe, split: train, lambda recipe: 3))
    register_model_source("tests:policy", ModelSource(lambda recipe, cache_dir: str(tmp_path / "built")))
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": "tests:policy"},
                "data": {"train": "tiny-sets"},
                "rewards": [{"type": "consistency"}],
                "training": {"num_generations": 2, "per_device_train_batch_size": 6, "report_to": []},
            }
        )
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    assert load_data("tiny-sets", recipe, "train") == train
    assert resolve_model_path(recipe) == str(tmp_path / "built")
    decisions = check_start(cpu_defaults(recipe), num_processes=1)
    assert decisions.paraphrases_per_set == 3 and len(decisions.train_sets) == 4
    assert decisions.plan is not None and decisions.plan.generation_batch == 6


def test_a_data_source_checks_its_own_options_and_the_schema_knows_no_demo(tmp_path, monkeypatch):
    """data.source_options is validated by the source data.train names; errors name the option."""
    from pydantic import BaseModel, ConfigDict, Field

    from grpo_sim.recipe import DataSettings, RecipeError
    from grpo_sim.sources import source_options

    assert "demo" not in DataSettings.model_fields  # the demo is a source, not a recipe section

    class TinySetOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        num_sets: int = Field(4, ge=1)
        shuffle: bool = False

    train, _, _ = build_demo_dataset(6, 0, num_paraphrases=3, seed=1)
    monkeypatch.setitem(DATA_SOURCES, "tiny-sets", None)
    seen = []

    def load(recipe, split):
        seen.append(source_options(recipe))
        return train[: source_options(recipe).num_sets]

    register_data_source("tiny-sets", DataSource(load, lambda recipe: 3, options=TinySetOptions))
    recipe_data = {
        "model": {"name_or_path": "some/model"},
        "rewards": [{"type": "consistency"}],
        "training": {"num_generations": 2, "per_device_train_batch_size": 6, "report_to": []},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**recipe_data, "data": {"train": "tiny-sets", "source_options": {"num_sets": 5}}}))
    recipe = load_recipe(path)
    assert recipe.data.source_options == {"num_sets": 5, "shuffle": False}  # defaults filled (resolved recipe)
    assert len(load_data("tiny-sets", recipe, "train")) == 5 and seen[-1] == TinySetOptions(num_sets=5)

    path.write_text(
        yaml.safe_dump(
            {**recipe_data, "data": {"train": "tiny-sets", "source_options": {"num_set": 5, "shuffle": "maybe"}}}
        )
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "data.source_options.num_set: not an option of data source 'tiny-sets'; did you mean 'num_sets'?" in str(
        err.value
    )
    assert "data.source_options.shuffle: Input should be a valid boolean" in str(err.value)

    path.write_text(yaml.safe_dump({**recipe_data, "data": {"train": "train.jsonl", "source_options": {"x": 1}}}))
    with pytest.raises(
        RecipeError,
        match="data.source_options: data.train 'train.jsonl' is not a registered data source that takes options",
    ):
        load_recipe(path)


def test_demo_recipe_options_size_the_demo_data():
    from pathlib import Path

    recipe = load_recipe(
        Path(__file__).resolve().parents[1] / "recipes" / "demo" / "ps_grpo.yaml",
        ["data.source_options.num_paraphrases=3"],
    )
    assert recipe.data.source_options["num_paraphrases"] == 3
    assert DATA_SOURCES["demo"].paraphrases_per_set(recipe) == 3


# ------------------------------------------------------------------------------------------ sources as plugins
@pytest.fixture
def registries(monkeypatch):
    """The registries as they are, restored after the test (registrations and loaded entry points alike)."""
    from grpo_sim import sources

    for registry in (DATA_SOURCES, MODEL_SOURCES):
        monkeypatch.setattr(registry, "_sources", dict(registry._sources))
        monkeypatch.setattr(registry, "_origin", dict(registry._origin))
    monkeypatch.setattr(sources, "_LOADED_ENTRY_POINTS", set(sources._LOADED_ENTRY_POINTS))
    return sources


def test_a_name_is_registered_once_unless_replaced_on_purpose(registries):
    first = DataSource(lambda recipe, split: [], lambda recipe: 1)
    second = DataSource(lambda recipe, split: [1], lambda recipe: 1)
    register_data_source("tiny-once", first)
    with pytest.raises(registries.SourceError, match="data source 'tiny-once' is already registered.*replace=True"):
        register_data_source("tiny-once", second)
    assert DATA_SOURCES["tiny-once"] is first
    register_data_source("tiny-once", second, replace=True)
    assert DATA_SOURCES["tiny-once"] is second
    with pytest.raises(registries.SourceError, match="model source 'demo' is a DataSource, not a .*ModelSource"):
        register_model_source("demo", first)


def _install_plugin(root, name: str, module: str, code: str, entry_points: str) -> None:
    """A third-party package as pip leaves it: its module and a dist-info with entry_points.txt, under ``root``."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[grpo_sim.sources]\n{entry_points}\n")


PLUGIN = """
import json
from grpo_sim.sources import DataSource, ModelSource

def _rows(recipe, split):
    return [{"prompt": f"question {k}?", "answers": ["yes"]} for k in range(4)]

ROWS = DataSource(_rows, lambda recipe: 1)
POLICY = ModelSource(lambda recipe, cache_dir: "/models/acme-tiny")
NOT_A_SOURCE = 42
"""


def test_an_installed_package_adds_sources_through_entry_points(tmp_path, monkeypatch, registries):
    """Nothing in grpo-sim is touched: the package is on sys.path with a dist-info naming its sources."""
    _install_plugin(
        tmp_path,
        "acme_sources",
        "acme_sources",
        PLUGIN,
        "acme-rows = acme_sources:ROWS\nacme:tiny-policy = acme_sources:POLICY",
    )
    assert "acme-rows" not in DATA_SOURCES  # not installed yet
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "acme_sources", raising=False)
    assert "acme-rows" in DATA_SOURCES and "acme:tiny-policy" in MODEL_SOURCES
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": "acme:tiny-policy"},
                "data": {"train": "acme-rows"},
                "rewards": [{"type": "reference", "similarity": "token_f1"}],
                "training": {"num_generations": 2, "per_device_train_batch_size": 4, "report_to": []},
            }
        )
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    assert load_data("acme-rows", recipe, "train")[0]["prompt"] == "question 0?"
    assert resolve_model_path(recipe) == "/models/acme-tiny"
    assert {"demo", "acme-rows"} <= set(DATA_SOURCES)  # listing loads every installed source


def test_a_plugin_that_is_not_a_source_or_takes_a_name_is_named(tmp_path, monkeypatch, registries):
    _install_plugin(
        tmp_path, "acme_bad", "acme_bad", PLUGIN, "acme-bad = acme_bad:NOT_A_SOURCE\nacme-gone = acme_bad:MISSING"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(registries.SourceError, match=r"source 'acme-bad' \(package acme_bad, entry point acme-bad = "):
        DATA_SOURCES.get("acme-bad")
    for _ in range(2):  # every time: a broken plugin never passes for a file name
        with pytest.raises(registries.SourceError, match="source 'acme-gone' .* failed to load: AttributeError"):
            DATA_SOURCES.get("acme-gone")


def test_a_plugin_may_not_take_a_registered_name(tmp_path, monkeypatch, registries):
    register_data_source("acme-taken", DataSource(lambda recipe, split: [], lambda recipe: 1))
    _install_plugin(tmp_path, "acme_dup", "acme_dup", PLUGIN, "acme-taken = acme_dup:ROWS")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        registries.SourceError,
        match=r"data source 'acme-taken' is already registered; a second one \(by package acme_dup, entry point",
    ):
        list(DATA_SOURCES)  # listing loads every installed source


def test_a_stale_copy_of_a_packages_metadata_does_not_hide_its_sources(tmp_path, monkeypatch, registries):
    """An old ``*.egg-info`` left in a source checkout (first on sys.path when a command runs there) without the
    entry points must not hide those of the installed copy (importlib.metadata.entry_points keeps one per name)."""
    installed, checkout = tmp_path / "site", tmp_path / "checkout"
    installed.mkdir()
    checkout.mkdir()
    _install_plugin(installed, "acme_twice", "acme_twice", PLUGIN, "acme-twice = acme_twice:ROWS")
    stale = checkout / "acme_twice.egg-info"
    stale.mkdir()
    (stale / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: acme_twice\nVersion: 0.9\n")
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.syspath_prepend(str(checkout))  # the checkout comes first, as the current directory does
    assert "acme-twice" in DATA_SOURCES


def test_import_grpo_sim_does_not_load_trl():
    """``from grpo_sim import PSGRPOTrainer`` works, but a bare ``import grpo_sim`` (the command line) stays light."""
    import subprocess
    import sys

    code = "import sys, grpo_sim; assert 'trl' not in sys.modules; grpo_sim.PSGRPOTrainer; assert 'trl' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
