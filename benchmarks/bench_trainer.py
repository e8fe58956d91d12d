"""Step time of PSGRPOTrainer / trl.GRPOTrainer doing the same work, measured in one run.

Same tiny locally built policy, same data, batch and completion length. TRL gets a plain
per-completion reward function of comparable cost: the same token-F1 group reward computed on
the (single-process) batch it is handed, so the only difference left is PS-GRPO's wiring
(set sampler, gather, statistics, collapse guard).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from grpo_sim.data.schema import to_training_rows
from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
from grpo_sim.models import load_policy, make_tiny_policy
from grpo_sim.rewards import group_similarity_rewards
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer


def comparable_reward(completions, set_id, paraphrase_id, **kwargs):
    return group_similarity_rewards(completions, set_id, paraphrase_id, "token_f1").tolist()


def _args(output_dir, steps):
    return dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=24,
        num_generations=4,
        max_completion_length=32,
        max_steps=steps,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        beta=0.0,
        disable_tqdm=True,
        shuffle_dataset=False,
    )


def _step_times(trainer) -> list[float]:
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # keep the benchmark's output to its tables
    trainer.train()
    return [h["step_time"] for h in trainer.state.log_history if "step_time" in h][2:]  # drop warm-up steps


def run(steps: int = 10, rounds: int = 3) -> dict:
    train, eval_, corpus = build_demo_dataset(steps + 4, 2, num_paraphrases=6, seed=0)
    rows = Dataset.from_list(to_training_rows(train))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy"
        make_tiny_policy(path, demo_text_corpus(train + eval_, corpus), hidden_size=128, num_layers=2, num_heads=4)

        def ours(r):
            model, tok = load_policy(path)
            return _step_times(
                PSGRPOTrainer(
                    model=model,
                    args=PSGRPOConfig(**_args(Path(tmp) / f"o{r}", steps), similarity="token_f1"),
                    train_dataset=rows,
                    processing_class=tok,
                )
            )

        def theirs(r):
            model, tok = load_policy(path)
            return _step_times(
                GRPOTrainer(
                    model=model,
                    reward_funcs=[comparable_reward],
                    args=GRPOConfig(**_args(Path(tmp) / f"t{r}", steps)),
                    train_dataset=rows,
                    processing_class=tok,
                )
            )

        ours_times, theirs_times = [], []
        for r in range(rounds):  # alternate which runs first, so warm-up and drift hit both sides
            if r % 2 == 0:
                ours_times += ours(r)
                theirs_times += theirs(r)
            else:
                theirs_times += theirs(r)
                ours_times += ours(r)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    return {"psgrpo_step_s": ours_s, "trl_step_s": theirs_s, "ratio": ours_s / theirs_s, "steps": len(ours_times)}
