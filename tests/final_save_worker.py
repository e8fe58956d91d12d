"""Worker for the 2-process final-save test: ``grpo_sim.train`` with a record of which ranks save final/
and of how the final evaluation runs (on which rank, with or without a process group, from what)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    record, launcher_args = Path(sys.argv[1]), sys.argv[2:]
    rank = int(os.environ.get("RANK", "0"))

    import torch.distributed as dist

    import grpo_sim.eval as eval_package
    from grpo_sim.trainer import PSGRPOTrainer

    saves: list[str] = []
    real_save_model, real_evaluate_model = PSGRPOTrainer.save_model, eval_package.evaluate_model

    def save_model(self, output_dir=None, _internal_call=False):
        if output_dir is not None and Path(output_dir).name == "final":
            saves.append(str(output_dir))
            (record / f"save-rank{rank}.json").write_text(json.dumps(saves))
        return real_save_model(self, output_dir, _internal_call)

    def evaluate_model(model_or_path, *args, **kwargs):
        model = str(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else type(model_or_path).__name__
        (record / f"eval-rank{rank}.json").write_text(
            json.dumps({"rank": rank, "process_group": dist.is_available() and dist.is_initialized(), "model": model})
        )
        return real_evaluate_model(model_or_path, *args, **kwargs)

    PSGRPOTrainer.save_model = save_model
    eval_package.evaluate_model = evaluate_model
    sys.argv = [sys.argv[0], *launcher_args]
    from grpo_sim.train import main as train_main

    train_main()


if __name__ == "__main__":
    main()
