"""Batch arithmetic of a recipe for a given launch, before anything launches.

Reads ``steps_per_generation`` / ``generation_batch_size`` from the config a launch of that size builds
(``trl.GRPOConfig.__post_init__`` derives them) and adds PS-GRPO's constraint that a generation batch
holds whole paraphrase sets (n x g completions).
``grpo-sim plan`` prints it; the trainer runs the same set check at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .recipe import Recipe
from .sampler import batch_size_hints
from .sources import DATA_SOURCES


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
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: ordinary prompt rows (one TRL group per prompt) rather than paraphrase sets: the table speaks of prompts
    ordinary: bool = False
    #: reward.advantage (None: PSGRPOConfig's default, per paraphrase)
    advantage: str | None = None

    @property
    def completions_per_set(self) -> int:
        return self.paraphrases_per_set * self.num_generations

    def advantage_row(self) -> tuple[str, str] | None:
        """Where advantages are normalised, where the setting does something: on paraphrase sets always; on ordinary
        rows only ``batch`` (``paraphrase`` there is TRL's own group per prompt, and ``set`` is refused)."""
        mode = self.advantage or "paraphrase"
        if self.ordinary and mode != "batch":
            return None
        return ("advantages normalised per", mode)

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) rows for a table."""
        n, g, P = self.paraphrases_per_set, self.num_generations, self.num_processes
        if self.ordinary:
            out = [("rollouts per prompt (g = num_generations)", str(g))]
        else:
            out = [
                ("paraphrases per set (n)", str(n)),
                ("rollouts per paraphrase (g = num_generations)", str(g)),
                ("completions per set (n x g)", str(n * g)),
            ]
        out += [
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
                *([] if self.ordinary else [("sets per generation batch", sets)]),
                (
                    "prompts per generation batch" if self.ordinary else "prompts (paraphrases) per generation batch",
                    f"{gen // g}",
                ),
                ("completions per process per generation", str(gen // P)),
                ("completions per optimizer step", str(self.per_device_batch * P * self.gradient_accumulation)),
            ]
            if self.use_vllm and self.vllm_mode == "server":
                out.append(("rollouts per vLLM call (server)", f"{gen} = {gen // g} prompts x n={g}"))
            elif self.use_vllm:
                out.append(("rollouts per vLLM call (colocate, each process)", f"{gen // P} prompts x n=1"))
        advantage = self.advantage_row()
        if advantage is not None:
            out.append(advantage)
        return out

    def fits_message(self) -> str:
        """What ``grpo-sim plan`` says when the batch settings fit."""
        if self.ordinary:
            return (
                f"batch settings fit: every generation batch holds whole groups of g = {self.num_generations} rollouts"
            )
        return "batch settings fit: every generation batch holds whole paraphrase sets"


def _nearest_multiples(value: int, unit: int) -> str:
    lower = (value // unit) * unit
    return f"{lower or unit} or {lower + unit}"


#: the training keys that make a launch's batch; the rest of the recipe does not change it
BATCH_KEYS = (
    "num_generations",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "generation_batch_size",
)


def launch_batch_config(recipe: Recipe, num_processes: int):
    """The PSGRPOConfig a launch of ``num_processes`` builds from the recipe's batch keys (the rest at its defaults):
    its steps_per_generation / generation_batch_size are TRL's own derivation (``GRPOConfig.__post_init__``).
    ValueError when GRPOConfig rejects them."""
    from .recipe import config_class_for_launch

    batch = {k: recipe.training[k] for k in BATCH_KEYS if recipe.training.get(k) is not None}
    # bf16 off: TrainingArguments refuses bf16 on a machine without a GPU, and precision does not change the batch
    return config_class_for_launch(num_processes)(output_dir="grpo-sim-plan", report_to=[], bf16=False, **batch)


def _default(key: str) -> Any:
    from .trainer import PSGRPOConfig

    return next(f.default for f in dataclasses.fields(PSGRPOConfig) if f.name == key)


def plan_batches(
    recipe: Recipe,
    num_processes: int = 1,
    num_machines: int = 1,
    paraphrases_per_set: int | None = None,
    vllm_data_parallel: int = 1,
    config=None,
    ordinary: bool | None = None,
) -> BatchPlan:
    """The batch arithmetic of ``recipe`` on ``num_processes`` training processes in total.

    ``vllm_data_parallel`` is the rollout server's data-parallel size (vllm_mode server), when known. ``config``: the
    PSGRPOConfig already built from ``recipe`` for ``num_processes`` processes; its derived batch is read instead of
    building another config (each build resets accelerate's shared state, which a run's config owns). ``ordinary``:
    whether data.train holds ordinary prompt rows (None: as far as the recipe tells, :func:`data_is_ordinary_rows`).
    """
    t: dict[str, Any] = recipe.training
    g, B, GA = (int(t.get(k) or _default(k)) for k in BATCH_KEYS[:3])
    S, gen = t.get("steps_per_generation"), t.get("generation_batch_size")
    n = paraphrases_per_set or infer_paraphrases_per_set(recipe)
    plan = BatchPlan(
        n,
        g,
        num_processes,
        num_machines,
        B,
        GA,
        None,
        None,
        bool(t.get("use_vllm", False)),
        str(t.get("vllm_mode", "colocate")),
        ordinary=data_is_ordinary_rows(recipe) if ordinary is None else ordinary,
        advantage=recipe.reward.advantage,
    )
    P = num_processes
    if num_processes < 1 or num_machines < 1:
        plan.problems.append("num_processes and num_machines must be >= 1")
        return plan
    if num_processes % num_machines:
        plan.problems.append(f"{num_processes} processes do not split evenly over {num_machines} machines")
    if g < 2:
        plan.problems.append(
            f"num_generations = {g}: GRPO needs g >= 2 completions per prompt (TRL's GRPOConfig "
            "rejects fewer; a group of one has no advantage)"
        )
        return plan
    if gen is not None and S is not None:
        plan.problems.append("set either training.generation_batch_size or training.steps_per_generation, not both")
        return plan
    if gen is not None and int(gen) % (B * P):
        plan.problems.append(
            f"generation_batch_size {gen} is not divisible by per_device_train_batch_size x processes = {B * P}; "
            f"nearest valid: {_nearest_multiples(int(gen), B * P)}"
        )
        return plan
    try:
        config = config if config is not None else launch_batch_config(recipe, P)
        S, gen = config.steps_per_generation, config.generation_batch_size
    except ValueError as exc:
        if getattr(exc, "derived_batch", None) is None:  # a rule of GRPOConfig's that the checks here do not spell out
            plan.problems.append(f"GRPOConfig rejects the batch settings for {P} process(es): {exc}")
            return plan
        S, gen = exc.derived_batch  # type: ignore[attr-defined]  # TRL's gen % g rule: the set check below explains
    plan.steps_per_generation, plan.generation_batch = S, gen
    # (a multiple of n x g is a multiple of g, so TRL's own gen % g rule is covered below)
    per_set = n * g
    if gen % per_set and plan.ordinary:
        plan.problems.append(
            f"generation batch {gen} = per_device_train_batch_size {B} x {P} processes x steps_per_generation {S} "
            f"is not a multiple of num_generations g = {g} (every prompt's g rollouts in one batch); nearest valid "
            f"batches: {_nearest_multiples(gen, g)}"
        )
    elif gen % per_set:
        good_b, good_s = batch_size_hints(per_set, B, P, S)
        plan.problems.append(
            f"generation batch {gen} = per_device_train_batch_size {B} x {P} processes x steps_per_generation {S} "
            f"is not a multiple of one set = n {n} x g {g} = {per_set} completions; nearest valid batches: "
            f"{_nearest_multiples(gen, per_set)}. E.g. per_device_train_batch_size a multiple of {good_b}, or "
            f"steps_per_generation a multiple of {good_s}."
        )
    if plan.use_vllm:
        check_vllm_settings(plan, recipe, vllm_data_parallel)
    if plan.use_vllm and plan.vllm_mode == "server":
        plan.notes.append(
            "vllm_mode=server: start the rollout server on GPUs NOT counted in num_processes "
            "(scripts/vllm_server.sh); trainers reach it via training.vllm_server_host/port"
        )
    if plan.use_vllm and plan.vllm_mode == "colocate":
        plan.notes.append(
            "vllm_mode=colocate: every training process holds a vLLM engine that reserves "
            "training.vllm_gpu_memory_utilization x the GPU for the whole run (the memory table below); vLLM fails "
            "to start when what is left after its weights cannot hold one sequence of vllm_max_model_length: "
            "then RAISE the utilisation or shorten vllm_max_model_length, never lower the utilisation"
        )
    if GA % S and not plan.problems:
        plan.notes.append(
            f"gradient_accumulation_steps {GA} is not a multiple of steps_per_generation {S}: "
            "TRL then computes old log-probs for importance sampling (extra forward pass)"
        )
    return plan


#: config.json keys that only mixture-of-experts models have (Mixtral, Qwen2/3-MoE, DeepSeek, ...)
MOE_CONFIG_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")


def model_is_moe(name_or_path: str) -> bool | None:
    """Whether a local model directory holds a mixture-of-experts model; None when it cannot be told here."""
    import json
    from pathlib import Path

    config = Path(name_or_path) / "config.json"
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    values = {**values, **(values.get("text_config") or {})}
    return any(values.get(key) for key in MOE_CONFIG_KEYS)


def check_vllm_settings(plan: BatchPlan, recipe: Recipe, vllm_data_parallel: int = 1) -> None:
    """Launch-dependent vLLM settings that TRL 1.16 rejects (problems) or that do not do what they seem to
    (warnings). GRPOConfig's own value checks run in ``grpo-sim check`` and at start-up (build_config)."""
    t: dict[str, Any] = recipe.training
    mode, P, M = plan.vllm_mode, plan.num_processes, plan.num_machines
    if mode not in ("server", "colocate"):
        plan.problems.append(f"training.vllm_mode = {mode!r}: TRL accepts 'server' or 'colocate'")
        return
    tp = int(t.get("vllm_tensor_parallel_size", 1))
    if mode == "colocate":
        if tp < 1 or P % tp:
            plan.problems.append(
                f"training.vllm_tensor_parallel_size {tp} must divide the {P} training processes (TRL colocate "
                f"mode makes groups of {tp} consecutive ranks share one engine)"
            )
        elif M > 1 and (P // M) % tp:
            plan.warnings.append(
                f"training.vllm_tensor_parallel_size {tp} does not divide the {P // M} processes per machine: "
                "tensor-parallel groups would span machines; pick a divisor of the processes per machine"
            )
    else:
        if tp != 1:
            plan.warnings.append(
                f"training.vllm_tensor_parallel_size {tp} applies to colocate mode only; in server mode it is "
                "ignored: give the server its tensor parallel size (scripts/vllm_server.sh MODEL TP)"
            )
        if vllm_data_parallel > 1:
            moe = model_is_moe(recipe.model.name_or_path)
            message = (
                f"vLLM server data parallel {vllm_data_parallel}: TRL 1.16 supports data parallel > 1 for "
                "mixture-of-experts models only (dense models 'will error out'); use tensor parallel"
            )
            if moe is False:
                plan.problems.append(f"{message}: {recipe.model.name_or_path} is a dense model")
            elif moe is None:
                plan.warnings.append(f"{message} unless {recipe.model.name_or_path} is a mixture of experts")
        host = str(t.get("vllm_server_host", "0.0.0.0"))
        if M > 1 and not t.get("vllm_server_base_url") and host in ("0.0.0.0", "127.0.0.1", "localhost", "::"):
            plan.warnings.append(
                f"training.vllm_server_host is {host} on {M} machines: rank 0 will look for the server on its "
                "own machine; set the rollout server's address (scripts/slurm_train.sh does)"
            )


def data_is_ordinary_rows(recipe: Recipe) -> bool:
    """Whether data.train holds ordinary prompt rows rather than paraphrase sets, as far as the recipe tells without
    loading the data: ``data.format``, else the first row of a local JSONL file; a named source or a hub dataset
    counts as paraphrase sets unless ``data.format: prompts`` says otherwise (``grpo-sim check`` reads the data)."""
    if recipe.data.format != "auto":
        return recipe.data.format == "prompts"
    if recipe.data.train.endswith(".jsonl") and recipe.data.train not in DATA_SOURCES:
        import json
        from pathlib import Path

        from .data.prompts import looks_like_paraphrase_sets

        path = Path(recipe.data.train)
        if path.is_file():
            with open(path) as fh:
                for line in fh:
                    if line.strip():
                        try:
                            first = json.loads(line)
                        except ValueError:
                            return False
                        return isinstance(first, dict) and not looks_like_paraphrase_sets(first)
    return False


def infer_paraphrases_per_set(recipe: Recipe) -> int:
    """n from the recipe: data.paraphrases_per_set, the demo settings, or the first set of the train file."""
    if recipe.data.paraphrases_per_set:
        return recipe.data.paraphrases_per_set
    if recipe.data.train in DATA_SOURCES:
        return DATA_SOURCES[recipe.data.train].paraphrases_per_set(recipe)
    if recipe.data.format == "prompts":
        return 1  # ordinary prompts: each is its own group of g completions
    if recipe.data.train.endswith(".jsonl"):
        import json
        from pathlib import Path

        path = Path(recipe.data.train)
        if path.exists():
            with open(path) as fh:
                for line in fh:
                    if line.strip():
                        return len(json.loads(line).get("paraphrases") or []) or 1
    raise ValueError(
        f"cannot tell how many paraphrases per set {recipe.data.train!r} has (file missing or not "
        "JSONL); pass --paraphrases-per-set or set data.paraphrases_per_set"
    )
