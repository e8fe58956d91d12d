"""Loading helper models (similarity encoders, retrievers) whole on each process, next to a sharded policy.

Under DeepSpeed ZeRO-3 with ``zero3_init_flag: true`` (configs/accelerate/zero3.yaml), accelerate keeps a ZeRO-3
``HfDeepSpeedConfig`` alive for the whole run. transformers' ``from_pretrained`` then partitions EVERY model it
builds (``is_deepspeed_zero3_enabled()`` -> ``deepspeed.zero.Init``): a sentence-transformers encoder loaded later
for a reward gets shape-(0,) weights ("'weight' must be 2-D" on the first forward), and loading it on one rank
only blocks in a collective. Reward and retrieval models are small, are used locally by each rank, and are never
trained, so they are loaded whole on the local device, inside :func:`outside_zero3_init`.

transformers exposes the switch as ``set_hf_deepspeed_config`` / ``unset_hf_deepspeed_config`` but not the object
to restore afterwards, so this module reads its module-level weak reference -- the one place that does.
tests/test_distributed.py pins that behaviour of transformers.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["outside_zero3_init", "local_device", "check_not_partitioned", "process_rank", "is_main_process"]

_SWITCH_LOCK = threading.RLock()


@contextmanager
def outside_zero3_init() -> Iterator[None]:
    """Inside, ``from_pretrained`` builds full (unpartitioned) models even while ZeRO-3 init is active.

    Hides transformers' global ZeRO-3 ``HfDeepSpeedConfig`` for the duration and puts the same object back
    afterwards (also on error); a no-op when none is active or transformers is not installed. Works however the
    config was set (accelerate, ``TrainingArguments(deepspeed=...)`` or a user's ``HfDeepSpeedConfig``).
    accelerate's ``DeepSpeedPlugin.zero3_init_context_manager(enable=False)`` does not do this (1.15): it rebuilds
    the same stage-3 config, so ``is_deepspeed_zero3_enabled()`` stays true inside it.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    with _SWITCH_LOCK:
        if not hf_deepspeed.is_deepspeed_zero3_enabled():
            yield
            return
        ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
        active = ref() if callable(ref) else None
        if active is None:
            raise RuntimeError(
                "DeepSpeed ZeRO-3 init is active but transformers no longer keeps its config in "
                "transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref: update "
                "grpo_sim.distributed.outside_zero3_init for this transformers version"
            )
        hf_deepspeed.unset_hf_deepspeed_config()
        try:
            yield
        finally:
            hf_deepspeed.set_hf_deepspeed_config(active)


def local_device() -> str:
    """This process's accelerator, as accelerate picks it: ``cuda:<LOCAL_RANK mod device count>``, else ``cpu``.

    A bare ``"cuda"`` would mean whatever device is current, which is device 0 until something calls
    ``torch.cuda.set_device`` -- every rank's helper model would then land on GPU 0.
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or not local_rank.strip().isdigit():
        return f"cuda:{torch.cuda.current_device()}"
    return f"cuda:{int(local_rank) % torch.cuda.device_count()}"


def check_not_partitioned(model: Any, what: str) -> None:
    """Raise a clear error when ``model`` has empty (ZeRO-3 partitioned) parameters."""
    empty = [name for name, param in model.named_parameters() if param.numel() == 0]
    if empty:
        raise RuntimeError(
            f"{what} was loaded with {len(empty)} empty parameter(s) (e.g. {empty[0]!r}): it was built inside a "
            "DeepSpeed ZeRO-3 zero.Init context, which partitions it across ranks. Load it outside that context "
            "(grpo_sim.distributed.outside_zero3_init)"
        )


def process_rank() -> int:
    """This process's global rank: torch.distributed's once a process group exists (accelerate, torchrun),
    else the launcher's ``RANK`` variable (set before any group is made), else 0 (a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    rank = os.environ.get("RANK", "0").strip()
    return int(rank) if rank.isdigit() else 0


def is_main_process() -> bool:
    """Whether this process prints and writes the run's shared files (global rank 0)."""
    return process_rank() == 0
