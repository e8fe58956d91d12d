"""Worker for the 2-process tests (torchrun, gloo).

``dist_worker.py POLICY OUT SCENARIO...`` runs each scenario in the same two processes (one start-up
for all) and writes what every rank saw to ``OUT/<scenario>/rank<r>.json``:

* ``exact`` / ``relaxed``: 3 sets of 3 paraphrases x g=2 per generation batch, 9 completions per rank,
  so the middle set spans both ranks; records the gathered batch, the consistency column and how
  much similarity work each rank did;
* ``vllm_server``: TRL's real ``VLLMGeneration.generate`` in server mode with a fake vLLM client on
  rank 0 only, gradient_accumulation_steps=2, num_iterations=2, 3 sets of 4 paraphrases x g=2 per
  generation batch (12 completions per rank, the middle set spans both), advantage_mode='set';
* ``failing_similarity``: as ``exact`` but the similarity returns NaN on process 1 only (the one
  scoring the last set): every process must raise the same clear error, none may hang.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from accelerate.utils import gather_object

from grpo_sim.similarity import get_similarity
from grpo_sim.similarity.base import Similarity
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

from trainer_helpers import common_args, dataset, policy


class CountingSimilarity(Similarity):
    """Delegates to a real similarity and counts the texts it encodes and the pairs it scores."""

    def __init__(self, inner: Similarity):
        self.inner = inner
        self.name = inner.name
        self.encoded = 0
        self.pairs = 0

    def encode(self, texts):
        self.encoded += len(texts)
        return self.inner.encode(texts)

    def select(self, encoded, index):
        return self.inner.select(encoded, index)

    def size(self, encoded):
        return self.inner.size(encoded)

    def block(self, enc_a, enc_b):
        self.pairs += self.inner.size(enc_a) * self.inner.size(enc_b)
        return self.inner.block(enc_a, enc_b)

    def paired(self, enc_a, enc_b):
        self.pairs += self.inner.size(enc_a)
        return self.inner.paired(enc_a, enc_b)


class NanOnProcess(CountingSimilarity):
    """A broken user similarity: NaN for every pair, but only on one process."""

    def __init__(self, inner: Similarity, rank: int):
        super().__init__(inner)
        self.broken = dist.get_rank() == rank

    def block(self, enc_a, enc_b):
        matrix = super().block(enc_a, enc_b)
        return matrix * float("nan") if self.broken else matrix


def record_rewards(trainer: PSGRPOTrainer, record: dict) -> None:
    """Wrap ``_calculate_rewards`` to keep the gathered batch, its rewards and this rank's work."""
    original = trainer._calculate_rewards
    counter = trainer.similarity

    def capture(inputs, prompts, completions, completion_ids_list):
        encoded, pairs = counter.encoded, counter.pairs
        micro_step, global_step = trainer._step, trainer.state.global_step
        rewards = original(inputs, prompts, completions, completion_ids_list)
        gathered = gather_object(
            [(c[0]["content"], x["set_id"], x["paraphrase_id"]) for c, x in zip(completions, inputs)]
        )
        record["global"].append(
            {
                "texts": [t for t, _, _ in gathered],
                "set_ids": [s for _, s, _ in gathered],
                "para_ids": [p for _, _, p in gathered],
                "consistency": rewards[:, trainer._consistency_index].tolist(),
                "combined": trainer._global_rewards.tolist(),
                "global_step": global_step,
                "micro_step": micro_step,
                "encoded": counter.encoded - encoded,
                "pairs": counter.pairs - pairs,
            }
        )
        record["local"].append({"set_ids": [x["set_id"] for x in inputs]})
        return rewards

    trainer._calculate_rewards = capture


