"""GPU smoke test: a few PS-GRPO steps on a ~100M-parameter model built locally (no network).

    python scripts/gpu_smoke.py                      # CUDA, bf16, HF generation
    python scripts/gpu_smoke.py --device cpu --hidden 64 --layers 2 --steps 2   # the same path on CPU

Prints step time, generated tokens/s and peak GPU memory, and exits non-zero if anything fails.
Needs only this package and its dependencies (trl, peft, transformers, torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--completion-length", type=int, default=64)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset

    from grpo_sim.data.schema import to_training_rows
    from grpo_sim.data.synthetic import build_demo_dataset, demo_text_corpus
    from grpo_sim.models.tiny import count_parameters, load_policy, make_tiny_policy
    from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: no CUDA device; use --device cpu for the CPU path", file=sys.stderr)
        return 2
    n, g, sets_per_batch = 4, 4, 4
    train, eval_, corpus = build_demo_dataset(sets_per_batch * args.steps + 4, 2, num_paraphrases=n, seed=0)
    rows = Dataset.from_list(to_training_rows(train))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy"
        make_tiny_policy(path, demo_text_corpus(train + eval_, corpus), hidden_size=args.hidden,
                         num_layers=args.layers, num_heads=args.heads, max_position_embeddings=1024)
        model, tokenizer = load_policy(path, dtype=torch.bfloat16 if cuda else torch.float32)
        params = count_parameters(model)
        config = PSGRPOConfig(
            output_dir=str(Path(tmp) / "run"), use_cpu=not cuda, bf16=cuda, max_steps=args.steps,
            per_device_train_batch_size=n * g * sets_per_batch, num_generations=g,
            max_completion_length=args.completion_length, learning_rate=1e-5, beta=0.04, logging_steps=1,
            save_strategy="no", report_to=[], similarity="bleu2", accuracy_weight=1.0, disable_tqdm=True,
        )
        trainer = PSGRPOTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
        logs = [h for h in trainer.state.log_history if "step_time" in h]
        step_times = [h["step_time"] for h in logs]
        tokens = sum(h.get("completions/mean_length", 0) * config.per_device_train_batch_size for h in logs)
        result = {
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "parameters": params,
            "steps": len(step_times),
            "step_time_s_median": sorted(step_times)[len(step_times) // 2] if step_times else None,
            "generated_tokens_per_s": tokens / elapsed if elapsed else None,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "last_reward": logs[-1].get("reward") if logs else None,
            "last_consistency": logs[-1].get("rewards/consistency/mean") if logs else None,
        }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    ok = result["steps"] == args.steps and result["last_reward"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
