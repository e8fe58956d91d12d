"""Worker for the ZeRO-3 test: scores model-based similarities while a ZeRO-3 HfDeepSpeedConfig is active.

Launched by torchrun (2 gloo ranks, DS_ACCELERATOR=cpu). It leaves the process as accelerate leaves it during
training with ``zero3_init_flag: true``: deepspeed's process group initialised and a ZeRO-3 HfDeepSpeedConfig alive,
so ``from_pretrained`` partitions every model it builds. It loads the policy that way (checks that it really is
partitioned), then for each phase forgets the cached similarity models and scores the ``embedding`` reference reward
and the ``bmas`` group reward -- on every rank, or on rank 0 only while rank 1 waits at a barrier.

    zero3_worker.py POLICY_DIR OUT_DIR PHASE[,PHASE...]     PHASE: every_rank | rank0_only
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from zero3_cases import score_cases


def main() -> None:
    policy_dir, out, phases = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(",")
    out.mkdir(parents=True, exist_ok=True)
    import deepspeed
    import torch.distributed as dist
    from transformers.integrations import HfDeepSpeedConfig

    from grpo_sim.models import load_policy
    from grpo_sim.similarity.embedding import clear_model_cache

    # On the CPU accelerator deepspeed JIT-compiles a shared-memory allreduce kernel on first use (over 2 minutes
    # on 2 cores); gloo does every collective without it. deepspeed keeps this probe result in one editable dict.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    # a short collective timeout turns the old code's rank-0-only hang into an error
    deepspeed.init_distributed(dist_backend="gloo", timeout=timedelta(seconds=30))
    rank = dist.get_rank()
    ds_config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    policy, _ = load_policy(policy_dir)
    record: dict = {"policy_partitioned": all(p.numel() == 0 for p in policy.parameters())}
    for phase in phases:
        clear_model_cache()
        if phase == "every_rank" or rank == 0:
            record[phase] = score_cases()
        dist.barrier()
    record["zero3_still_enabled"] = ds_config.is_zero3() and _hf_zero3_enabled()
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    dist.barrier()
    dist.destroy_process_group()


def _hf_zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


if __name__ == "__main__":
    main()