def rewards_scenario(policy_path: str, out: Path, relaxed: bool, broken_on: int | None = None) -> dict:
    args = PSGRPOConfig(
        **common_args(out / "run", per_device_train_batch_size=9, max_steps=2),
        similarity="token_f1",
        collapse_penalty=False,
        relaxed_kappa=1 if relaxed else None,
    )
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=dataset(), processing_class=tokenizer)
    inner = get_similarity("token_f1")
    trainer.similarity = CountingSimilarity(inner) if broken_on is None else NanOnProcess(inner, broken_on)
    record = {"global": [], "local": [], "error": None}
    record_rewards(trainer, record)
    try:
        trainer.train()
    except ValueError as exc:
        if broken_on is None:
            raise
        record["error"] = str(exc)
    return record


def vllm_server_scenario(policy_path: str, out: Path) -> dict:
    import trl.generation.vllm_generation as vg

    args = PSGRPOConfig(
        **common_args(
            out / "run", per_device_train_batch_size=6, gradient_accumulation_steps=2, num_iterations=2, max_steps=4
        ),
        similarity="token_f1",
        advantage_mode="set",
    )
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(
        model=model, args=args, train_dataset=dataset(num_paraphrases=4), processing_class=tokenizer
    )
    trainer.similarity = CountingSimilarity(get_similarity("token_f1"))
    record = {
        "global": [],
        "local": [],
        "client_calls": [],
        "rows": [],
        "settings": {
            "num_generations": trainer.num_generations,
            "scale_rewards": args.scale_rewards,
            "steps_per_generation": args.steps_per_generation,
            "generation_batch_size": args.generation_batch_size,
        },
    }

    class FakeVLLMClient:
        """Answers like ``trl.extras.vllm_client.VLLMClient.generate``: n completions per prompt, in order."""

        def generate(self, prompts, n, **kwargs):
            # completions depend on the prompt, so every generation batch gets different rewards
            completions = [
                [5 + (sum(p) + 3 * k) % 11, 5 + (len(p) + 2 * k) % 7, tokenizer.eos_token_id]
                for p in prompts
                for k in range(n)
            ]
            record["client_calls"].append({"prompts": [list(p) for p in prompts], "n": n, "completions": completions})
            return {
                "prompt_ids": prompts,
                "completion_ids": completions,
                "logprobs": [[[-1.0]] * len(c) for c in completions],
            }

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
    if trainer.accelerator.is_main_process:  # as in TRL: only the main process holds a client
        generation.vllm_client = FakeVLLMClient()
    generation.sync_weights = lambda: None
    trainer.use_vllm = True
    trainer.vllm_generation = generation
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1
    record_rewards(trainer, record)
    original = trainer._generate_and_score_completions

    def capture(inputs):
        output = original(inputs)
        rows = []
        for k in range(len(output["advantages"])):
            rows.append(
                {
                    "prompt_ids": output["prompt_ids"][k][output["prompt_mask"][k].bool()].tolist(),
                    "completion_ids": output["completion_ids"][k][output["completion_mask"][k].bool()].tolist(),
                    "advantage": float(output["advantages"][k]),
                    "set_id": inputs[k]["set_id"],
                    "paraphrase_id": inputs[k]["paraphrase_id"],
                }
            )
        record["rows"].append(rows)
        return output

    trainer._generate_and_score_completions = capture
    trainer.train()
    return record


SCENARIOS = {
    "exact": lambda policy_path, out: rewards_scenario(policy_path, out, relaxed=False),
    "relaxed": lambda policy_path, out: rewards_scenario(policy_path, out, relaxed=True),
    "vllm_server": vllm_server_scenario,
    "failing_similarity": lambda policy_path, out: rewards_scenario(policy_path, out, relaxed=False, broken_on=1),
}


def main() -> None:
    policy_path, out, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    # accelerate reuses this group; a short timeout turns a rank stuck in a collective (a regression) into
    # an error within minutes instead of gloo's default 30 (on CPU transformers ignores ddp_timeout)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    for name in names:
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        record = SCENARIOS[name](policy_path, target)
        rank = dist.get_rank() if dist.is_initialized() else 0
        (target / f"rank{rank}.json").write_text(json.dumps(record))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
