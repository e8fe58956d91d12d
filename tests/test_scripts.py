"""The launcher scripts: syntax, usage errors, and the GPU smoke script's CPU path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["vllm_server.sh", "slurm_train.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_vllm_server_without_arguments_prints_usage():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "vllm_server.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "scripts/vllm_server.sh MODEL" in proc.stdout


@pytest.mark.slow
def test_gpu_smoke_runs_on_cpu(tmp_path):
    out = tmp_path / "smoke.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_smoke.py"), "--device", "cpu", "--hidden", "32", "--layers", "1",
         "--heads", "2", "--steps", "2", "--completion-length", "4", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 2 and result["device"] == "cpu" and result["step_time_s_median"] > 0
