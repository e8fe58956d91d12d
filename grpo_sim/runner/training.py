"""``run_training``: a recipe trained end to end (checks, data, model, trainer, resume, signals, final save)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..distributed import is_main_process
from ..io import atomic_write_text
from ..models.startup import policy_start_checks
from ..recipe import Recipe, RecipeError, build_config
from ..reward_terms import RewardFunctionError
from .callbacks import (
    GracefulStopCallback,
    MetricsFileCallback,
    NothingLeftToTrain,
    NothingLeftToTrainCallback,
    RecipeToTrackersCallback,
)
from .directory import FINAL_ADAPTER_DIR, FINAL_DIR, RESOLVED_RECIPE, find_checkpoints, run_directory
from .finish import (
    end_distributed,
    evaluate_final,
    hub_target,
    merge_saved_adapter,
    model_card,
    push_final_to_hub,
    save_trained_model,
)
from .loading import cpu_defaults, is_prompt_rows, load_model, lora_config, training_rows, vllm_model_length
from .start import agree_on_start, check_output_dir_is_shared

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint."""

    def __init__(self, signum: int, checkpoint: str | None, output_dir: Path):
        self.signum = signum
        self.checkpoint = checkpoint
        self.output_dir = output_dir
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class RunResult:
    output_dir: Path
    final_model: Path | None
    global_step: int
    seconds: float
    last_metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    final_adapter: Path | None = None
    pushed_to: str | None = None


def run_training(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a recipe end to end. Raises RecipeError/RunError for bad input, Interrupted on signals."""
    from ..trainer import PSGRPOTrainer

    start = time.time()
    out = run_directory(recipe, output_dir)
    cache = Path(cache_dir) if cache_dir else None
    recipe = cpu_defaults(recipe)
    if "run_name" not in recipe.training:  # trackers (wandb, tensorboard) name the run after its directory
        recipe = recipe.model_copy(update={"training": {**recipe.training, "run_name": out.name}})
    # Everything (data, batches, output dir, resume target) is checked before any process writes, so a run that
    # cannot start leaves no trace and its rerun with the fixed input is not refused. The output-dir and resume
    # decisions are global rank 0's, the same on every machine; a problem on any rank fails every rank.
    try:
        # built once: the start checks and the trainer use this one. (Every GRPOConfig build resets accelerate's
        # shared state, so a config built after this one, e.g. for a batch plan, would leave the trainer's stale.)
        config = build_config(recipe, out)
    except RecipeError:
        config = None  # agree_on_start reports why, with every other problem
    decisions = agree_on_start(recipe, out, resume, overwrite, config)
    assert config is not None  # otherwise agree_on_start raised
    state = config.distributed_state
    if state.is_main_process:
        if decisions.must_empty:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESOLVED_RECIPE, recipe.dump_yaml())
    check_output_dir_is_shared(out, decisions.checkpoint, save_on_each_node=bool(config.save_on_each_node))
    checkpoint = decisions.checkpoint
    train_sets, eval_sets = decisions.train_sets, decisions.eval_sets
    train_dataset = (
        decisions.train_dataset if decisions.train_dataset is not None else training_rows(train_sets, recipe)
    )
    model, tokenizer, final_dtype = load_model(recipe, cache, config)
    policy_start_checks(
        model,
        tokenizer,
        [row[-1]["content"] for row in train_dataset["prompt"]],
        f"data.train ({recipe.data.train})",
        recipe.model.name_or_path,
    )
    if config.use_vllm and config.vllm_max_model_length is None:  # vLLM sized to this run's data, not the model
        config.vllm_max_model_length = vllm_model_length(
            tokenizer, train_dataset["prompt"], config.max_completion_length, recipe.model.chat_template_kwargs
        )
        logger.info("vllm_max_model_length: %d (longest prompt + max_completion_length)", config.vllm_max_model_length)
    if recipe.model.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)

    stopper = GracefulStopCallback()
    metrics_cb = MetricsFileCallback(out)
    trainer = PSGRPOTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(recipe),
        callbacks=[metrics_cb, stopper, NothingLeftToTrainCallback(), RecipeToTrackersCallback(recipe)],
    )
    if progress and sys.stdout.isatty() and is_main_process():
        from transformers.trainer_callback import ProgressCallback
        from trl.trainer.callbacks import RichProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(RichProgressCallback())
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except RewardFunctionError as exc:  # the user's reward code: say where the run can be resumed from
        complete, _ = find_checkpoints(out)
        exc.output_dir, exc.checkpoint = str(out), str(complete[0]) if complete else None
        raise
    except NothingLeftToTrain:
        logger.info(
            "%s is at max_steps (%d): nothing left to train, saving it as the final model",
            checkpoint,
            trainer.state.max_steps,
        )
    finally:
        stopper.uninstall()
    if stopper.stopped_at is not None:
        # No rank leaves before rank 0 has written the checkpoint and its completion marker: a launcher that kills
        # the job when one process exits (srun --kill-on-bad-exit, torchrun) would otherwise kill the writer.
        trainer.accelerator.wait_for_everyone()
        saved = f"checkpoint-{stopper.stopped_at}"
        raise Interrupted(stopper.signum, str(out / saved) if (out / saved).is_dir() else None, out)
    if stopper.signum is not None:
        logger.warning("%s came during the last step: finishing the run", signal.Signals(stopper.signum).name)

    result = RunResult(out, out / FINAL_DIR, trainer.state.global_step, time.time() - start, metrics_cb.last)
    is_main = trainer.accelerator.is_main_process
    merge = recipe.model.lora is not None and recipe.model.merge_adapters
    if merge:
        result.final_adapter = out / FINAL_ADAPTER_DIR
    save_trained_model(trainer, result.final_adapter or result.final_model, final_dtype)
    hub_repo = hub_target(trainer)
    # Training is over: free it, and end the process group, so that nothing below can wait on another rank
    # (a sharded model blocks a rank-0-only forward forever; a long evaluation outlives the group's timeout).
    trainer.accelerator.free_memory()
    del trainer, model
    end_distributed()
    if not is_main:
        return result

    if merge:
        merge_saved_adapter(recipe, cache, result.final_adapter, result.final_model)
    if eval_sets and recipe.evaluation.enabled:
        result.evaluation = evaluate_final(recipe, result.final_model, eval_sets, out / "eval")
    data_summary = (
        {"train_rows": len(train_sets)}
        if is_prompt_rows(train_sets)
        else {"train_sets": len(train_sets), "paraphrases_per_set": len(train_sets[0].paraphrases)}
    )
    card = model_card(recipe, result, data_summary)
    atomic_write_text(result.final_model / "README.md", card)
    atomic_write_text(out / "README.md", card)  # replaces TRL's stock card (written with every checkpoint)
    if hub_repo is not None:
        result.pushed_to = push_final_to_hub(result.final_model, *hub_repo)
    return result
