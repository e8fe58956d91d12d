"""The trained weights reach the engine: after every automatic sync, the real engine computes what the trainer's
current weights compute."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import HERE, ROOT, env


def test_after_each_sync_the_engine_matches_the_trainers_weights(policy_path, psets_path, tmp_path):
    """PSGRPOTrainer in colocate mode (reload sync) trains 4 steps at lr 5e-2; right after each step's sync, the
    engine's greedy tokens on 4 probe prompts are the trainer's greedy choice under its current weights (up to
    near-ties < 0.02) and the
    engine's logprobs of them match the trainer's (max |diff| < 0.02). Checked by hand: with the sync made a no-op
    (`sync_probe.py ... --no-sync`) the same comparison fails from the second step on (max |diff| well above 0.02,
    greedy tokens differ), so the test detects an engine left with stale weights."""
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "sync_probe.py"), policy_path, psets_path, str(out)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "reload" and result["syncs"] == 4
    report = result["report"]
    assert [r["step"] for r in report] == [0, 1, 2, 3]
    for row in report:
        assert row["same_greedy"] and row["max_logp_diff"] < 0.02, report
