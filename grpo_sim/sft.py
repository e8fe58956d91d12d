"""``grpo-sim sft RECIPE``: a supervised warm start on the recipe's own data, with TRL's ``SFTTrainer``.

Every wording of every training set that has a gold answer becomes one prompt-completion example: the
user message is the wording with its passages in the recipe's prompt template (exactly what GRPO will
show), the completion the set's first gold answer. Ordinary (prompt, reference) rows (``data.format: prompts``)
are ordinary SFT: each prompt (with ``data.system_prompt``) and its first reference. The loss is on the
completion only (TRL's default for prompt-completion data). The run directory follows ``grpo-sim train``'s
conventions (a non-empty directory needs ``--resume`` or ``--overwrite``; ``--resume auto`` continues from the
newest complete checkpoint; SIGTERM/SIGINT saves a checkpoint and says how to resume; ``metrics.jsonl``); its ``final/``
is the model ``grpo-sim train`` takes (``model.name_or_path``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from .io import atomic_write_text
from .recipe import Recipe, RecipeError
from .recipe.schema import SFT_CONFIG_FIELDS

logger = logging.getLogger(__name__)


def sft_directory(recipe: Recipe, output_dir: str | os.PathLike[str] | None = None) -> Path:
    """--output-dir, else sft.output_dir, else runs/<recipe name>-sft."""
    return Path(output_dir or recipe.sft.output_dir or f"runs/{Path(recipe._source).stem}-sft").resolve()


def start_model(recipe: Recipe) -> str:
    return recipe.sft.model or recipe.model.name_or_path


def _first_reference(answers: Any) -> str | None:
    if isinstance(answers, str):
        return answers or None
    return next((a for a in answers or [] if a), None)


def sft_rows(sets, template: str) -> tuple[list[dict[str, Any]], int]:
    """(conversational prompt-completion rows, number of sets (or ordinary rows) skipped for having no gold answer).

    Paraphrase sets: every wording in the prompt template with the set's first gold answer. Ordinary rows
    (``{prompt: [messages], answers}``, the system prompt already first): ordinary SFT, each prompt with its first
    reference as the completion."""
    from .data.schema import to_training_rows
    from .runner import is_prompt_rows

    if is_prompt_rows(sets):  # ordinary prompt rows
        rows = [
            {"prompt": row["prompt"], "completion": [{"role": "assistant", "content": reference}]}
            for row in sets
            if (reference := _first_reference(row.get("answers"))) is not None
        ]
        return rows, len(sets) - len(rows)
    rows = [
        {"prompt": row["prompt"], "completion": [{"role": "assistant", "content": row["answers"][0]}]}
        for row in to_training_rows(sets, template)
        if row["answers"]
    ]
    return rows, sum(1 for s in sets if not s.answers)


def sft_config(recipe: Recipe, output_dir: Path):
    """trl.SFTConfig from the sft section (CPU-safe precision without a GPU; no truncation: prompts keep their
    passages and answers are never cut off)."""
    import torch
    from trl import SFTConfig

    sft = recipe.sft
    kwargs: dict[str, Any] = {field: getattr(sft, key) for key, field in SFT_CONFIG_FIELDS.items()}
    kwargs.update(
        output_dir=str(output_dir),
        save_strategy="steps",
        max_length=None,
        gradient_checkpointing=False,
        report_to=recipe.training.get("report_to", "none"),
        run_name=output_dir.name,
    )
    if not torch.cuda.is_available():
        kwargs.update(use_cpu=True, bf16=False)
    kwargs.update(sft.args)
    try:
        return SFTConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{recipe._source}: sft settings rejected by trl.SFTConfig: {exc}") from None


def _sft_trainer_class():
    from trl import SFTTrainer

    class WarmStartTrainer(SFTTrainer):
        """SFTTrainer whose run directory gets grpo-sim's model card (written at the end), not TRL's stock card."""

        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            return None

    return WarmStartTrainer


def sft_model_card(
    recipe: Recipe,
    output_dir: Path,
    rows: int,
    sets: int,
    steps: int,
    seconds: float,
    evaluation: dict[str, Any] | None,
    ordinary: bool = False,
) -> str:
    from .runner import evaluation_card_lines

    lines = [
        "---",
        "library_name: transformers",
        "tags: [grpo-sim, sft, trl]",
        "---",
        "",
        f"# {output_dir.name}",
        "",
        "Supervised warm start made with grpo-sim (`grpo-sim sft`, TRL SFTTrainer), to be trained further with "
        "PS-GRPO (`grpo-sim train`, model.name_or_path = this directory).",
        "",
        f"- start model: `{start_model(recipe)}`",
        (
            f"- data: `{recipe.data.train}` ({rows} ordinary rows with references; target: the first reference)"
            if ordinary
            else f"- data: `{recipe.data.train}` ({sets} sets with gold answers, {rows} wordings; prompt "
            f"`{recipe.data.prompt}`; target: the set's first gold answer)"
        ),
        f"- settings: {recipe.sft.epochs:g} epoch(s), max_steps {recipe.sft.max_steps}, learning rate "
        f"{recipe.sft.learning_rate:g}, batch {recipe.sft.batch_size} x {recipe.sft.gradient_accumulation_steps}",
        f"- steps: {steps}, wall time {seconds:.0f} s",
        f"- recipe: `{recipe._source}` (resolved copy: `recipe.resolved.yaml` in the run directory)",
        "",
    ]
    return "\n".join(lines + evaluation_card_lines(evaluation))


def run_sft(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
):
    """Warm-start the recipe's model on its training data; returns a :class:`grpo_sim.runner.RunResult`.

    Raises RecipeError/RunError for bad input (before anything is written) and Interrupted on signals.
    """
    from .models.startup import policy_start_checks
    from .runner import (
        FINAL_DIR,
        RESOLVED_RECIPE,
        GracefulStopCallback,
        Interrupted,
        MetricsFileCallback,
        NothingLeftToTrain,
        NothingLeftToTrainCallback,
        RunError,
        RunResult,
        check_output_dir,
        evaluate_final,
        is_prompt_rows,
        load_data,
        load_model,
        resolve_resume,
        resume_target_problems,
        save_trained_model,
        trim_sets,
    )

    start = time.time()
    out = sft_directory(recipe, output_dir)
    cache = Path(cache_dir) if cache_dir else None
    # everything that can fail on bad input is checked before the first write
    must_empty = check_output_dir(out, resume, overwrite)
    checkpoint = resolve_resume(out, resume)
    from .models.startup import model_location_problem
    from .sources import MODEL_SOURCES

    key = "sft.model" if recipe.sft.model else "model.name_or_path"
    unloadable = (
        None
        if start_model(recipe) in MODEL_SOURCES
        else model_location_problem(start_model(recipe), recipe.model.revision, key)
    )
    if unloadable is not None:
        raise RecipeError(f"{recipe._source}: {unloadable}")
    if checkpoint is not None:
        wrong_kind = resume_target_problems(Path(checkpoint), recipe, resume, expected="sft")
        if wrong_kind:
            raise RunError("\n".join(wrong_kind))
    sets = trim_sets(load_data(recipe.data.train, recipe, "train"), None, recipe.data.max_train_sets)
    rows, unanswered = sft_rows(sets, recipe.data.prompt)
    if not rows:
        raise RecipeError(
            f"data.train ({recipe.data.train}): no set or row has a gold answer (answers), so there is "
            "nothing to learn from; a supervised warm start needs answers"
        )
    if unanswered:
        logger.warning("sft: %d of %d set(s)/row(s) have no gold answer and are left out", unanswered, len(sets))
    eval_sets = None
    if recipe.data.eval and recipe.evaluation.enabled:
        eval_sets = trim_sets(load_data(recipe.data.eval, recipe, "eval"), None, recipe.data.max_eval_sets)
    config = sft_config(recipe, out)
    start_recipe = recipe.model_copy(
        update={"model": recipe.model.model_copy(update={"name_or_path": start_model(recipe)})}
    )
    start_recipe._source = recipe._source
    model, tokenizer, final_dtype = load_model(start_recipe, cache, config)
    policy_start_checks(
        model,
        tokenizer,
        [r["prompt"][-1]["content"] for r in rows],
        f"data.train ({recipe.data.train})",
        start_model(recipe),
    )

    from datasets import Dataset

    if config.process_index == 0:
        if must_empty:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESOLVED_RECIPE, recipe.dump_yaml())
    stopper = GracefulStopCallback()
    metrics_cb = MetricsFileCallback(out)
    trainer = _sft_trainer_class()(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[metrics_cb, stopper, NothingLeftToTrainCallback()],
    )
    positions = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(ids) for ids in trainer.train_dataset["input_ids"])
    if positions is not None and longest > positions:
        raise RunError(
            f"the longest training example is {longest} tokens, but {start_model(recipe)} has "
            f"max_position_embeddings {positions}: use fewer passages (data retrieve --k), or rebuild "
            "the model with grpo-sim model init (positions follow the longest prompt)"
        )
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except NothingLeftToTrain:
        logger.info("%s is at max_steps: nothing left to train, saving it as the final model", checkpoint)
    finally:
        stopper.uninstall()
    if stopper.stopped_at is not None:
        trainer.accelerator.wait_for_everyone()
        saved = out / f"checkpoint-{stopper.stopped_at}"
        raise Interrupted(stopper.signum or signal.SIGTERM, str(saved) if saved.is_dir() else None, out)

    result = RunResult(out, out / FINAL_DIR, trainer.state.global_step, time.time() - start, metrics_cb.last)
    save_trained_model(trainer, result.final_model, final_dtype)
    is_main = trainer.accelerator.is_main_process
    del trainer, model
    if not is_main:
        return result
    if eval_sets:
        result.evaluation = evaluate_final(recipe, result.final_model, eval_sets, out / "eval")
    card = sft_model_card(
        recipe,
        out,
        len(rows),
        len(sets) - unanswered,
        result.global_step,
        result.seconds,
        result.evaluation,
        ordinary=is_prompt_rows(sets),
    )
    atomic_write_text(result.final_model / "README.md", card)
    atomic_write_text(out / "README.md", card)
    return result


__all__ = ["run_sft", "sft_config", "sft_directory", "sft_rows"]
