"""Worker for the 2-process test: one PS-GRPO step per rank, dumping what each rank scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer
from trainer_helpers import common_args, dataset, policy


def main() -> None:
    policy_path, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    # 3 paraphrases x g=2 = 6 completions per set; 3 per rank, so every set spans both ranks
    args = PSGRPOConfig(**common_args(out / "run", per_device_train_batch_size=3, max_steps=2),
                        similarity="token_f1", collapse_penalty=False)
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=dataset(), processing_class=tokenizer)
    record = {"global": [], "local": []}
    original = trainer._calculate_rewards

    def capture(inputs, prompts, completions, completion_ids_list):
        rewards = original(inputs, prompts, completions, completion_ids_list)
        from accelerate.utils import gather_object

        gathered = gather_object([(c[0]["content"], x["set_id"], x["paraphrase_id"])
                                  for c, x in zip(completions, inputs)])
        record["global"].append({
            "texts": [t for t, _, _ in gathered],
            "set_ids": [s for _, s, _ in gathered],
            "para_ids": [p for _, _, p in gathered],
            "consistency": rewards[:, trainer._consistency_index].tolist(),
        })
        record["local"].append({"set_ids": [x["set_id"] for x in inputs]})
        return rewards

    trainer._calculate_rewards = capture
    trainer.train()
    rank = trainer.accelerator.process_index
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
