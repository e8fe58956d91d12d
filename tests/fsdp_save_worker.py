"""Worker for the FSDP2 save test (torchrun, 2 gloo processes): what reading a sharded model's weights
does when only the main process asks (the old final save) and when every process does (trainer.save_model,
which for FSDP2 goes through accelerate's get_state_dict = get_model_state_dict(full_state_dict=True))."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def final_in_dtype(out: Path) -> None:
    """Mode ``in_dtype``: a bf16 Qwen2 upcast to float32 and sharded (as accelerate does under FSDP2 with mixed
    precision), gathered on every rank, written by the main process with grpo_sim's final save cast."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from grpo_sim.runner.finish import write_in_dtype

    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.float()
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        write_in_dtype(model, full, out / "final", torch.bfloat16)
        torch.save(reference, out / "reference.pt")
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo", timeout=timedelta(seconds=float(sys.argv[3])))
    if mode == "in_dtype":
        final_in_dtype(out)
        return
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    start, result = time.time(), {}
    try:
        if mode == "main_only":
            if rank == 0:  # the old pattern: the main process alone reads (and would write) the weights
                full = {k: v.full_tensor() for k, v in model.state_dict().items()}
                result["equal"] = all(torch.equal(full[k], reference[k]) for k in reference)
            dist.barrier()  # the other processes wait for it, as wait_for_everyone() did
        else:  # every process joins the gather; the main process gets the full weights
            full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if rank == 0:
                result["equal"] = all(torch.equal(full[k], reference[k]) for k in reference)
            dist.barrier()
        result["outcome"] = "completed"
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
        result["outcome"] = f"{type(exc).__name__}"
    result["seconds"] = round(time.time() - start, 1)
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # a process group left mid-collective must not hang the exit


if __name__ == "__main__":
    main()
