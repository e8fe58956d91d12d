"""Named data / model sources: the demo is one registered entry, and a package can add its own."""

from __future__ import annotations

import yaml

from grpo_sim.data.synthetic import build_demo_dataset
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
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"name_or_path": "tests:policy"}, "data": {"train": "tiny-sets"},
        "rewards": [{"type": "consistency"}],
        "training": {"num_generations": 2, "per_device_train_batch_size": 6, "report_to": []}}))
    recipe = load_recipe(tmp_path / "r.yaml")
    assert load_data("tiny-sets", recipe, "train") == train
    assert resolve_model_path(recipe) == str(tmp_path / "built")
    decisions = check_start(cpu_defaults(recipe), num_processes=1)
    assert decisions.paraphrases_per_set == 3 and len(decisions.train_sets) == 4
    assert decisions.plan is not None and decisions.plan.generation_batch == 6
