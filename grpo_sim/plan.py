"""Batch arithmetic of a recipe for a given launch, before anything launches.

Mirrors how ``trl.GRPOConfig`` derives ``steps_per_generation`` / ``generation_batch_size`` and
adds PS-GRPO's constraint that a generation batch holds whole paraphrase sets (n x g completions).
``grpo-sim plan`` prints it; the trainer runs the same set check at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .recipe import DEMO_DATA, Recipe


@dataclass
class BatchPlan:
    paraphrases_per_set: int
    num_generations: int
    num_processes: int
    num_machines: int
    per_device_batch: int
    gradient_accumulation: int
    steps_per_generation: int | None
    generation_batch: int | None
    use_vllm: bool
    vllm_mode: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def completions_per_set(self) -> int:
        return self.paraphrases_per_set * self.num_generations

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) rows for a table."""
        n, g, P = self.paraphrases_per_set, self.num_generations, self.num_processes
        out = [
            ("paraphrases per set (n)", str(n)),
            ("rollouts per paraphrase (g = num_generations)", str(g)),
            ("completions per set (n x g)", str(n * g)),
            ("training processes (all machines)", f"{P} on {self.num_machines} machine(s)"),
            ("per-device batch (completions)", str(self.per_device_batch)),
            ("gradient accumulation steps", str(self.gradient_accumulation)),
        ]
        if self.generation_batch is not None and self.steps_per_generation is not None:
            gen = self.generation_batch
            sets = f"{gen / (n * g):g}"
            out += [
                ("steps per generation", str(self.steps_per_generation)),
                ("generation batch (completions)", str(gen)),
                ("sets per generation batch", sets),
                ("prompts (paraphrases) per generation batch", f"{gen // g}"),
                ("completions per process per generation", str(gen // P)),
                ("completions per optimizer step", str(self.per_device_batch * P * self.gradient_accumulation)),
            ]
            if self.use_vllm and self.vllm_mode == "server":
                out.append(("rollouts per vLLM call (server)", f"{gen} = {gen // g} prompts x n={g}"))
            elif self.use_vllm:
                out.append(("rollouts per vLLM call (colocate, each process)", f"{gen // P} prompts x n=1"))
        return out


def _nearest_multiples(value: int, unit: int) -> str:
    lower = (value // unit) * unit
    return f"{lower or unit} or {lower + unit}"


def plan_batches(recipe: Recipe, num_processes: int = 1, num_machines: int = 1,
                 paraphrases_per_set: int | None = None) -> BatchPlan:
    """The batch arithmetic of ``recipe`` on ``num_processes`` training processes in total."""
    t: dict[str, Any] = recipe.training
    g = int(t.get("num_generations", 8))
    B = int(t.get("per_device_train_batch_size", 8))
    GA = int(t.get("gradient_accumulation_steps", 1))
    S = t.get("steps_per_generation")
    gen = t.get("generation_batch_size")
    n = paraphrases_per_set or infer_paraphrases_per_set(recipe)
    plan = BatchPlan(n, g, num_processes, num_machines, B, GA, None, None, bool(t.get("use_vllm", False)),
                     str(t.get("vllm_mode", "colocate")))
    P = num_processes
    if num_processes < 1 or num_machines < 1:
        plan.problems.append("num_processes and num_machines must be >= 1")
        return plan
    if num_processes % num_machines:
        plan.problems.append(f"{num_processes} processes do not split evenly over {num_machines} machines")
    if g < 2 and recipe.reward.advantage == "paraphrase":
        plan.problems.append(f"num_generations = {g}: per-paraphrase advantages need g >= 2 (or reward.advantage: set)")
    if gen is not None and S is not None:
        plan.problems.append("set either training.generation_batch_size or training.steps_per_generation, not both")
        return plan
    if gen is None and S is None:
        S = GA
        gen = B * P * S
    elif gen is not None:
        gen = int(gen)
        if gen % (B * P):
            plan.problems.append(
                f"generation_batch_size {gen} is not divisible by per_device_train_batch_size x processes = {B * P}; "
                f"nearest valid: {_nearest_multiples(gen, B * P)}")
            return plan
        S = gen // (B * P)
    else:
        S = int(S)
        gen = B * P * S
    plan.steps_per_generation, plan.generation_batch = S, gen
    # (a multiple of n x g is a multiple of g, so TRL's own gen % g rule is covered below)
    per_set = n * g
    if gen % per_set:
        per_round = P * S
        good_b = math.lcm(per_set, per_round) // per_round
        good_s = math.lcm(per_set, B * P) // (B * P)
        plan.problems.append(
            f"generation batch {gen} = per_device_train_batch_size {B} x {P} processes x steps_per_generation {S} "
            f"is not a multiple of one set = n {n} x g {g} = {per_set} completions; nearest valid batches: "
            f"{_nearest_multiples(gen, per_set)}. E.g. per_device_train_batch_size a multiple of {good_b}, or "
            f"steps_per_generation a multiple of {good_s}.")
    if plan.use_vllm and plan.vllm_mode == "server":
        plan.notes.append("vllm_mode=server: start the rollout server on GPUs NOT counted in num_processes "
                          "(scripts/vllm_server.sh); trainers reach it via training.vllm_server_host/port")
    if plan.use_vllm and plan.vllm_mode == "colocate":
        plan.notes.append("vllm_mode=colocate: every training process holds a vLLM engine; lower "
                          "training.vllm_gpu_memory_utilization if the trainer runs out of memory")
    if GA % S and not plan.problems:
        plan.notes.append(f"gradient_accumulation_steps {GA} is not a multiple of steps_per_generation {S}: "
                          "TRL then computes old log-probs for importance sampling (extra forward pass)")
    return plan


def infer_paraphrases_per_set(recipe: Recipe) -> int:
    """n from the recipe: data.paraphrases_per_set, the demo settings, or the first set of the train file."""
    if recipe.data.paraphrases_per_set:
        return recipe.data.paraphrases_per_set
    if recipe.data.train == DEMO_DATA:
        return recipe.data.demo.num_paraphrases
    if recipe.data.train.endswith(".jsonl"):
        import json
        from pathlib import Path

        path = Path(recipe.data.train)
        if path.exists():
            with open(path) as fh:
                for line in fh:
                    if line.strip():
                        return len(json.loads(line).get("paraphrases", [])) or 1
    raise ValueError(f"cannot tell how many paraphrases per set {recipe.data.train!r} has (file missing or not "
                     "JSONL); pass --paraphrases-per-set or set data.paraphrases_per_set")
