"""The harness of the exact-resume tests: a short run, the same run stopped by a real SIGTERM during step k (the
runner's graceful stop: grpo_sim.signals + runner callbacks), and its resumption from the checkpoint that stop
saved. Used in-process (tests/test_resume_exact.py) and under torchrun (tests/resume_worker.py).

What a run leaves to compare: ``metrics.jsonl`` (the runner's MetricsFileCallback) and the final weights.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from grpo_sim.runner.callbacks import GracefulStopCallback, MetricsFileCallback
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

from trainer_helpers import common_args, dataset, policy

#: the configurations resumed at every step. Each has checkpoints inside generation windows (TRL reuses one
#: generation batch for steps_per_generation x num_iterations micro-steps) and one logs every 2 steps.
CONFIGS: dict[str, dict[str, Any]] = {
    # gradient accumulation 2 (steps_per_generation 2), num_iterations 2: a batch every 2 optimizer steps;
    # relaxed reward (kappa 1 < n - 1 = 2), a log every 2 steps
    "accumulation_iterations_relaxed": dict(
        training=dict(
            per_device_train_batch_size=6,
            gradient_accumulation_steps=2,
            num_iterations=2,
            max_steps=6,
            logging_steps=2,
        ),
        reward=dict(similarity="token_f1", relaxed_kappa=1, accuracy_weight=1.0),
    ),
    # one micro-step per optimizer step, a generation batch of 3 sets reused for 3 steps; exact reward; 6 steps
    # an epoch, so resuming at step 6.. starts in the second epoch (the sampler must shuffle as it did there)
    "steps_per_generation_exact": dict(
        training=dict(per_device_train_batch_size=6, steps_per_generation=3, max_steps=9),
        reward=dict(similarity="token_f1"),
    ),
    # ordinary prompts (no sets: TRL's own sampler), a reference reward; 6 of the 18 prompts per generation batch,
    # reused for 2 steps (num_iterations 2): 6 steps an epoch
    "ordinary_prompts": dict(
        training=dict(per_device_train_batch_size=12, num_iterations=2, max_steps=8),
        reward=dict(consistency_weight=0.0, accuracy_weight=1.0),
        data="prompts",
    ),
    # TRL's real VLLMGeneration (server mode) around a fake client; accumulation 2, num_iterations 2
    "vllm_server_fake": dict(
        training=dict(per_device_train_batch_size=6, gradient_accumulation_steps=2, num_iterations=2, max_steps=4),
        reward=dict(similarity="token_f1"),
        vllm=True,
    ),
}

#: keys whose values are wall-clock measurements (or averages of them), never expected to repeat
TIMING_KEYS = ("step_time", "ps_grpo/reward_seconds")


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in row.items()
        if k not in TIMING_KEYS and "runtime" not in k and "per_second" not in k and not k.startswith("train_")
    }


class SigtermDuringStep(TrainerCallback):
    """Sends this process a real SIGTERM at the start of step ``step`` (on the main process only: the graceful
    stop's all-reduce must carry it to the others)."""

    def __init__(self, step: int | None):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if self.step is not None and state.global_step == self.step - 1 and state.is_world_process_zero:
            os.kill(os.getpid(), signal.SIGTERM)


class FakeVLLMClient:
    """Answers like ``trl``'s ``VLLMClient.generate``: n completions per prompt that depend on the prompt."""

    def __init__(self, eos_token_id: int):
        self.eos = eos_token_id

    def generate(self, prompts, n, **kwargs):
        completions = [
            [5 + (sum(p) + 3 * k) % 11, 5 + (len(p) + 2 * k) % 7, self.eos] for p in prompts for k in range(n)
        ]
        return {
            "prompt_ids": prompts,
            "completion_ids": completions,
            "logprobs": [[[-1.0]] * len(c) for c in completions],
        }


def use_fake_vllm_server(trainer: PSGRPOTrainer, eos_token_id: int) -> None:
    """TRL's own VLLMGeneration in server mode (its generate runs unchanged), the client on the main process."""
    import trl.generation.vllm_generation as vg

    generation = vg.VLLMGeneration.__new__(vg.VLLMGeneration)  # skip _init_vllm: no server to connect to
    generation.__dict__.update(
        dict(
            mode="server",
            accelerator=trainer.accelerator,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=None,
            repetition_penalty=1.0,
            max_completion_length=5,
            logprobs=0,
            structured_outputs_regex=None,
            generation_kwargs={},
            model=trainer.model,
        )
    )
    if trainer.accelerator.is_main_process:
        generation.vllm_client = FakeVLLMClient(eos_token_id)
    generation.sync_weights = lambda: None
    trainer.use_vllm = True
    trainer.vllm_generation = generation
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1


def train_run(
    policy_path: str,
    out: Path,
    config: dict[str, Any],
    stop_at: int | None = None,
    resume: str | None = None,
    **overrides: Any,
) -> tuple[PSGRPOTrainer, GracefulStopCallback]:
    """One ``train()`` of ``config`` into ``out`` with the runner's callbacks; SIGTERM during ``stop_at``."""
    args = PSGRPOConfig(
        **common_args(out, save_strategy="no", shuffle_dataset=True, **{**config["training"], **overrides}),
        **config["reward"],
    )
    model, tokenizer = policy(policy_path)
    stopper = GracefulStopCallback()
    rows = dataset()
    if config.get("data") == "prompts":
        rows = rows.remove_columns(["set_id", "paraphrase_id"])
    trainer = PSGRPOTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        callbacks=[MetricsFileCallback(out), stopper, SigtermDuringStep(stop_at)],
    )
    if config.get("vllm"):
        use_fake_vllm_server(trainer, tokenizer.eos_token_id)
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        stopper.uninstall()
    return trainer, stopper


def metrics_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights(trainer: PSGRPOTrainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}


def stop_and_resume(policy_path: str, out: Path, config: dict[str, Any], step: int):
    """SIGTERM during ``step``: the stopped run saves checkpoint-<step>; a new trainer resumes from it."""
    stopped, stopper = train_run(policy_path, out, config, stop_at=step)
    assert stopper.stopped_at == step and stopped.state.global_step == step, (stopper.stopped_at, step)
    checkpoint = out / f"checkpoint-{step}"
    assert checkpoint.is_dir()
    resumed, _ = train_run(policy_path, out, config, resume=str(checkpoint))
    return resumed
