"""Resume is exact from ANY checkpoint: a SIGTERM at every step of a short run, each resumed run bit-identical to
the uninterrupted one (every logged row of metrics.jsonl, timings aside, and the final weights).

Checkpoints inside a generation window (TRL reuses one generation batch for steps_per_generation x num_iterations
micro-steps) are the hard case: the resumed run must continue from the saved batch instead of generating again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resume_helpers import CONFIGS, comparable, metrics_rows, stop_and_resume, train_run, weights
from trainer_helpers import build_policy, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


@pytest.fixture(scope="module")
def uninterrupted(policy_path, tmp_path_factory):
    """Each configuration trained once without a stop: its metrics.jsonl rows and final weights."""
    runs = {}
    for name, config in CONFIGS.items():
        out = tmp_path_factory.mktemp(f"full-{name}")
        trainer, _ = train_run(policy_path, out, config)
        runs[name] = (metrics_rows(out), weights(trainer))
    return runs


def assert_same_run(rows, final, expected_rows, expected_final, what):
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [r["step"] for r in expected_rows if "loss" in r], what
    for row, expected in zip(rows, expected_rows):
        assert comparable(row) == comparable(expected), (what, row["step"])
    assert len(rows) == len(expected_rows), (what, [r["step"] for r in rows])
    assert final.keys() == expected_final.keys()
    for name, value in final.items():
        assert torch.equal(value, expected_final[name]), (what, name)


CASES = [
    (name, step)
    for name, config in CONFIGS.items()
    for step in range(1, config["training"]["max_steps"])  # a SIGTERM in the last step lets the run finish
]


@pytest.mark.parametrize(("name", "step"), CASES, ids=[f"{n}-stop{s}" for n, s in CASES])
def test_sigterm_at_any_step_then_resume_is_bit_identical(policy_path, uninterrupted, tmp_path, name, step):
    resumed = stop_and_resume(policy_path, tmp_path, CONFIGS[name], step)
    expected_rows, expected_final = uninterrupted[name]
    assert_same_run(metrics_rows(tmp_path), weights(resumed), expected_rows, expected_final, f"{name} stop {step}")


TWO_PROCESS_STOPS = (1, 2, 3)  # 1 and 3 fall inside generation windows (and logging intervals)


@pytest.fixture(scope="module")
def two_process_runs(policy_path, tmp_path_factory):
    """torchrun starts 2 gloo processes once; tests/resume_worker.py runs the uninterrupted run and every stop."""
    out = tmp_path_factory.mktemp("resume2")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "tests" / "resume_worker.py"),
        policy_path,
        str(out),
        *map(str, TWO_PROCESS_STOPS),
    ]
    # own session: on a timeout the workers are killed with torchrun instead of lingering
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return out


@pytest.mark.parametrize("step", TWO_PROCESS_STOPS)
def test_two_processes_sigterm_then_resume_is_bit_identical(two_process_runs, step):
    full, resumed = two_process_runs / "full", two_process_runs / f"stop{step}"
    expected_final = torch.load(full / "weights0.pt")
    for rank in range(2):  # every process holds the uninterrupted run's weights
        final = torch.load(resumed / f"weights{rank}.pt")
        assert_same_run(metrics_rows(resumed), final, metrics_rows(full), expected_final, f"stop {step} rank {rank}")
    assert (resumed / f"checkpoint-{step}" / "grpo_sim_generation_1.pt").exists()


def test_two_processes_generate_anew_together_when_one_lacks_its_generation_state(two_process_runs):
    """Process 0 restoring its batch while process 1 generates would leave both waiting in different collectives."""
    done = [json.loads((two_process_runs / "missing1" / f"done{rank}.json").read_text()) for rank in range(2)]
    assert done == [{"global_step": 4}, {"global_step": 4}]


def test_checkpoint_without_or_with_unfitting_generation_state_resumes_with_a_warning(policy_path, tmp_path, caplog):
    """An older checkpoint (no generation state) or other batch settings: TRL's behaviour, generate anew, and say
    the resumed run can differ."""
    config = CONFIGS["accumulation_iterations_relaxed"]
    train_run(policy_path, tmp_path, config, stop_at=1)
    checkpoint = tmp_path / "checkpoint-1"
    saved = checkpoint / "grpo_sim_generation_0.pt"
    assert saved.is_file()
    kept = saved.read_bytes()
    saved.unlink()
    with caplog.at_level("WARNING", logger="grpo_sim.trainer"):
        resumed, _ = train_run(policy_path, tmp_path / "old", config, resume=str(checkpoint))
    assert resumed.state.global_step == 6
    assert any("has no grpo_sim_generation_0.pt" in r.message for r in caplog.records)
    caplog.clear()
    saved.write_bytes(kept)
    with caplog.at_level("WARNING", logger="grpo_sim.trainer"):
        resumed, _ = train_run(policy_path, tmp_path / "other", config, resume=str(checkpoint), num_iterations=1)
    assert resumed.state.global_step == 6
    assert any("other settings (num_iterations 2 -> 1)" in r.message for r in caplog.records)
