"""A recipe's launch as :class:`grpo_sim.memory.Launch`: the memory table ``grpo-sim plan`` prints and the start
check (:func:`check_memory_fits`) that refuses a launch that cannot fit its GPUs.

Where each input comes from: the model shape from a local config.json or the shipped configs
(grpo_sim/model_configs); the strategy from the accelerate config (``--accelerate-config``, else the recipe's
``hardware.accelerate_config``; at train time the running config itself); the GPU memory from ``--gpu-memory``,
else ``hardware.gpu_memory``, else ``torch.cuda``; prompt lengths from the data when it is read (characters / 3,
a generous token count), else the recipe's ``vllm_max_model_length`` minus the completion, else an assumption.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .memory import (
    DTYPE_BYTES,
    Launch,
    MemoryEstimate,
    estimate_memory,
    kahan_optimizer,
    memory_problems,
    model_shape,
    parse_memory,
)
from .recipe import Recipe

#: the similarity encoders reward terms load on the training GPU, and their parameter counts
#: (all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, vocab 30522: 22,713,216 parameters)
ENCODERS = {"embedding": ("all-MiniLM-L6-v2", 22_713_216), "bmas": ("all-MiniLM-L6-v2", 22_713_216)}
#: prompt tokens assumed when neither the data nor vllm_max_model_length tell
ASSUMED_PROMPT_TOKENS = 1024
#: characters per token used to size prompts from the data without a tokenizer (English BPE averages ~4)
CHARS_PER_TOKEN = 3


@dataclass
class MemoryPlan:
    estimate: MemoryEstimate | None
    source: dict[str, str] = field(default_factory=dict)  # input -> where it came from
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _training_default(key: str) -> Any:
    from .trainer import PSGRPOConfig

    return next(f.default for f in dataclasses.fields(PSGRPOConfig) if f.name == key)


def training_value(recipe: Recipe, key: str) -> Any:
    value = recipe.training.get(key)
    return _training_default(key) if value is None else value


def find_accelerate_config(spec: str, recipe: Recipe) -> Path | None:
    """The accelerate config file: as given, relative to the working directory, or to a parent of the recipe."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute():
        source = Path(recipe._source)
        for parent in source.resolve().parents if source.exists() else ():
            if (parent / path).is_file():
                return parent / path
    return None


def strategy_of_accelerate_config(values: dict[str, Any], num_processes: int) -> str:
    """single, ddp, zero2, zero3 or fsdp from an accelerate config's values."""
    kind = str(values.get("distributed_type", "NO")).upper()
    if kind == "DEEPSPEED":
        stage = int((values.get("deepspeed_config") or {}).get("zero_stage", 2))
        return "zero3" if stage >= 3 else "zero2" if stage >= 1 else ("ddp" if num_processes > 1 else "single")
    if kind == "FSDP":
        return "fsdp"
    return "ddp" if num_processes > 1 else "single"


def strategy_of_config(config) -> str:
    """The strategy of a built PSGRPOConfig, as the running launch set it up."""
    import os

    plugin = getattr(config, "deepspeed_plugin", None)
    if plugin is not None:
        stage = int(getattr(plugin, "zero_stage", 2) or 0)
        if stage >= 1:
            return "zero3" if stage >= 3 else "zero2"
    if getattr(config, "fsdp_plugin_args", None) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in (
        "1",
        "true",
        "yes",
    ):
        return "fsdp"
    return "ddp" if getattr(config, "world_size", 1) > 1 else "single"


def longest_prompt_tokens(items, template: str | None = None, system_prompt: str | None = None) -> int | None:
    """A generous token count of the longest prompt of paraphrase sets (formatted with the recipe's prompt
    ``template``) or prompt rows: characters / 3, plus the system prompt and the chat template's markers."""
    if not items:
        return None
    if isinstance(items[0], dict):
        texts = [
            " ".join(str(m.get("content", "")) for m in row["prompt"])
            if isinstance(row["prompt"], list)
            else row["prompt"]
            for row in items
        ]
    else:
        from .data.schema import to_training_rows

        rows = to_training_rows(items, template)
        texts = [" ".join(m["content"] for m in row["prompt"]) + (system_prompt or "") for row in rows]
    return max(len(t) for t in texts) // CHARS_PER_TOKEN + 32


