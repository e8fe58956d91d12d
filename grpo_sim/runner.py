"""Run a recipe: output directory policy, data, model, trainer, resume, signals, final save.

Used by ``grpo-sim train``, ``python -m grpo_sim.train`` (under ``accelerate launch``) and the demo.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .io import atomic_write_text
from .recipe import DEMO_DATA, DEMO_MODEL, Recipe, RecipeError, build_config

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".grpo_sim_complete"
RESOLVED_RECIPE = "recipe.resolved.yaml"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"


class RunError(RuntimeError):
    """The run cannot start or continue as asked (output directory, checkpoints)."""


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint."""

    def __init__(self, signum: int, checkpoint: str | None, output_dir: Path):
        self.signum = signum
        self.checkpoint = checkpoint
        self.output_dir = output_dir
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

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


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------------------------ checkpoints
def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def find_checkpoints(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoints, newest first. Complete = our marker was written after the save."""
    if not output_dir.is_dir():
        return [], []
    candidates = sorted((p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0),
                        key=_step_of, reverse=True)
    complete = [p for p in candidates if (p / COMPLETE_MARKER).exists()]
    incomplete = [p for p in candidates if not (p / COMPLETE_MARKER).exists()]
    return complete, incomplete


def resolve_resume(output_dir: Path, resume: str | None) -> str | None:
    """Checkpoint path to resume from (``auto`` = newest complete one), or None to start fresh."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise RunError(f"--resume {resume}: no such checkpoint directory")
        if not (path / "trainer_state.json").exists():
            raise RunError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json)")
        return str(path)
    complete, incomplete = find_checkpoints(output_dir)
    newest_complete = _step_of(complete[0]) if complete else -1
    for path in incomplete:
        if _step_of(path) > newest_complete:
            logger.warning("skipping %s: its write did not finish (no %s marker)", path, COMPLETE_MARKER)
    if complete:
        return str(complete[0])
    logger.warning("--resume auto: no complete checkpoint in %s, starting from step 0", output_dir)
    return None


def check_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> bool:
    """Refuse to mix runs: a non-empty directory needs --resume or --overwrite. Returns "must empty it".

    Reads only, so every process can run it before any process writes.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise RunError(f"output directory {output_dir} exists and is not a directory")
    existing = [p.name for p in output_dir.iterdir()] if output_dir.is_dir() else []
    if existing and resume is None:
        if not overwrite:
            shown = ", ".join(sorted(existing)[:5]) + (" ..." if len(existing) > 5 else "")
            raise RunError(
                f"output directory {output_dir} is not empty ({shown}). Continue that run with --resume auto, "
                "start again with --overwrite (deletes it), or choose another --output-dir."
            )
        return True
    return False


# ------------------------------------------------------------------------------------ callbacks
class MetricsFileCallback(TrainerCallback):
    """Appends every logged step to metrics.jsonl (main process only) and marks complete checkpoints."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / METRICS_FILE
        self.last: dict[str, Any] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        if "reward" in logs or "loss" in logs:  # keep the last training log, not the end-of-run summary
            self.last = row
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
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
            wandb.config.update({"grpo_sim_recipe": self.recipe.resolved_dict(),
                                 "grpo_sim_recipe_file": self.recipe._source}, allow_val_change=True)


