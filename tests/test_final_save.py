"""After training: master weights, the final save, adapter merge, final evaluation, hub push, resume edges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import read_psets

from recipe_helpers import write_tiny_workspace
from trainer_helpers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
cli = CliRunner()
MAX_STEPS = 4


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_tiny_workspace(tmp_path_factory.mktemp("final"), max_steps=MAX_STEPS)


def train(workspace, out, *extra):
    return cli.invoke(app, ["train", str(workspace / "tiny.yaml"), "--output-dir", str(out), *extra])


def weights(path: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(path / name))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def metric_steps(out: Path) -> list[int]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def full_run(workspace, tmp_path_factory):
    """One uninterrupted run: checkpoint-2, checkpoint-4 (= max_steps), final/."""
    out = tmp_path_factory.mktemp("full") / "run"
    result = train(workspace, out)
    assert result.exit_code == 0, result.output
    return out


def test_final_weights_are_the_trained_weights(full_run):
    # checkpoint-4 holds the state after the last step; final/ must be exactly that model
    assert_same_weights(weights(full_run / "final"), weights(full_run / f"checkpoint-{MAX_STEPS}"))
    assert (full_run / "final" / "README.md").exists() and (full_run / "final" / "tokenizer.json").exists()


def test_resume_drops_metrics_rows_past_the_checkpoint(workspace, full_run, tmp_path):
    part = tmp_path / "part"
    part.mkdir()
    shutil_copy(full_run, part, "checkpoint-2", "recipe.resolved.yaml", "metrics.jsonl")  # metrics hold 1..4
    result = train(workspace, part, "--resume", "auto")
    assert result.exit_code == 0, result.output
    assert metric_steps(part) == [1, 2, 3, 4]  # not 1, 2, 3, 4, 3, 4


def test_resume_at_max_steps_trains_no_further_step(workspace, full_run, tmp_path):
    """A run killed after its last checkpoint but before final/ finishes with the uninterrupted final model."""
    part = tmp_path / "part"
    part.mkdir()
    shutil_copy(full_run, part, f"checkpoint-{MAX_STEPS}", "recipe.resolved.yaml", "metrics.jsonl")
    result = train(workspace, part, "--resume", "auto")
    assert result.exit_code == 0, result.output
    assert_same_weights(weights(part / "final"), weights(full_run / "final"))
    assert metric_steps(part) == [1, 2, 3, 4]
    assert not (part / f"checkpoint-{MAX_STEPS + 1}").exists()


class SignalDuringStep(TrainerCallback):
    """Sends SIGTERM to this process while step ``at`` (1-based) runs, as a scheduler would."""

    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at - 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_the_last_step_finishes_the_run(workspace, full_run, tmp_path, monkeypatch):
    import grpo_sim.trainer as trainer_module  # the runner imports the trainer lazily: patch it where defined

    real_init = trainer_module.PSGRPOTrainer.__init__

    def init_with_signal(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), SignalDuringStep(MAX_STEPS)]
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.PSGRPOTrainer, "__init__", init_with_signal)
    out = tmp_path / "sig"
    result = train(workspace, out)
    assert result.exit_code == 0, result.output
    assert_same_weights(weights(out / "final"), weights(full_run / "final"))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]  # as uninterrupted


def shutil_copy(src: Path, dst: Path, *names: str) -> None:
    import shutil

    for name in names:
        (shutil.copytree if (src / name).is_dir() else shutil.copy)(src / name, dst / name)


def test_bf16_recipe_trains_float32_masters_and_saves_bf16(workspace, tmp_path):
    """Paper recipes: dtype bfloat16, full fine-tuning, lr 1e-6. bf16 AdamW updates would mostly round away."""
    out = tmp_path / "bf16"
    result = train(
        workspace,
        out,
        "--set",
        "model.dtype=bfloat16",
        "--set",
        "model.freeze_embeddings=true",
        "--set",
        "training.learning_rate=1e-6",
        "--set",
        "training.max_steps=3",
        "--set",
        "training.save_steps=3",
        "--set",
        "training.num_generations=3",
        "--set",
        "training.per_device_train_batch_size=9",
        "--set",
        "training.max_completion_length=6",
    )
    assert result.exit_code == 0, result.output
    start = {
        k: v.to(torch.bfloat16).float()
        for k, v in weights(
            Path(yaml.safe_load((workspace / "tiny.yaml").read_text())["model"]["name_or_path"])
        ).items()
    }
    trained = weights(out / "checkpoint-3")
    frozen = {k for k in start if "embed_tokens" in k or "lm_head" in k}  # tied, frozen by the recipe
    changed = sum(int((trained[k].float() != start[k]).sum()) for k in start if k not in frozen)
    total = sum(start[k].numel() for k in start if k not in frozen)
    assert changed / total >= 0.9, f"only {changed}/{total} trainable weights changed"
    assert all(trained[k].dtype == torch.float32 for k in trained)  # the masters, for an exact resume
    final = weights(out / "final")
    assert all(v.dtype == torch.bfloat16 for v in final.values())  # the dtype the recipe asked for
    assert all(torch.equal(final[k], trained[k].to(torch.bfloat16)) for k in final)
    assert json.loads((out / "final" / "config.json").read_text())["dtype"] == "bfloat16"


def test_bf16_recipe_with_kahan_optimizer_trains_bf16_weights_in_place(workspace, tmp_path):
    """Issue #24 item 3: bf16 training that trains without 20 B/param: training.optim stable_adamw (torch-optimi,
    Kahan summation) keeps the weights bf16 (no float32 masters) and still changes them at lr 1e-6."""
    out = tmp_path / "kahan"
    bf16 = ["model.dtype=bfloat16", "model.freeze_embeddings=true", "training.learning_rate=1e-6"]
    steps = ["training.max_steps=3", "training.save_steps=3", "training.num_generations=3"]
    batch = ["training.per_device_train_batch_size=9", "training.max_completion_length=6"]
    settings = bf16 + steps + batch + ["training.optim=stable_adamw"]
    result = train(workspace, out, *[arg for setting in settings for arg in ("--set", setting)])
    assert result.exit_code == 0, result.output
    policy = Path(yaml.safe_load((workspace / "tiny.yaml").read_text())["model"]["name_or_path"])
    start = {k: v.to(torch.bfloat16) for k, v in weights(policy).items()}
    trained = weights(out / "checkpoint-3")
    assert all(v.dtype == torch.bfloat16 for v in trained.values())  # no float32 masters
    frozen = {k for k in start if "embed_tokens" in k or "lm_head" in k}
    total = sum(start[k].numel() for k in start if k not in frozen)
    # The update of 3 steps at lr 1e-6 is below one bf16 step of most weights: Kahan summation carries it in the
    # compensation buffer (saved with the optimizer state, so a resume continues it) until it moves the weight.
    # Plain bf16 AdamW loses it: the buffer is what makes the weights train.
    state = torch.load(out / "checkpoint-3" / "optimizer.pt", weights_only=False)["state"]
    comps = [s["kahan_comp"] for s in state.values() if s.get("kahan_comp") is not None and s["kahan_comp"].dim()]
    assert sum(c.numel() for c in comps) == total and all(c.dtype == torch.bfloat16 for c in comps)
    moved = sum(int((trained[k] != start[k]).sum()) for k in start if k not in frozen)
    carried = sum(int((c != 0).sum()) for c in comps)
    assert carried / total >= 0.9, f"only {carried}/{total} trainable weights carry an update ({moved} moved)"
    final = weights(out / "final")
    assert all(v.dtype == torch.bfloat16 for v in final.values())


def test_lora_merged_final_equals_base_plus_saved_adapter(workspace, tmp_path):
    """merge_adapters: the adapter is saved by the trainer, then merged from disk in one process."""
    from peft import PeftModel

    from grpo_sim.models import load_policy

    out = tmp_path / "lora"
    result = train(
        workspace,
        out,
        "--set",
        "model.dtype=bfloat16",
        "--set",
        "model.lora.r=4",
        "--set",
        "model.merge_adapters=true",
        "--set",
        "training.learning_rate=0.05",
        "--set",
        "training.max_steps=2",
        "--set",
        "training.save_strategy=no",
    )
    assert result.exit_code == 0, result.output
    adapter = weights(out / "final_adapter", "adapter_model.safetensors")
    assert all(v.dtype == torch.float32 for v in adapter.values())  # peft keeps adapters fp32 on a bf16 base
    assert any(("lora_B" in k) and v.abs().sum() > 0 for k, v in adapter.items())  # it trained
    merged = weights(out / "final")
    assert all(v.dtype == torch.bfloat16 for v in merged.values())
    policy = yaml.safe_load((workspace / "tiny.yaml").read_text())["model"]["name_or_path"]
    base, _ = load_policy(policy, dtype="bfloat16")
    expected = PeftModel.from_pretrained(base, str(out / "final_adapter")).merge_and_unload().state_dict()
    assert_same_weights(merged, {k: v for k, v in expected.items() if k in merged})
    # and by hand for one layer: W + (alpha / r) * B @ A
    key = next(k for k in adapter if "q_proj.lora_A" in k)
    a, b = adapter[key], adapter[key.replace("lora_A", "lora_B")]
    name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")  # model.layers.0...
    base_w = weights(Path(policy))[name].to(torch.bfloat16)
    by_hand = (base_w.float() + (32 / 4) * (b @ a)).to(torch.bfloat16)
    assert not torch.equal(merged[name], base_w) and torch.allclose(merged[name].float(), by_hand.float(), atol=1e-2)


def test_push_to_hub_uploads_final_with_its_model_card(workspace, tmp_path, monkeypatch):
    import huggingface_hub
    import transformers.trainer

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    uploads = []

    def fake_upload_folder(repo_id, folder_path, **kwargs):
        uploads.append({"repo_id": repo_id, "folder": folder_path, "files": sorted(os.listdir(folder_path))})

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    out = tmp_path / "hub"
    result = train(
        workspace,
        out,
        "--set",
        "training.push_to_hub=true",
        "--set",
        "training.hub_model_id=me/tiny",
        "--set",
        "training.hub_strategy=end",
        "--set",
        "training.max_steps=1",
        "--set",
        "training.save_strategy=no",
    )
    assert result.exit_code == 0, result.output
    assert len(uploads) == 1, uploads
    assert uploads[0]["repo_id"] == "me/tiny" and Path(uploads[0]["folder"]) == out / "final"
    assert {"model.safetensors", "README.md", "tokenizer.json", "config.json"} <= set(uploads[0]["files"])
    assert "grpo-sim" in (out / "final" / "README.md").read_text()


def test_two_processes_save_on_every_rank_and_evaluate_final_without_collectives(workspace, tmp_path):
    """DDP on 2 CPU processes: every rank takes part in the save; rank 0 evaluates final/ from disk after the
    process group has ended (no collective can wait on it); the numbers equal a one-process evaluation."""
    from grpo_sim.eval import evaluate_model

    out = tmp_path / "ddp"
    record = tmp_path / "record"
    record.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    evaluation = {"enabled": True, "levels": ["e2e"], "metrics": ["exact_match", "bleu2"], "max_new_tokens": 4}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(free_port()),
        str(ROOT / "tests" / "final_save_worker.py"),
        str(record),
        "--config",
        str(workspace / "tiny.yaml"),
        "--output-dir",
        str(out),
        "--set",
        "training.per_device_train_batch_size=3",
        "--set",
        "training.max_steps=2",
        "--set",
        "training.save_steps=2",
        "--set",
        "data.prompt=closed_book",
        "--set",
        f"evaluation={json.dumps(evaluation)}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saves = {int(p.stem.removeprefix("save-rank")): json.loads(p.read_text()) for p in record.glob("save-rank*.json")}
    assert sorted(saves) == [0, 1] and all(s == [str(out / "final")] for s in saves.values()), saves
    evals = [json.loads(p.read_text()) for p in record.glob("eval-rank*.json")]
    assert evals == [{"rank": 0, "process_group": False, "model": str(out / "final")}]
    assert_same_weights(weights(out / "final"), weights(out / "checkpoint-2"))
    summary = json.loads((out / "eval" / "summary.json").read_text())
    again = evaluate_model(
        str(out / "final"),
        read_psets(workspace / "eval.jsonl"),
        levels=("e2e",),
        metrics=("exact_match", "bleu2"),
        template="closed_book",
        max_new_tokens=4,
        progress=False,
        plots=False,
    )
    keys = [k for k, v in again.items() if isinstance(v, (int, float, list)) and k != "schema_version"]
    assert keys and {k: summary[k] for k in keys} == {k: again[k] for k in keys}


def test_fsdp2_final_save_is_in_the_recipe_dtype(tmp_path):
    """Issue #24 item 7: under FSDP2 with mixed precision accelerate trains float32 shards; final/ goes back to the
    recipe's bf16 (half the size), bit-equal to the bf16 weights, config.json saying bfloat16."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    worker = str(ROOT / "tests" / "fsdp_save_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    proc = subprocess.run([*cmd, worker, "in_dtype", str(tmp_path), "60"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    saved = weights(tmp_path / "final")
    reference = torch.load(tmp_path / "reference.pt")
    assert all(v.dtype == torch.bfloat16 for v in saved.values())
    assert_same_weights(saved, {k: v for k, v in reference.items() if k in saved})
    assert json.loads((tmp_path / "final" / "config.json").read_text())["dtype"] == "bfloat16"