def read_prompt_tokens(recipe: Recipe) -> int | None:
    """:func:`longest_prompt_tokens` of the recipe's training data when it can be read here, else None."""
    from .runner.loading import load_data

    try:
        items = load_data(recipe.data.train, recipe, "train")
        return longest_prompt_tokens(items, recipe.data.prompt, recipe.data.system_prompt)
    except (ValueError, OSError):
        return None


def cached_model_shape(name: str, cache_dir: str | None = None):
    """The shape of a hub model from its config.json in the local Hugging Face cache (no download), else None."""
    import json

    from .memory import ModelShape

    if "/" not in name or name.startswith(("/", ".", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
        if isinstance(path, str):
            return ModelShape.from_config(json.loads(Path(path).read_text()), name=name)
    except (ImportError, OSError, ValueError, KeyError, TypeError):
        return None
    return None


def cuda_memory() -> int | None:
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
    except Exception:  # noqa: BLE001 - no usable GPU: the memory is unknown
        return None
    return None


def plan_memory(
    recipe: Recipe,
    num_processes: int | None = None,
    accelerate_config: str | None = None,
    gpu_memory: str | int | None = None,
    prompt_tokens: int | None = None,
    generation_batch: int | None = None,
    strategy: str | None = None,
) -> MemoryPlan:
    """The per-GPU memory of ``recipe`` launched on ``num_processes`` training GPUs (see the module docstring for
    where every input comes from). ``generation_batch``: completions per generation (the batch plan's)."""
    import yaml

    hw = recipe.hardware
    plan = MemoryPlan(None)
    shape = model_shape(recipe.model.name_or_path) or cached_model_shape(recipe.model.name_or_path)
    if shape is None:
        plan.notes.append(
            f"memory: the shape of {recipe.model.name_or_path} is unknown here (no local config.json and not one of "
            "the shipped configs in grpo_sim/model_configs): no memory estimate"
        )
        return plan
    accel_values: dict[str, Any] = {}
    spec = accelerate_config or hw.accelerate_config
    if spec and strategy is None:
        path = find_accelerate_config(spec, recipe)
        if path is None:
            plan.problems.append(f"accelerate config {spec} not found (relative to {Path.cwd()})")
            return plan
        accel_values = yaml.safe_load(path.read_text()) or {}
        plan.source["strategy"] = str(path)
    P = int(num_processes or hw.num_processes or accel_values.get("num_processes") or 1)
    if strategy is None:
        strategy = strategy_of_accelerate_config(accel_values, P)
        if not spec:
            plan.source["strategy"] = "no accelerate config given: DDP" if P > 1 else "one GPU"
    memory_spec: str | int | None = gpu_memory or hw.gpu_memory
    if memory_spec is None:
        memory_spec = cuda_memory()
        if memory_spec is not None:
            plan.source["gpu memory"] = "torch.cuda"
    else:
        plan.source["gpu memory"] = "--gpu-memory" if gpu_memory else "hardware.gpu_memory"
    try:
        memory = parse_memory(memory_spec) if memory_spec is not None else None
    except ValueError as exc:
        raise ValueError(f"{plan.source.get('gpu memory', '--gpu-memory')}: {exc}") from None

    completion = int(training_value(recipe, "max_completion_length"))
    use_vllm = bool(training_value(recipe, "use_vllm"))
    max_len = recipe.training.get("vllm_max_model_length")
    if prompt_tokens is not None:
        plan.source["prompt tokens"] = "the data (characters / 3)"
    elif max_len:
        prompt_tokens = max(int(max_len) - completion, 1)
        plan.source["prompt tokens"] = "training.vllm_max_model_length - max_completion_length"
    else:
        prompt_tokens = ASSUMED_PROMPT_TOKENS
        plan.source["prompt tokens"] = f"assumed ({ASSUMED_PROMPT_TOKENS}; pass --prompt-tokens or readable data)"
    if use_vllm and not max_len:
        max_len = prompt_tokens + completion  # the runner's default (grpo_sim.runner.loading.vllm_model_length)
    mode = str(training_value(recipe, "vllm_mode")) if use_vllm else None
    tp = int(training_value(recipe, "vllm_tensor_parallel_size") or 1)
    batch = int(training_value(recipe, "per_device_train_batch_size"))
    sequences = (generation_batch // P * tp) if generation_batch else batch
    lora = recipe.model.lora
    encoders = []
    for term in recipe.reward_terms():
        spec_sim = str(term.get("similarity") or "")
        name = spec_sim.split(":")[0]
        if name in ENCODERS and ":" not in spec_sim:
            encoders.append(ENCODERS[name])
    launch = Launch(
        shape=shape,
        dtype_bytes=DTYPE_BYTES.get(recipe.model.dtype, 2),
        strategy=strategy,
        num_gpus=P,
        masters_fp32=not kahan_optimizer(recipe.training),
        lora_r=lora.r if lora else None,
        lora_targets=lora.target_modules if lora else "all-linear",
        beta=float(training_value(recipe, "beta")),
        gradient_checkpointing=bool(training_value(recipe, "gradient_checkpointing")),
        batch=batch,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        vllm=mode,
        vllm_gpu_memory_utilization=float(training_value(recipe, "vllm_gpu_memory_utilization")),
        vllm_max_model_length=int(max_len) if max_len else None,
        vllm_tensor_parallel=tp,
        vllm_sequences=sequences,
        encoders=tuple(dict.fromkeys(encoders)),
        gpu_memory=memory,
    )
    plan.estimate = estimate_memory(launch)
    problems, warnings = memory_problems(plan.estimate)
    plan.problems += problems
    plan.warnings += warnings
    plan.notes += plan.estimate.notes
    if memory is None:
        plan.notes.append("memory: the GPU's memory is unknown: pass --gpu-memory 80GiB (or set hardware.gpu_memory)")
    if use_vllm and not recipe.training.get("vllm_max_model_length"):
        plan.notes.append(
            f"vllm_max_model_length: unset, so the run sets it to the longest prompt + max_completion_length "
            f"(~{max_len} tokens here)"
            + (
                f"; start the server with VLLM_MAX_MODEL_LEN={max_len} scripts/vllm_server.sh MODEL"
                if mode == "server"
                else ""
            )
        )
    if mode == "server":
        plan.notes.append("vllm_mode=server: vLLM's weights and KV cache live on the server's GPUs, not in this table")
    return plan


def check_memory_fits(
    recipe: Recipe,
    config=None,
    train_items=None,
    num_processes: int | None = None,
    gpu_memory: str | int | None = None,
    accelerate_config: str | None = None,
    generation_batch: int | None = None,
    running: bool = False,
) -> list[str]:
    """The start check: problems when the launch cannot fit its GPUs (a total over the GPU's memory, or a colocated
    vLLM whose KV cache cannot hold one sequence), naming the largest terms and the fix.

    ``running`` (``train`` on a GPU): the running launch (``config``'s strategy and world size) on the GPU this
    process sees. Otherwise (``check``): the launch ``num_processes`` / ``accelerate_config`` (else the recipe's
    ``hardware``) on ``gpu_memory`` (else ``hardware.gpu_memory``, else this machine's GPU); with no memory known,
    nothing is checked.
    ``train_items``: the training data (prompt lengths); ``generation_batch``: the batch plan's.
    """
    if running and cuda_memory() is not None:
        plan = plan_memory(
            recipe,
            num_processes=getattr(config, "world_size", None),
            gpu_memory=cuda_memory(),
            prompt_tokens=longest_prompt_tokens(train_items, recipe.data.prompt, recipe.data.system_prompt),
            generation_batch=generation_batch,
            strategy=strategy_of_config(config) if config is not None else None,
        )
    else:
        gpu_memory = gpu_memory or recipe.hardware.gpu_memory or cuda_memory()
        if gpu_memory is None:
            return []
        plan = plan_memory(
            recipe,
            num_processes=num_processes,
            accelerate_config=accelerate_config,
            gpu_memory=gpu_memory,
            prompt_tokens=longest_prompt_tokens(train_items, recipe.data.prompt, recipe.data.system_prompt),
            generation_batch=generation_batch,
        )
    return plan.problems