class GracefulStopCallback(TrainerCallback):
    """SIGTERM/SIGINT: finish the current step, save a checkpoint, stop. A second SIGINT aborts."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (e.g. inside a notebook worker)
                pass

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if is_main_process():
            print(f"\n[grpo-sim] {signal.Signals(signum).name} received: saving a checkpoint after this step "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

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
        if self._stop_requested():
            control.should_save = True
            control.should_training_stop = True
        return control


# ------------------------------------------------------------------------------------ data + model
def load_sets(spec: str, recipe: Recipe, split: str):
    """Paraphrase sets from a JSONL path, 'hf:NAME[:SPLIT]' or the bundled demo."""
    from .data.schema import read_psets

    if spec == DEMO_DATA:
        from .demo import demo_data

        train, eval_ = demo_data(recipe.data.demo)
        return train if split == "train" else eval_
    if spec.startswith("hf:"):
        from datasets import load_dataset

        from .data.schema import ParaphraseSet

        name, _, hf_split = spec[3:].partition(":")
        rows = load_dataset(name, split=hf_split or split)
        return [ParaphraseSet.model_validate(dict(r)) for r in rows]
    path = Path(spec)
    if not path.exists():
        raise RecipeError(f"{recipe._source}: data.{split}: {spec} does not exist")
    return read_psets(path)


def trim_sets(sets, paraphrases_per_set: int | None, max_sets: int | None):
    if paraphrases_per_set is not None:
        short = [s.set_id for s in sets if len(s.paraphrases) < paraphrases_per_set]
        if short:
            raise RecipeError(f"data.paraphrases_per_set={paraphrases_per_set}, but {len(short)} set(s) have fewer "
                              f"paraphrases (e.g. {short[:3]}); lower it or filter the data")
        sets = [s.model_copy(update={"paraphrases": s.paraphrases[:paraphrases_per_set]}) for s in sets]
    return sets[:max_sets] if max_sets else sets


def training_rows(sets, recipe: Recipe):
    from datasets import Dataset

    from .data.schema import to_training_rows

    return Dataset.from_list(to_training_rows(sets, recipe.data.prompt))


def resolve_model_path(recipe: Recipe, cache_dir: Path | None = None) -> str:
    if recipe.model.name_or_path == DEMO_MODEL:
        from .demo import demo_warmstart

        return str(demo_warmstart(recipe.data.demo, cache_dir=cache_dir))
    return recipe.model.name_or_path


def load_model(recipe: Recipe, cache_dir: Path | None = None):
    from .models.tiny import load_policy

    path = resolve_model_path(recipe, cache_dir)
    kwargs: dict[str, Any] = {}
    if recipe.model.attn_implementation:
        kwargs["attn_implementation"] = recipe.model.attn_implementation
    try:
        return load_policy(path, dtype=None if recipe.model.dtype == "auto" else recipe.model.dtype, **kwargs)
    except OSError as exc:
        raise RecipeError(f"{recipe._source}: model.name_or_path {path!r} could not be loaded: {exc}") from None


def lora_config(recipe: Recipe):
    if recipe.model.lora is None:
        return None
    from peft import LoraConfig

    lora = recipe.model.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def cpu_defaults(recipe: Recipe) -> Recipe:
    """GRPOConfig defaults to bf16, which fails without a GPU: default to CPU-safe settings there."""
    import torch

    if torch.cuda.is_available():
        return recipe
    training = dict(recipe.training)
    training.setdefault("use_cpu", True)
    training.setdefault("bf16", False)
    return recipe.model_copy(update={"training": training})


# ------------------------------------------------------------------------------------ model card
def model_card(recipe: Recipe, result: RunResult, data_summary: dict[str, Any]) -> str:
    reward = recipe.reward
    relaxed = f"relaxed (kappa={reward.relaxed.kappa}, samples={reward.relaxed.samples})" if reward.relaxed else "exact"
    accuracy = f"{reward.accuracy.weight} x {reward.accuracy.metric} vs gold" if reward.accuracy else "none"
    lines = [
        "---", "library_name: transformers", "tags: [grpo-sim, ps-grpo, trl, grpo]", "---", "",
        f"# {result.output_dir.name}", "",
        "Fine-tuned with [grpo-sim](https://github.com/) PS-GRPO (paraphrased-set GRPO, Hamman et al. 2025).", "",
        f"- base model: `{recipe.model.name_or_path}`" + (" + LoRA" if recipe.model.lora else ""),
        f"- training data: `{recipe.data.train}` ({data_summary.get('train_sets')} sets x "
        f"{data_summary.get('paraphrases_per_set')} paraphrases, prompt `{recipe.data.prompt}`)",
        f"- consistency reward: {reward.consistency_weight} x `{reward.similarity}` ({relaxed}), advantages per "
        f"`{reward.advantage}`",
        f"- accuracy reward: {accuracy}",
        f"- steps: {result.global_step}, wall time {result.seconds:.0f} s",
        f"- recipe: `{recipe._source}` (resolved copy: `{RESOLVED_RECIPE}`)", "",
    ]
    if result.evaluation:
        lines += ["## Evaluation (held-out sets)", "", "| metric | value |", "|---|---|"]
        for key, value in result.evaluation.items():
            if isinstance(value, (int, float)) and not key.endswith("_ci"):
                lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ run
def run_training(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a recipe end to end. Raises RecipeError/RunError for bad input, Interrupted on signals."""
    from .trainer import PSGRPOTrainer

    start = time.time()
    out = Path(output_dir or recipe.output_dir or f"runs/{Path(recipe._source).stem}").resolve()
    cache = Path(cache_dir) if cache_dir else None
    recipe = cpu_defaults(recipe)
    if "run_name" not in recipe.training:  # trackers (wandb, tensorboard) name the run after its directory
        recipe = recipe.model_copy(update={"training": {**recipe.training, "run_name": out.name}})
    config = build_config(recipe, out)  # validates GRPOConfig arithmetic before any heavy load
    state = config.distributed_state
    # Every process checks before any process writes (otherwise rank 1 can see rank 0's fresh files).
    must_empty = check_output_dir(out, resume, overwrite)
    state.wait_for_everyone()
    if state.is_main_process:
        if must_empty:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESOLVED_RECIPE, recipe.dump_yaml())
    state.wait_for_everyone()
    checkpoint = resolve_resume(out, resume)

    train_sets = trim_sets(load_sets(recipe.data.train, recipe, "train"), recipe.data.paraphrases_per_set,
                           recipe.data.max_train_sets)
    eval_sets = None
    if recipe.data.eval:
        eval_sets = trim_sets(load_sets(recipe.data.eval, recipe, "eval"), recipe.data.paraphrases_per_set,
                              recipe.data.max_eval_sets)
    from .plan import plan_batches

    plan = plan_batches(recipe, num_processes=config.world_size,
                        paraphrases_per_set=len(train_sets[0].paraphrases) if train_sets else None)
    if plan.problems:
        raise RecipeError(f"{recipe._source}: batch settings do not fit this launch ({config.world_size} "
                          "process(es)):\n  - " + "\n  - ".join(plan.problems))
    train_dataset = training_rows(train_sets, recipe)
    model, tokenizer = load_model(recipe, cache)
    if recipe.model.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)

    stopper = GracefulStopCallback()
    metrics_cb = MetricsFileCallback(out)
    trainer = PSGRPOTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer,
                            peft_config=lora_config(recipe),
                            callbacks=[metrics_cb, stopper, RecipeToTrackersCallback(recipe)])
    if progress and sys.stdout.isatty() and is_main_process():
        from transformers.trainer_callback import ProgressCallback
        from trl.trainer.callbacks import RichProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(RichProgressCallback())
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        stopper.uninstall()
    if stopper.signum is not None:
        saved = f"checkpoint-{trainer.state.global_step}"
        raise Interrupted(stopper.signum, str(out / saved) if (out / saved).is_dir() else None, out)

    result = RunResult(out, None, trainer.state.global_step, time.time() - start, metrics_cb.last)
    final = out / FINAL_DIR
    model_to_save = trainer.model
    if recipe.model.lora is not None and recipe.model.merge_adapters:
        model_to_save = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    if trainer.accelerator.is_main_process:
        model_to_save.save_pretrained(final)
        tokenizer.save_pretrained(final)
    trainer.accelerator.wait_for_everyone()
    result.final_model = final

    if eval_sets and recipe.evaluation.enabled and trainer.accelerator.is_main_process:
        result.evaluation = evaluate_final(recipe, trainer, tokenizer, eval_sets, out / "eval")
    data_summary = {"train_sets": len(train_sets), "paraphrases_per_set": len(train_sets[0].paraphrases)}
    if trainer.accelerator.is_main_process:
        atomic_write_text(final / "README.md", model_card(recipe, result, data_summary))
    return result


def evaluate_final(recipe: Recipe, trainer, tokenizer, eval_sets, output_dir: Path) -> dict[str, Any] | None:
    """Evaluate the trained policy on held-out sets with grpo_sim.eval (when available)."""
    try:
        from .eval import evaluate_model
    except ImportError:  # the evaluator is an optional part of the install
        logger.warning("grpo_sim.eval is not available; skipping evaluation")
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    ev = recipe.evaluation
    return evaluate_model((model, tokenizer), eval_sets, output_dir=output_dir, levels=tuple(ev.levels),
                          metrics=tuple(ev.metrics), max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
