"""Trains PSGRPOTrainer in colocate mode on the real engine and, right after each automatic weight sync, compares
the engine with the trainer's current weights: greedy tokens, and the logprobs of those tokens.

    python sync_probe.py POLICY DATA OUT.json [--no-sync]

--no-sync makes the sync a no-op (the by-hand check that the comparison detects stale engine weights).
"""

from __future__ import annotations

import json
import sys

import torch
from datasets import Dataset

TIE = 0.02  # logprob gap under which two tokens count as tied for greedy decoding


def main() -> None:
    policy, data, out = sys.argv[1:4]
    no_sync = "--no-sync" in sys.argv
    from vllm import SamplingParams

    from grpo_sim.data.schema import load_psets, to_training_rows
    from grpo_sim.models import load_policy
    from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

    rows = to_training_rows(load_psets(data))
    model, tokenizer = load_policy(policy)
    args = PSGRPOConfig(
        output_dir=str(out) + ".run",
        use_cpu=True,
        bf16=False,
        learning_rate=5e-2,  # large steps: stale engine weights show at once
        per_device_train_batch_size=12,
        num_generations=2,
        max_completion_length=8,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        beta=0.0,
        disable_tqdm=True,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_max_model_length=512,
        similarity="token_f1",
    )
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    generation = trainer.vllm_generation
    if no_sync:
        generation.sync_weights = lambda: None
    probes = [
        tokenizer(row["prompt"][-1]["content"] if isinstance(row["prompt"], list) else row["prompt"])["input_ids"]
        for row in rows[:4]
    ]
    report = []
    original = generation.generate

    @torch.no_grad()
    def compare_then_generate(*a, **kw):
        params = SamplingParams(temperature=0.0, max_tokens=6, logprobs=0, ignore_eos=True)
        outputs = generation.llm.generate([{"prompt_token_ids": p} for p in probes], params, use_tqdm=False)
        policy_now = trainer.accelerator.unwrap_model(trainer.model)
        worst, same_tokens = 0.0, True
        for prompt, output in zip(probes, outputs):
            engine_tokens = list(output.outputs[0].token_ids)
            engine_logps = [next(iter(lp.values())).logprob for lp in output.outputs[0].logprobs]
            ids = torch.tensor([prompt + engine_tokens])
            logits = policy_now(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            logps = torch.log_softmax(logits, dim=-1)
            trainer_logps = logps.gather(1, torch.tensor(engine_tokens)[:, None])[:, 0]
            worst = max(worst, float((trainer_logps - torch.tensor(engine_logps)).abs().max()))
            # the engine's greedy token is the trainer's too (up to near-ties of a random tiny model)
            same_tokens &= bool((logps.max(-1).values - trainer_logps <= TIE).all())
        report.append({"step": int(trainer.state.global_step), "max_logp_diff": worst, "same_greedy": same_tokens})
        return original(*a, **kw)

    generation.generate = compare_then_generate
    trainer.train()
    with open(out, "w") as f:
        json.dump({"report": report, "syncs": getattr(generation, "syncs", None), "mode": generation.weight_sync}, f)


if __name__ == "__main__":
    main()
