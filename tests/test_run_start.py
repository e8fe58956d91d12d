"""How a run starts: PSGRPOConfig built once, and which errors the CLI reports as one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import grpo_sim.cli as cli
import grpo_sim.runner as runner
from grpo_sim.recipe import load_recipe

from recipe_helpers import write_tiny_workspace


def test_a_run_builds_its_config_once(tmp_path, monkeypatch):
    """run_training built PSGRPOConfig three times (agree_on_start, start_problems, the run); one process builds it
    once, and the start checks (batch plan included) read that one."""
    base = write_tiny_workspace(tmp_path / "ws", with_eval=False, max_steps=1, save_strategy="no")
    from grpo_sim.trainer import PSGRPOConfig

    built = []
    original = PSGRPOConfig.__post_init__

    def counting(self):  # every PSGRPOConfig build (batch plans' launch-sized ones too) ends here
        built.append(type(self).__name__)
        original(self)

    monkeypatch.setattr(PSGRPOConfig, "__post_init__", counting)
    result = runner.run_training(load_recipe(base / "tiny.yaml"), output_dir=tmp_path / "run", progress=False)
    assert result.global_step == 1 and built == ["PSGRPOConfig"]


def fail_with(exc: BaseException):
    def run_training(*args, **kwargs):
        raise exc

    return run_training


def test_a_plain_runtime_error_is_a_bug_with_a_traceback_not_a_user_error(tmp_path, monkeypatch):
    """cli.USER_ERRORS held RuntimeError: any bug raising one became a one-line "error:" with exit 2."""
    monkeypatch.setattr(cli, "load_recipe_reporting_all", lambda *args, **kwargs: object())
    monkeypatch.setattr(runner, "run_training", fail_with(RuntimeError("a bug deep inside")))
    result = CliRunner().invoke(cli.app, ["train", str(tmp_path / "r.yaml")])
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1
    assert "error: a bug deep inside" not in result.output

    # our own errors stay one clear line with exit 2
    monkeypatch.setattr(runner, "run_training", fail_with(runner.RunError("output directory X is not empty")))
    result = CliRunner().invoke(cli.app, ["train", str(tmp_path / "r.yaml")])
    assert result.exit_code == 2 and "error: output directory X is not empty" in result.output


@pytest.mark.parametrize("exc", [ValueError("bad key"), FileNotFoundError("no such file")])
def test_bad_input_errors_stay_one_line(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(cli, "load_recipe_reporting_all", lambda *args, **kwargs: object())
    monkeypatch.setattr(runner, "run_training", fail_with(exc))
    result = CliRunner().invoke(cli.app, ["train", str(tmp_path / "r.yaml")])
    assert result.exit_code == 2 and f"error: {exc}" in result.output and "Traceback" not in result.output
