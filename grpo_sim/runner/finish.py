"""After training: the final save (gathered from every rank), the hub push, the merged adapter, the evaluation of
the saved model and the model card."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..distributed import outside_zero3_init
from ..recipe import Recipe
from .directory import RESOLVED_RECIPE, RunError
from .loading import is_prompt_rows, load_recipe_policy

if TYPE_CHECKING:
    from .training import RunResult

logger = logging.getLogger(__name__)


def save_trained_model(trainer, target: Path, final_dtype=None) -> None:
    """Every rank: ``trainer.save_model`` gathers sharded weights (ZeRO-3, FSDP) and the main process writes.

    ``final_dtype``: the float32 master weights :func:`.loading.load_model` made go back to the dtype the recipe
    loaded (a bf16 recipe keeps bf16-sized files); under FSDP the full weights are gathered on every rank and
    cast on the main process as it writes them (:func:`write_in_dtype`).
    """
    if trainer.is_fsdp_enabled:
        # with SHARDED_STATE_DICT (configs/accelerate/fsdp.yaml) save_model would write no weights at all
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    if trainer.is_fsdp_enabled and final_dtype is not None:
        state_dict = trainer.accelerator.get_state_dict(trainer.model)  # every rank joins the gather
        if trainer.accelerator.is_main_process:
            write_in_dtype(trainer.accelerator.unwrap_model(trainer.model), state_dict, target, final_dtype)
            if trainer.processing_class is not None:
                trainer.processing_class.save_pretrained(str(target))
    elif final_dtype is not None:
        trainer.accelerator.unwrap_model(trainer.model).to(final_dtype)
    if not (trainer.is_fsdp_enabled and final_dtype is not None):
        # _internal_call: push_to_hub would upload the whole run directory here; final/ is pushed on its own
        trainer.save_model(str(target), _internal_call=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process and not any(
        (target / name).exists()
        for name in (
            "model.safetensors",
            "model.safetensors.index.json",
            "adapter_model.safetensors",
            "pytorch_model.bin",
        )
    ):
        raise RunError(
            f"{target}: the trainer saved no model weights. Under DeepSpeed ZeRO-3 set "
            "zero3_save_16bit_model: true (stage3_gather_16bit_weights_on_model_save) in the accelerate "
            "config; the last checkpoint holds the trained state."
        )


def write_in_dtype(model, state_dict: dict, target: Path, dtype) -> None:
    """One process: ``model.save_pretrained`` of a gathered full ``state_dict`` with its floating tensors cast to
    ``dtype`` (FSDP's float32 shards back to the recipe's bf16), config.json saying that dtype."""
    import torch

    cast = {k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in state_dict.items()}
    model.save_pretrained(str(target), state_dict=cast)
    model.config.dtype = str(dtype).removeprefix("torch.")  # save_pretrained wrote the float32 shards' dtype
    model.config.save_pretrained(str(target))


def hub_target(trainer) -> tuple[str, str | None, str | None] | None:
    """(repo id, token, revision) when ``training.push_to_hub`` is on, after earlier checkpoint pushes finished."""
    repo_id = getattr(trainer, "hub_model_id", None)  # set on the main process by Trainer.init_hf_repo
    if not trainer.args.push_to_hub or repo_id is None:
        return None
    pending = getattr(trainer, "push_in_progress", None)  # checkpoint pushes run in the background
    if pending is not None and not pending.is_done():
        pending.wait_until_done()
    return repo_id, trainer.args.hub_token, trainer.args.hub_revision


def push_final_to_hub(final: Path, repo_id: str, token: str | None, revision: str | None) -> str:
    """Upload final/ (weights, tokenizer, model card) to the hub repo of ``training.hub_model_id``."""
    from huggingface_hub import upload_folder

    upload_folder(
        repo_id=repo_id, folder_path=str(final), commit_message="grpo-sim: final model", token=token, revision=revision
    )
    logger.info("pushed %s to https://huggingface.co/%s", final, repo_id)
    return repo_id


def end_distributed() -> None:
    """Every rank meets once more, then the process group ends (no collective can run after training)."""
    import gc

    import torch
    import torch.distributed as dist

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def merge_saved_adapter(recipe: Recipe, cache: Path | None, adapter_dir: Path, final: Path) -> None:
    """One process: base model (as the recipe loads it) + the saved adapter, merged, into final/.

    Merging from disk works the same whatever sharded the adapter during training (ZeRO-3, FSDP).
    """
    from peft import PeftModel

    with outside_zero3_init():  # the run's ZeRO-3 config outlives training; this load must be whole
        base, tokenizer = load_recipe_policy(recipe, cache)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))


def row_similarities(recipe: Recipe) -> dict[str, tuple[str, str]]:
    """What the evaluation of ordinary rows scores: ``{key: (similarity, reference column)}`` for every reference
    term (``reference_<name>``, as the reward saw it) and every evaluation metric against the answers
    (``accuracy_<metric>``)."""
    from ..eval.metrics import metric_key

    out = {
        f"reference_{term['name']}": (term["similarity"], term.get("column") or "answers")
        for term in recipe.reward_terms()
        if term["type"] == "reference"
    }
    for entry in recipe.evaluation.metrics:
        key, spec = metric_key(entry)
        out[f"accuracy_{key}"] = (spec, "answers")
    return out


def evaluate_final(recipe: Recipe, final: Path, eval_items, output_dir: Path) -> dict[str, Any]:
    """Evaluate the saved final model (loaded from disk as a plain model) on the held-out data with grpo_sim.eval:
    the consistency evaluation of paraphrase sets, or, for ordinary rows, its greedy answers scored against the
    references (:func:`row_similarities`). Prompts are formatted exactly as training formats them (the template,
    data.system_prompt, model.chat_template_kwargs)."""
    from ..eval import evaluate_model
    from ..eval.rows import evaluate_rows

    ev = recipe.evaluation
    # Under ZeRO-3 the run's HfDeepSpeedConfig is still alive: without this, from_pretrained would partition the
    # evaluation model across a process group that no longer exists.
    with outside_zero3_init():
        if is_prompt_rows(eval_items):  # the rows carry the system prompt already (data.prompts.prompt_rows)
            return evaluate_rows(
                str(final),
                eval_items,
                row_similarities(recipe),
                output_dir,
                chat_template_kwargs=recipe.model.chat_template_kwargs,
                max_new_tokens=ev.max_new_tokens,
                batch_size=ev.batch_size,
            )
        return evaluate_model(
            str(final),
            eval_items,
            output_dir=output_dir,
            levels=tuple(ev.levels),
            metrics=tuple(ev.metrics),
            template=recipe.data.prompt,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            system_prompt=recipe.data.system_prompt,
            chat_template_kwargs=recipe.model.chat_template_kwargs,
        )


def describe_term(term: dict[str, Any]) -> str:
    """One line of the model card for a reward term."""
    kind = term["type"]
    if kind == "consistency":
        relaxed = term.get("relaxed")
        how = f"relaxed (kappa={relaxed['kappa']}, samples={relaxed['samples']})" if relaxed else "exact"
        what = f"`{term['similarity']}` across paraphrases, {how}"
    elif kind == "reference":
        what = f"`{term['similarity']}` against `{term.get('column') or 'answers'}`"
    elif kind == "agreement":
        what = "majority answer of the other paraphrases (Co-Reward)"
    else:
        what = f"`{term['function']}`" + (f" with {term['kwargs']}" if term.get("kwargs") else "")
    if kind in ("consistency", "reference"):
        from ..eval.metrics import encoders

        encoder = encoders({"term": term["similarity"]}).get("term")
        what += f", encoder {encoder}" if encoder else ""
    return f"{term.get('weight', 1.0)} x {term.get('name', kind)} ({kind}): {what}"


def advantage_card_lines(recipe: Recipe, paraphrase_sets: bool) -> list[str]:
    """The advantage setting, where it does something: on paraphrase sets always; on ordinary rows only ``batch``
    (``paraphrase`` is TRL's own group per prompt there)."""
    mode = recipe.reward.advantage or "paraphrase"
    if not paraphrase_sets and mode != "batch":
        return []
    return [f"- advantages per `{mode}`"]


def model_card(recipe: Recipe, result: RunResult, data_summary: dict[str, Any]) -> str:
    terms = recipe.reward_terms()
    data = (
        f"{data_summary.get('train_sets')} sets x {data_summary.get('paraphrases_per_set')} paraphrases, prompt "
        f"`{recipe.data.prompt}`"
        if "train_sets" in data_summary
        else f"{data_summary.get('train_rows')} prompts"
    )
    lines = [
        "---",
        "library_name: transformers",
        "tags: [grpo-sim, ps-grpo, trl, grpo]",
        "---",
        "",
        f"# {result.output_dir.name}",
        "",
        "Fine-tuned with grpo-sim: GRPO with similarity rewards on Hugging Face TRL's GRPOTrainer (consistency "
        "terms: PS-GRPO, Hamman et al., NeurIPS 2025, arXiv:2510.04392).",
        "",
        f"- base model: `{recipe.model.name_or_path}`" + (" + LoRA" if recipe.model.lora else ""),
        f"- training data: `{recipe.data.train}` ({data})",
        *[f"- reward: {describe_term(term)}" for term in terms],
        *advantage_card_lines(recipe, "train_sets" in data_summary),
        f"- steps: {result.global_step}, wall time {result.seconds:.0f} s",
        f"- recipe: `{recipe._source}` (resolved copy: `{RESOLVED_RECIPE}`)",
        "",
    ]
    return "\n".join(lines + evaluation_card_lines(result.evaluation))


def evaluation_card_lines(evaluation: dict[str, Any] | None) -> list[str]:
    """The evaluation table of a model card, with the collapse warnings above it (bookkeeping keys left out)."""
    if not evaluation:
        return []
    from ..eval.report import result_warnings

    rows = evaluation.get("kind") == "rows"  # ordinary rows: answers against references, no consistency
    lines = [f"## Evaluation (held-out {'rows' if rows else 'sets'})", ""]
    warnings = evaluation.get("warnings", []) if rows else result_warnings(evaluation)
    if warnings:
        lines += [f"**Warning:** {warning}" for warning in warnings] + [""]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in evaluation.items():
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not key.endswith("_ci")
            and key != "schema_version"
        ):
            lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    encoders = (evaluation.get("config") or {}).get("encoders") or {}
    if encoders:
        lines += [""] + [f"Encoder of `{key}`: {name}" for key, name in encoders.items()]
    return lines + [""]
