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


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo", timeout=timedelta(seconds=float(sys.argv[3])))
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
