"""Two "machines" on localhost: one decision for all ranks, and output directories that are not shared.

Each machine is its own ``accelerate launch --num_machines 2 --machine_rank R`` (one process each, gloo), started
from its own working directory; a relative ``--output-dir`` then resolves to a different directory on each, which
is what node-local disks look like to a multi-node run. This is the README's Slurm-free check of a launch line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grpo_sim.runner import COMPLETE_MARKER

from recipe_helpers import write_tiny_workspace
from trainer_helpers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # 3 completions per process: every paraphrase set (3 x g=2) spans both machines
    return write_tiny_workspace(
        tmp_path_factory.mktemp("machines"),
        with_eval=False,
        reward={"similarity": "token_f1"},
        per_device_train_batch_size=3,
        max_steps=2,
        save_steps=1,
    )


def two_machines(workspace: Path, cwds: tuple[Path, Path], output_dir: str, *extra: str, timeout: int = 240):
    """Launch machine 0 and machine 1 (one process each) and wait for both; returns [(returncode, output)] x 2."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = []
    for rank, cwd in enumerate(cwds):
        cwd.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
            "--num_machines",
            "2",
            "--machine_rank",
            str(rank),
            "--num_processes",
            "2",
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            str(port),
            "-m",
            "grpo_sim.train",
            "--config",
            str(workspace / "tiny.yaml"),
            "--output-dir",
            output_dir,
            *extra,
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
    return results


def test_node_local_output_dirs_fail_fast_on_every_machine(workspace, tmp_path):
    """A relative --output-dir from two working directories = two node-local directories: both machines stop
    before training with the same explanation (before: rank 0 trained alone into its own directory and the other
    machine's copy of the run stayed empty)."""
    cwds = (tmp_path / "node0", tmp_path / "node1")
    results = two_machines(workspace, cwds, "runs/x")
    for rank, (code, out) in enumerate(results):
        assert code != 0, f"machine {rank} should refuse:\n{out[-3000:]}"
        assert "is not shared between the machines" in out and "rank 1" in out, out[-3000:]
        assert 'Traceback (most recent call last):\n  File "' not in out.split("is not shared")[0][-2000:]
    assert not (cwds[0] / "runs" / "x" / "metrics.jsonl").exists()  # nothing trained
    # what the refused start left does not block the rerun in a shared directory
    shared = tmp_path / "shared"
    results = two_machines(workspace, cwds, str(shared))
    assert all(code == 0 for code, _ in results), results[0][1][-3000:] + results[1][1][-3000:]
    assert (shared / "final" / "model.safetensors").exists()


def test_resume_checkpoint_is_chosen_by_rank0_for_every_machine(workspace, tmp_path):
    """Node-local copies (save_on_each_node) where machine 1 lacks the newest checkpoint: before, each machine
    resumed from its own newest (steps 2 and 1: the ranks disagree on where training is); now rank 0 picks
    checkpoint-2 for everyone and the machine that lacks it stops every rank with a message."""
    cwds = (tmp_path / "node0", tmp_path / "node1")
    shared = tmp_path / "first"
    results = two_machines(workspace, cwds, str(shared))
    assert all(code == 0 for code, _ in results), results[0][1][-3000:]
    for cwd in cwds:  # each machine's local copy of the run
        shutil.copytree(shared, cwd / "runs" / "x")
    shutil.rmtree(cwds[1] / "runs" / "x" / "checkpoint-2")
    assert (cwds[0] / "runs" / "x" / "checkpoint-2" / COMPLETE_MARKER).exists()
    results = two_machines(
        workspace,
        cwds,
        "runs/x",
        "--resume",
        "auto",
        "--set",
        "training.save_on_each_node=true",
        "--set",
        "training.max_steps=3",
    )
    for rank, (code, out) in enumerate(results):
        assert code != 0, f"machine {rank} should refuse:\n{out[-3000:]}"
        assert "rank 0 resumes from" in out and "checkpoint-2" in out and "rank 1" in out, out[-3000:]
    rows = [json.loads(line) for line in (cwds[0] / "runs" / "x" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 2  # nothing trained past the checkpoints
