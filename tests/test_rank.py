"""One answer to "which process am I": torch.distributed's rank once a process group exists, else RANK."""

from __future__ import annotations

import subprocess
import sys

from grpo_sim.distributed import is_main_process, process_rank


def test_without_a_process_group_the_launcher_variable_decides(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert process_rank() == 0 and is_main_process()
    monkeypatch.setenv("RANK", "3")
    assert process_rank() == 3 and not is_main_process()


def test_a_process_group_wins_over_a_stale_variable(tmp_path):
    # a separate interpreter: the process group is process-wide state
    script = f"""
import os
import torch.distributed as dist
from grpo_sim.distributed import is_main_process, process_rank
os.environ["RANK"] = "1"  # what a wrapper script left behind; the group says rank 0
dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
try:
    assert process_rank() == 0, process_rank()
    assert is_main_process()
finally:
    dist.destroy_process_group()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