def test_load_model_keeps_the_dtype_for_fsdp_mixed_precision(workspace, monkeypatch):
    """Under FSDP with mixed precision the runner does not upcast (accelerate does) but remembers the recipe's dtype
    for final/ (save_trained_model then casts the gathered weights back)."""
    from grpo_sim.recipe import build_config, load_recipe
    from grpo_sim.runner.loading import cpu_defaults, load_model

    recipe = cpu_defaults(load_recipe(workspace / "tiny.yaml", ["model.dtype=bfloat16"]))
    config = build_config(recipe, "OUT")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setattr(config, "mixed_precision", "bf16", raising=False)
    model, _, final_dtype = load_model(recipe, config=config)
    assert final_dtype == torch.bfloat16 and model.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["main_only", "every_rank"])
def test_fsdp2_weights_read_by_the_main_process_alone_block_but_a_gather_on_every_rank_works(tmp_path, mode):
    """Why final/ is saved on every rank: under FSDP2 (fully_shard, gloo on CPU) a read of the sharded weights by
    the main process alone waits for the other ranks until the process-group timeout; the all-rank gather that
    trainer.save_model uses for FSDP2 returns the full, exact weights."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "tests" / "fsdp_save_worker.py"),
        mode,
        str(tmp_path),
        "6",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rank0 = json.loads((tmp_path / f"{mode}-rank0.json").read_text())
    if mode == "every_rank":
        assert rank0["outcome"] == "completed" and rank0["equal"] is True, rank0
    else:
        assert rank0["outcome"] != "completed" and rank0["seconds"] >= 5, rank0
