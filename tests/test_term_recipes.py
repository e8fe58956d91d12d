"""The shipped reward-term recipes train a few CPU steps on tiny local data and a tiny policy (grpo-sim train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import write_psets
from grpo_sim.demo.world import build_demo_dataset

from trainer_helpers import build_policy

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "training.use_vllm=false",
    "training.gradient_checkpointing=false",
    "training.report_to=[]",
    "training.max_steps=2",
    "training.num_generations=2",
    "training.gradient_accumulation_steps=1",
    "training.max_completion_length=4",
    "training.save_strategy=no",
    "training.logging_steps=1",
    "training.disable_tqdm=true",
    "model.dtype=float32",
    "model.attn_implementation=eager",
    "evaluation.enabled=false",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("term-recipes")
    policy = build_policy(base / "policy")
    train, _, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    write_psets(base / "sets.jsonl", train)
    with open(base / "eli5.jsonl", "w") as fh:  # ordinary rows, ELI5-like: a question and gold explanations
        for s in train:
            fh.write(json.dumps({"question": s.question, "answers": s.answers, "id": s.set_id}) + "\n")
    return base, policy


def train(recipe: str, out: Path, policy: str, *overrides: str):
    args = ["train", str(ROOT / "recipes" / recipe), "-o", str(out), "--set", f"model.name_or_path={policy}"]
    for item in (*TINY, *overrides):
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "recipe, term", [("semantic-reward/eli5_embedding.yaml", "semantic"), ("semantic-reward/eli5_bmas.yaml", "bmas")]
)
def test_eli5_reference_recipes_train(workspace, tmp_path, recipe, term):
    base, policy = workspace
    rows = train(
        recipe, tmp_path / "run", policy, f"data.train={base / 'eli5.jsonl'}", "training.per_device_train_batch_size=4"
    )
    logged = [r for r in rows if "reward" in r]
    assert len(logged) == 2 and all(0 <= r[f"rewards/{term}/mean"] <= 1 for r in logged)
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_mixed_recipe_trains_with_a_function_term(workspace, tmp_path):
    base, policy = workspace
    rows = train(
        "mixed/triviaqa_consistency_reference_function.yaml",
        tmp_path / "run",
        policy,
        f"data.train={base / 'sets.jsonl'}",
        "data.eval=null",
        "data.paraphrases_per_set=3",
        "training.per_device_train_batch_size=6",
        "training.lr_scheduler_type=constant",
    )
    logged = [r for r in rows if "reward" in r]
    assert len(logged) == 2
    for name in ("consistency", "accuracy", "length_window"):
        assert all(0 <= r[f"rewards/{name}/mean"] <= 1 for r in logged), name
