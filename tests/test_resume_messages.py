"""The small resume defects: what a stopped run prints (the resume command, the signal message) and what its
metrics.jsonl keeps when it is resumed."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer

from grpo_sim.cli import _report_stop
from grpo_sim.runner import GracefulStopCallback, Interrupted, MetricsFileCallback


def test_resume_command_is_one_line_that_copy_pastes_into_a_shell(tmp_path, capsys):
    """Printed to a file (a batch job's log) the command used to be wrapped at 80 columns inside the path."""
    out = tmp_path / ("a-long-run-directory-name-" * 4 + "with space")
    stop = Interrupted(signal.SIGTERM, str(out / "checkpoint-3"), out)
    with pytest.raises(typer.Exit) as exit_:
        _report_stop(stop, "train", Path("recipes/own data/tiny_cpu.yaml"), ["training.max_steps=10"])
    assert exit_.value.exit_code == 128 + signal.SIGTERM
    lines = capsys.readouterr().err.splitlines()
    command = lines[lines.index("Resume with:") + 1]
    assert shlex.split(command) == [
        "grpo-sim",
        "train",
        "recipes/own data/tiny_cpu.yaml",
        "--output-dir",
        str(out),
        "--resume",
        "auto",
        "--set",
        "training.max_steps=10",
    ]


def test_sigterm_message_does_not_offer_ctrl_c(capsys):
    GracefulStopCallback._announce(signal.SIGTERM)
    said = capsys.readouterr().err
    assert "SIGTERM received: saving a checkpoint after this step" in said and "Ctrl-C" not in said
    GracefulStopCallback._announce(signal.SIGINT)  # at a terminal a second Ctrl-C does abort
    assert "Ctrl-C again to abort without saving" in capsys.readouterr().err


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _begin(out: Path, step: int, max_steps: int) -> None:
    state = SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)
    MetricsFileCallback(out).on_train_begin(None, state, None)


def test_resumed_metrics_drop_the_interrupted_runs_summary_row(tmp_path):
    summary = {"train_runtime": 1.5, "train_loss": 0.1}
    rows = [
        {"step": 1, "loss": 0.5, "reward": 0.1},
        {"step": 2, "loss": 0.4, "reward": 0.2},
        {"step": 2, **summary},  # the run stopped by SIGTERM after step 2 (of 6) logged its end-of-training summary
        {"step": 3, "loss": 0.3},  # a step logged after the checkpoint the resumed run starts from
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _begin(tmp_path, step=2, max_steps=6)
    assert _rows(tmp_path / "metrics.jsonl") == rows[:2]
    # a run that reached max_steps (killed before final/) trains no further step: its summary stays
    done = rows[:2] + [{"step": 2, **summary}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in done))
    _begin(tmp_path, step=2, max_steps=2)
    assert _rows(tmp_path / "metrics.jsonl") == done
