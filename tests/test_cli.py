"""The grpo-sim command end to end on a tiny recipe: train, resume, signals, output-dir policy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.runner import COMPLETE_MARKER

from recipe_helpers import write_tiny_workspace
from trainer_helpers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("cli"))


def train(workspace, out, *extra):
    return runner.invoke(app, ["train", str(workspace / "tiny.yaml"), "--output-dir", str(out), *extra])


def weights(path: Path):
    return load_file(str(path / "model.safetensors"))


def test_train_writes_the_run_directory(workspace, tmp_path):
    out = tmp_path / "run"
    result = train(workspace, out)
    assert result.exit_code == 0, result.output
    assert (out / "recipe.resolved.yaml").exists()
    resolved = yaml.safe_load((out / "recipe.resolved.yaml").read_text())
    assert resolved["reward"]["similarity"] == "token_f1" and resolved["training"]["max_steps"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert "rewards/consistency/mean" in rows[0] and "ps_grpo/agreement" in rows[0]
    assert (out / "checkpoint-2" / COMPLETE_MARKER).exists() and (out / "checkpoint-4" / COMPLETE_MARKER).exists()
    card = (out / "final" / "README.md").read_text()
    assert "token_f1" in card and "tiny.yaml" in card and "train.jsonl" in card
    assert (out / "final" / "model.safetensors").exists()


def test_refuses_non_empty_output_dir_without_resume(workspace, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something.txt").write_text("keep me")
    result = train(workspace, out)
    assert result.exit_code == 2
    assert "not empty" in result.output and "--resume auto" in result.output and "Traceback" not in result.output
    assert (out / "something.txt").read_text() == "keep me"


def test_bad_recipe_is_a_clean_error(workspace, tmp_path):
    bad = yaml.safe_load((workspace / "tiny.yaml").read_text())
    bad["training"]["learning_rat"] = 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = runner.invoke(app, ["train", str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "did you mean 'learning_rate'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["check", str(workspace / "tiny.yaml"), "--set", "reward.advantage=sett"])
    assert result.exit_code == 2 and "reward.advantage" in result.output


def test_resume_auto_skips_incomplete_checkpoint_and_is_bit_identical(workspace, tmp_path, caplog):
    full = tmp_path / "full"
    assert train(workspace, full).exit_code == 0
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(full / "checkpoint-2", part / "checkpoint-2")
    shutil.copy(full / "recipe.resolved.yaml", part / "recipe.resolved.yaml")
    # a checkpoint whose write was interrupted: files but no completion marker
    shutil.copytree(full / "checkpoint-4", part / "checkpoint-3")
    (part / "checkpoint-3" / COMPLETE_MARKER).unlink()
    result = train(workspace, part, "--resume", "auto")
    assert result.exit_code == 0, result.output
    assert any("checkpoint-3" in r.message and "did not finish" in r.message for r in caplog.records)
    a, b = weights(full / "final"), weights(part / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [3, 4]


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(workspace, tmp_path):
    out = tmp_path / "sig"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "grpo_sim.cli",
        "train",
        str(workspace / "tiny.yaml"),
        "-o",
        str(out),
        "--set",
        "training.max_steps=400",
        "--set",
        "training.save_strategy=no",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (
        (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / COMPLETE_MARKER).exists(), output[-2000:]
    assert "--resume auto" in output and "stopped by SIGTERM;" in output and "interrupted by" not in output
    step = int(checkpoints[0].name.split("-")[1])
    assert 2 <= step < 400
    result = train(
        workspace,
        out,
        "--resume",
        "auto",
        "--set",
        f"training.max_steps={step + 1}",
        "--set",
        "training.save_strategy=no",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == step + 1 or any(r["step"] == step + 1 for r in rows)


def test_two_process_training_with_the_cpu_accelerate_config(workspace, tmp_path):
    """accelerate launch with configs/accelerate/cpu_2proc.yaml really starts two gloo processes."""
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(free_port()),
        "-m",
        "grpo_sim.train",
        "--config",
        str(workspace / "tiny.yaml"),
        "--output-dir",
        str(out),
        "--set",
        "training.per_device_train_batch_size=3",
        "--set",
        "training.max_steps=2",
        "--set",
        "training.save_strategy=no",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # written once, by rank 0
    assert (out / "final" / "model.safetensors").exists()


def test_plan_command(workspace):
    result = runner.invoke(app, ["plan", str(ROOT / "recipes" / "qwen2.5-3b" / "triviaqa_ps_grpo.yaml"), "-p", "7"])
    assert result.exit_code == 0, result.output
    assert "672" in result.output and "whole paraphrase sets" in result.output
    result = runner.invoke(
        app, ["plan", str(workspace / "tiny.yaml"), "-p", "2", "--set", "training.per_device_train_batch_size=4"]
    )
    assert result.exit_code == 2 and "not a multiple of one set" in result.output


def test_two_process_launch_fails_fast_on_bad_output_dir(workspace, tmp_path):
    """Every rank must reach the same verdict and exit; no rank may wait for one that already failed."""
    out = tmp_path / "busy"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(free_port()),
        "-m",
        "grpo_sim.train",
        "--config",
        str(workspace / "tiny.yaml"),
        "--output-dir",
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "is not empty" in proc.stdout + proc.stderr
    assert (out / "old.txt").read_text() == "an earlier run"
