"""A bug (or a broken install) in a required part surfaces as a traceback pointing at it, not as a missing command,
a skipped evaluation or a silently accepted recipe key (issue #15, swallowed errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grpo_sim.recipe import check_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_a_broken_subcommand_module_fails_the_cli_with_a_traceback_naming_it():
    """A failing import inside grpo_sim.eval.cli (eval.report standing in for any bug there) used to drop
    `grpo-sim eval` silently; the same held for `sweep` and `data`."""
    broken = "grpo_sim.eval.report"
    code = (
        f"import sys; sys.modules[{broken!r}] = None\n"  # importing it now raises ImportError
        "from typer.testing import CliRunner\n"
        "from grpo_sim.cli import app\n"
        "print('commands:', sorted(c.name for c in app.registered_commands))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode != 0, run.stdout
    assert "Traceback" in run.stderr and "grpo_sim/eval/" in run.stderr and broken in run.stderr


@pytest.mark.parametrize("module", ["grpo_sim.sweep", "grpo_sim.data.cli", "grpo_sim.eval.cli"])
def test_each_subcommand_module_is_imported_without_a_safety_net(module, monkeypatch):
    """The registration imports each module plainly: an ImportError there propagates (checked in-process by
    re-running the registration on a fresh app)."""
    import typer

    import grpo_sim.cli as cli

    monkeypatch.setattr(cli, "app", typer.Typer())
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=module.replace(".", r"\.")):
        cli._register_subcommands()


def test_final_evaluation_fails_loudly_when_the_evaluator_cannot_be_imported(tmp_path, monkeypatch):
    """grpo_sim.eval is a required part: evaluate_final used to log a warning and return None."""
    from grpo_sim.recipe import parse_recipe
    from grpo_sim.runner import evaluate_final

    monkeypatch.setitem(sys.modules, "grpo_sim.eval", None)
    recipe = parse_recipe({"model": {"name_or_path": "some/model"}, "data": {"train": "t.jsonl"}})
    with pytest.raises(ImportError, match="grpo_sim.eval"):
        evaluate_final(recipe, tmp_path / "final", [], tmp_path / "eval")


def test_a_bug_while_checking_a_training_key_is_not_taken_for_an_uncheckable_annotation(monkeypatch):
    """recipe._check_training caught every Exception around the type check; only pydantic's "cannot build a schema
    for this annotation" may be passed on to GRPOConfig."""
    import grpo_sim.recipe.training_keys as recipe_module

    class BrokenAdapter:
        def __init__(self, annotation):
            pass

        def validate_python(self, value):
            raise ZeroDivisionError("a bug in the checker")

    monkeypatch.setattr(recipe_module, "TypeAdapter", BrokenAdapter)
    with pytest.raises(ZeroDivisionError, match="a bug in the checker"):
        check_recipe(
            {"model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "training": {"learning_rate": 1e-6}}
        )


def test_a_bug_while_loading_a_hub_dataset_is_not_reported_as_unreadable_data(monkeypatch):
    """runner._hf_rows turned any exception into "cannot load hf:..."; a bug must keep its traceback."""
    import datasets

    from grpo_sim.recipe import parse_recipe
    from grpo_sim.runner import RecipeError, load_data

    recipe = parse_recipe({"model": {"name_or_path": "m"}, "data": {"train": "hf:someone/rows"}})

    def buggy(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'split'")

    monkeypatch.setattr(datasets, "load_dataset", buggy)
    with pytest.raises(AttributeError):
        load_data("hf:someone/rows", recipe, "train")

    def missing(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'someone/rows' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(RecipeError, match="data.train: cannot load hf:someone/rows"):
        load_data("hf:someone/rows", recipe, "train")
