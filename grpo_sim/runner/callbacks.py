"""The runner's TrainerCallbacks: metrics.jsonl and complete checkpoints, the recipe in the trackers, a graceful
stop on SIGTERM/SIGINT, no step past max_steps on resume."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..distributed import is_main_process
from ..io import atomic_write_text
from ..recipe import Recipe
from ..signals import StopSignals
from .directory import COMPLETE_MARKER, METRICS_FILE

logger = logging.getLogger(__name__)


class NothingLeftToTrain(Exception):
    """Raised before the first step of a run resumed at (or past) max_steps: only the final save remains."""


#: the key of transformers' end-of-training summary row (``train_runtime``, ``train_loss``, ...)
SUMMARY_KEY = "train_runtime"


def drop_metrics_after(path: Path, step: int, max_steps: int | None = None) -> int:
    """Rewrite metrics.jsonl (atomically) without the rows logged after ``step``; returns how many were dropped.

    A resumed run continues from its checkpoint's step, so rows the stopped run logged past it would
    otherwise appear twice (``1..6, 4..8``). A line cut off by a kill is dropped too. With ``max_steps``, so are
    the end-of-training summary rows logged before it: those of runs a signal stopped, which training continues
    (the finished run writes its own summary).
    """
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            row_step = row["step"]
        except (ValueError, KeyError, TypeError):
            row, row_step = {}, None
        interrupted_summary = max_steps is not None and SUMMARY_KEY in row and row_step < max_steps
        if row_step is None or row_step > step or interrupted_summary:
            dropped += 1
        else:
            kept.append(line + "\n")
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


class MetricsFileCallback(TrainerCallback):
    """Appends every logged step to metrics.jsonl (main process only) and marks complete checkpoints."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / METRICS_FILE
        self.last: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        # state.global_step is the resumed checkpoint's step here (0 for a fresh start)
        if state.is_world_process_zero:
            dropped = drop_metrics_after(self.path, state.global_step, max_steps=state.max_steps)
            if dropped:
                logger.info(
                    "%s: dropped %d row(s) logged after step %d or summing up a stopped run (training continues "
                    "from there)",
                    self.path,
                    dropped,
                    state.global_step,
                )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        if "reward" in logs or "loss" in logs:  # keep the last training log, not the end-of-run summary
            self.last = row
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def on_save(self, args, state, control, **kwargs):
        # with save_on_each_node every machine writes (and resumes from) its own copy
        if state.is_local_process_zero if args.save_on_each_node else state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                atomic_write_text(checkpoint / COMPLETE_MARKER, json.dumps({"step": state.global_step}))


class RecipeToTrackersCallback(TrainerCallback):
    """Puts the resolved recipe into the experiment trackers' run config (wandb), next to TRL's args."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or "wandb" not in (args.report_to or []):
            return
        try:
            import wandb
        except ImportError:
            return
        if wandb.run is not None:
            wandb.config.update(
                {"grpo_sim_recipe": self.recipe.resolved_dict(), "grpo_sim_recipe_file": self.recipe._source},
                allow_val_change=True,
            )


class GracefulStopCallback(StopSignals, TrainerCallback):
    """SIGTERM/SIGINT: finish the current step, save a checkpoint, stop. A second SIGINT aborts.

    A signal during the last step stops nothing: that step ends the run anyway, so the run finishes
    normally (final save, evaluation) instead of leaving a checkpoint at max_steps to resume from.
    """

    def __init__(self):
        super().__init__(abort_on_repeat=(signal.SIGINT,), on_signal=self._announce)
        self.stopped_at: int | None = None  # the step training stopped after, when a signal stopped it

    @staticmethod
    def _announce(signum: int) -> None:
        if is_main_process():
            # only a second SIGINT aborts (a scheduler repeating its SIGTERM must not lose the checkpoint)
            then = " (Ctrl-C again to abort without saving)" if signum == signal.SIGINT else ", then stopping"
            print(
                f"\n[grpo-sim] {signal.Signals(signum).name} received: saving a checkpoint after this step{then}",
                file=sys.stderr,
                flush=True,
            )

    def _stop_requested(self) -> bool:
        flag = self.signum is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # every rank must stop at the same step
            import torch

            tensor = torch.tensor([1.0 if flag else 0.0])
            if dist.get_backend() == "nccl":
                tensor = tensor.cuda()
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item() > 0)
            if flag and self.signum is None:
                self.signum = signal.SIGTERM
        return flag

    def on_step_end(self, args, state, control, **kwargs):
        stop = self._stop_requested()  # every rank joins the all-reduce at every step
        if stop and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


class NothingLeftToTrainCallback(TrainerCallback):
    """Resumed at max_steps (a run killed after its last checkpoint, before final/): train no further step.

    transformers checks max_steps only after a step, so it would train one step past it. The checkpoint's
    weights are loaded before on_train_begin; stopping there leaves exactly the state to save as final.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise NothingLeftToTrain
