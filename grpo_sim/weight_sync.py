"""What the trainer sends to vLLM on a weight sync: the one seam every sync path (NCCL, reload) goes through.

:func:`weights_to_send` yields ``(name, tensor)`` pairs under the BASE model's parameter names (what vLLM's
``load_weights`` expects), in the dtype the engine serves in:

- full fine-tuning: each parameter, cast to ``dtype`` (bf16 weights trained as float32 masters are sent in bf16,
  half the bytes, instead of the masters);
- LoRA (peft): for each LoRA layer ``W + scale * B @ A`` is computed into a TEMPORARY, in float32, then cast; the
  base weight is never touched. TRL's own path calls ``merge_adapter()`` / ``unmerge_adapter()``, which add and
  subtract the delta in place: in bf16 that does not round-trip, and the frozen base (the KL reference, what
  ``final/`` is merged onto, what a resume starts from) drifts a little on every sync. Names lose peft's
  ``base_model.model.`` / ``.base_layer`` parts; ``modules_to_save`` send the active adapter's trained copy under
  the original name and never the frozen ``original_module``;
- tied parameters are yielded once (``named_parameters`` deduplicates them), as vLLM's ``load_weights`` wants, or,
  with ``include_aliases``, under every name they have (the reload path needs that: see grpo_sim/vllm_sync.py).

:func:`save_for_reload` writes the pairs as a safetensors checkpoint directory (atomically) for vLLM's
``reload_weights`` (the CPU sync path, see grpo_sim/vllm_sync.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from .io import atomic_directory

#: the safetensors file (and its index) a reload directory holds
WEIGHTS_FILE = "model.safetensors"


def unwrap_model(model: Any) -> Any:
    """The module under accelerate's / torch's wrappers (DDP, DeepSpeed engine, ``torch.compile``)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _lora_layers(model: Any) -> dict[str, Any]:
    """Module name -> peft LoRA layer, for every LoRA layer of ``model``."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def _merged_weight(layer: Any, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``W + sum over active adapters of scale * B @ A`` in float32, cast to ``dtype``; ``W`` is only read."""
    merged = weight.detach().to(torch.float32, copy=True)
    if getattr(layer, "disable_adapters", False) or getattr(layer, "merged", False):
        return merged.to(dtype)  # adapters off, or already merged into W by the user: W is what the model computes
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A:
            continue
        if adapter in getattr(layer, "lora_variant", {}):
            raise NotImplementedError(
                f"LoRA variant {type(layer.lora_variant[adapter]).__name__} (e.g. DoRA) cannot be synced to vLLM "
                "without merging it into the base weights: use plain LoRA with vLLM, or train without vLLM"
            )
        if getattr(layer, "lora_bias", {}).get(adapter):
            raise NotImplementedError("LoRA with lora_bias=True cannot be synced to vLLM: train with lora_bias off")
        # peft's own delta (fan_in_fan_out and scaling handled), computed from A and B only
        merged += layer.get_delta_weight(adapter).to(torch.float32)
    return merged.to(dtype)


def _peft_pairs(model: Any, dtype: torch.dtype | None, aliases: bool) -> Iterator[tuple[str, torch.Tensor]]:
    layers = _lora_layers(model)
    active = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapters[0]
    prefix = model.prefix  # "lora_"
    for name, param in model.named_parameters(remove_duplicate=not aliases):
        if f".{prefix}" in name or name.startswith(prefix) or ".original_module." in name:
            continue  # adapter tensors (merged below) and the frozen copies modules_to_save replace
        if ".modules_to_save." in name:
            owner, _, rest = name.partition(".modules_to_save.")
            adapter, _, leaf = rest.partition(".")
            if adapter != active:
                continue
            name = f"{owner}.{leaf}"
        target = param.dtype if dtype is None else dtype
        module_name, _, leaf = name.rpartition(".")
        if module_name.endswith(".base_layer") and leaf == "weight" and module_name[: -len(".base_layer")] in layers:
            tensor = _merged_weight(layers[module_name[: -len(".base_layer")]], param, target)
        else:
            tensor = tensor_to_send(param, target)
        yield vllm_name(name.removeprefix("base_model.model.").replace(".base_layer", "")), tensor


def weights_to_send(
    model: Any, dtype: torch.dtype | None = None, include_aliases: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every weight vLLM holds, under the base model's names, in ``dtype`` (None: as is).

    ``model`` may be wrapped (DDP, ...) and may be a peft model. LoRA layers are sent merged (``W + scale * B @ A``
    computed into a temporary), the base weights are left bit-identical. Tensors are detached; a tensor already in
    ``dtype`` is the parameter's own storage (no copy), so consume each pair before the next optimizer step.
    ``include_aliases``: a tied parameter (e.g. ``lm_head.weight`` = ``model.embed_tokens.weight``) is yielded
    under each of its names, not only the first.
    """
    model = unwrap_model(model)
    if is_peft_model(model):
        yield from _peft_pairs(model, dtype, include_aliases)
        return
    for name, param in model.named_parameters(remove_duplicate=not include_aliases):
        yield vllm_name(name), tensor_to_send(param, dtype)


def vllm_name(name: str) -> str:
    """A parameter's name as vLLM's ``load_weights`` knows it (without activation-checkpointing wrappers)."""
    return name.replace("_checkpoint_wrapped_module.", "")


def tensor_to_send(param: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A full weight as sent: detached, in ``dtype`` (None: its own); no copy when it already is in ``dtype``."""
    return param.detach().to(param.dtype if dtype is None else dtype)


def save_for_reload(pairs: Iterable[tuple[str, torch.Tensor]], directory: str | os.PathLike[str]) -> Path:
    """Write ``pairs`` as ``directory/model.safetensors`` (replacing the directory atomically: a reader never sees
    half a checkpoint); returns the directory. What vLLM's ``reload_weights(weights_path=directory)`` reads."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in pairs}
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": {name: WEIGHTS_FILE for name in tensors}}
        (tmp / f"{WEIGHTS_FILE}.index.json").write_text(json.dumps(index))
    return Path(directory)
