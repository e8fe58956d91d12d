"""Worker for the ZeRO-3 end-of-run test: final evaluation and adapter merge after training under ZeRO-3 init.

Launched by torchrun (2 gloo ranks, DS_ACCELERATOR=cpu). It leaves the process as grpo_sim's runner does after a
ZeRO-3 run: deepspeed's process group used and then destroyed (``runner.end_distributed``), while the run's ZeRO-3
HfDeepSpeedConfig is still alive (the training arguments hold it). Rank 0 then evaluates final/ from disk and merges
a saved LoRA adapter, as ``run_training`` does; both must load whole models.

    zero3_final_eval_worker.py POLICY_DIR ADAPTER_DIR EVAL_SETS_JSONL OUT_DIR
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path


def main() -> None:
    policy_dir, adapter_dir, eval_path, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    import deepspeed
    import torch.distributed as dist
    from transformers.integrations import HfDeepSpeedConfig

    from grpo_sim import runner
    from grpo_sim.data.schema import read_psets
    from grpo_sim.recipe import parse_recipe

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # see zero3_worker.py
    deepspeed.init_distributed(dist_backend="gloo", timeout=timedelta(seconds=30))
    rank = dist.get_rank()
    ds_config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    runner.end_distributed()
    if rank == 0:
        recipe = parse_recipe(
            {
                "model": {"name_or_path": policy_dir, "lora": {"r": 2, "alpha": 4}, "merge_adapters": True},
                "data": {"train": str(eval_path), "prompt": "closed_book"},
                "evaluation": {"levels": ["e2e"], "metrics": ["exact_match", "bleu2"], "max_new_tokens": 4},
            }
        )
        runner.merge_saved_adapter(recipe, None, Path(adapter_dir), out / "merged")
        summary = runner.evaluate_final(recipe, Path(policy_dir), read_psets(eval_path), out / "eval")
        record = {
            "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float))},
            "zero3_still_enabled": ds_config.is_zero3(),
        }
        (out / "rank0.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
