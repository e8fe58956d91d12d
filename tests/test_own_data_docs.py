"""docs/own-data.md, run as written on the real samples: every ``grpo-sim`` command of its CI blocks, in order.

The only changes: the model is made smaller and the runs shorter (``SHRINK``), so the test stays around a minute.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpo_sim.cli import app

from realdata import REALDATA, needs_realdata

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-data.md"
pytestmark = [pytest.mark.slow, needs_realdata]

#: appended to the documented command that starts with the key (sizes and steps only)
SHRINK = {
    "grpo-sim model init": ["--hidden-size", "32", "--layers", "1", "--heads", "2"],
    "grpo-sim sft": ["--set", "sft.max_steps=2"],
    "grpo-sim train": ["--set", "training.max_steps=2"],
}


def documented_commands() -> list[str]:
    """The lines of the bash blocks that follow a ``<!-- ci: own-data -->`` marker."""
    blocks = re.findall(r"<!-- ci: own-data -->\s*```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, f"{DOC} has no CI command blocks"
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_documented_path_runs_on_the_real_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REALDATA", str(REALDATA))
    (tmp_path / "own").mkdir()
    (tmp_path / "recipes" / "own_data").mkdir(parents=True)
    for recipe in (ROOT / "recipes" / "own_data").glob("*.yaml"):
        shutil.copy(recipe, tmp_path / "recipes" / "own_data")
    runner = CliRunner()
    commands = documented_commands()
    assert [c.split()[1] for c in commands if c.startswith("grpo-sim")].count("data") == 15
    for command in commands:
        if command.startswith("export REALDATA="):
            continue  # the test points REALDATA at the samples itself
        assert command.startswith("grpo-sim "), f"not a grpo-sim command: {command}"
        args = [os.path.expandvars(a) for a in shlex.split(command)[1:]]
        args += next((extra for prefix, extra in SHRINK.items() if command.startswith(prefix)), [])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        if command.startswith("grpo-sim data validate"):
            assert "the trainer accepts it" in result.output
        if command.startswith("grpo-sim model init"):
            assert "positions: " in result.output
    info = json.loads((tmp_path / "own" / "model-init" / "model_init.json").read_text())
    assert info["max_position_embeddings"] > 512 and info["sets"] == 14
    assert (tmp_path / "runs" / "own_data-sft" / "final" / "model.safetensors").exists()
    summary = json.loads((tmp_path / "runs" / "own_data" / "eval" / "summary.json").read_text())
    assert "empty_answer_rate" in summary and "consistency_e2e_exact" in summary
    assert (tmp_path / "runs" / "own_data" / "eval-vs-sft" / "report.md").exists()
    # the ordinary-rows path (section 4): ELI5 rows from the release file, trained and evaluated
    rows = [json.loads(line) for line in (tmp_path / "own" / "eli5.train.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (tmp_path / "own" / "eli5.eval.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(held) == 2 and all(set(r) == {"id", "question", "answers"} for r in rows + held)
    assert (tmp_path / "runs" / "eli5_rows-sft" / "final" / "model.safetensors").exists()
    for where in ("eval", "eval-cli"):
        summary = json.loads((tmp_path / "runs" / "eli5_rows" / where / "summary.json").read_text())
        assert summary["kind"] == "rows" and summary["num_rows"] == 2
        assert {"empty_answer_rate", "repetitive_answer_rate", "modal_answer_share", "warnings"} <= set(summary)
        assert summary["config"]["encoders"]["accuracy_embedding"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    trained = json.loads((tmp_path / "runs" / "eli5_rows" / "eval" / "summary.json").read_text())
    assert trained["reference_semantic"] is not None and trained["reference_rouge"] is not None
