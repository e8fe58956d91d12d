"""Worker for the 2-process exact-resume test (torchrun, gloo).

``resume_worker.py POLICY OUT STEP...`` trains :data:`TWO_PROCESS_CONFIG` once uninterrupted (``OUT/full``), then,
for each STEP, stopped by a SIGTERM to process 0 during that step and resumed from the checkpoint the stop saved
(``OUT/stop<STEP>``), all in the same two processes. Each run directory gets ``weights<rank>.pt`` (the final
weights each process holds) next to the metrics.jsonl the main process wrote. Last, ``OUT/missing1``: stopped
during step 1, process 1's generation state deleted, resumed; ``done<rank>.json`` says each process finished.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from resume_helpers import stop_and_resume, train_run, weights

#: 2 processes x 3 rows x accumulation 2 = 12 completions (2 sets of 3 paraphrases x g=2) per generation batch,
#: one set spanning both processes; num_iterations 2 reuses it for 2 optimizer steps; relaxed reward; a log every
#: 2 steps; 4 steps (two generation windows)
TWO_PROCESS_CONFIG = dict(
    training=dict(
        per_device_train_batch_size=3,
        gradient_accumulation_steps=2,
        num_iterations=2,
        max_steps=4,
        logging_steps=2,
    ),
    reward=dict(similarity="token_f1", relaxed_kappa=1, accuracy_weight=1.0),
)


def main() -> None:
    policy_path, out, steps = sys.argv[1], Path(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    rank = dist.get_rank()
    runs = [("full", None)] + [(f"stop{step}", step) for step in steps]
    for name, step in runs:
        target = out / name
        if step is None:
            trainer, _ = train_run(policy_path, target, TWO_PROCESS_CONFIG)
        else:
            trainer = stop_and_resume(policy_path, target, TWO_PROCESS_CONFIG, step)
        torch.save(weights(trainer), target / f"weights{rank}.pt")
        dist.barrier()
    # process 1's generation state is missing: every process must generate anew (one alone would wait forever)
    target = out / "missing1"
    train_run(policy_path, target, TWO_PROCESS_CONFIG, stop_at=1)
    dist.barrier()
    if rank == 1:
        (target / "checkpoint-1" / "grpo_sim_generation_1.pt").unlink()
    dist.barrier()
    trainer, _ = train_run(policy_path, target, TWO_PROCESS_CONFIG, resume=str(target / "checkpoint-1"))
    (target / f"done{rank}.json").write_text(json.dumps({"global_step": trainer.state.global_step}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
