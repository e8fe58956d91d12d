"""What a run loads: its data (paraphrase sets or ordinary prompt rows, trimmed as the recipe says, as trainer rows)
and its model (the recipe's dtype, float32 master weights, LoRA), with CPU-safe defaults."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..memory import kahan_optimizer
from ..recipe import Recipe, RecipeError
from ..sources import DATA_SOURCES, MODEL_SOURCES

logger = logging.getLogger(__name__)


def _hf_rows(spec: str, recipe: Recipe, split: str):
    """``hf:NAME[:SPLIT]``: a Hub dataset (``data.config`` its configuration) or a ``save_to_disk`` directory."""
    import datasets

    name, _, hf_split = spec[3:].partition(":")
    try:
        if Path(name).is_dir():
            rows = datasets.load_from_disk(name)
            if isinstance(rows, datasets.DatasetDict):
                rows = rows[hf_split or split]
            return rows
        return datasets.load_dataset(name, recipe.data.config, split=hf_split or split)
    except IndexError:  # datasets cannot load a saved split with no data files (an empty split saved with save_to_disk)
        empty = _empty_saved_splits(Path(name))
        if not empty:
            raise
        raise RecipeError(
            f"data.{split}: {spec}: {', '.join(empty)} holds no rows (saved with save_to_disk from an empty dataset: "
            "its state.json lists no data files), which datasets cannot load; save the split with rows, or drop it"
        ) from None
    except (OSError, ValueError, KeyError, datasets.exceptions.DatasetsError) as exc:
        # the hub or the network, a missing split (KeyError of a DatasetDict), a bad name: "cannot read data.<split>"
        raise RecipeError(f"data.{split}: cannot load {spec} ({type(exc).__name__}: {exc})") from None


def _empty_saved_splits(directory: Path) -> list[str]:
    """The save_to_disk datasets under ``directory`` (itself, or its splits) whose state.json lists no data files."""
    import json

    empty = []
    for state in (directory / "state.json", *sorted(directory.glob("*/state.json"))):
        try:
            if not json.loads(state.read_text(encoding="utf-8")).get("_data_files"):
                empty.append("the dataset" if state.parent == directory else f"split {state.parent.name!r}")
        except (OSError, ValueError):
            continue
    return empty


def _mixed_kinds(rows: list[dict[str, Any]], spec: str, split: str, prompt_column: str) -> None:
    """Refuse one file mixing paraphrase-set rows and ordinary prompt rows (data.format auto would read all of them
    as the first row's kind), naming rows of each kind. A row with neither 'paraphrases' nor the prompt column is
    left to the reader of the other rows' kind, which names what it lacks."""
    sets = [k for k, row in enumerate(rows, start=1) if "paraphrases" in row]
    prompts = [k for k, row in enumerate(rows, start=1) if "paraphrases" not in row and prompt_column in row]
    if sets and prompts:

        def shown(rownos: list[int]) -> str:
            return ", ".join(map(str, rownos[:5])) + (f" ... ({len(rownos)} rows)" if len(rownos) > 5 else "")

        raise RecipeError(
            f"data.{split}: {spec} mixes paraphrase-set rows (with 'paraphrases': row(s) {shown(sets)}) and ordinary "
            f"prompt rows (row(s) {shown(prompts)}); put each kind in its own file (data.format: paraphrase_sets or "
            "prompts says which one a file holds)"
        )


def load_data(spec: str, recipe: Recipe, split: str):
    """Paraphrase sets (a list of ParaphraseSet) or ordinary prompt rows (a list of dicts), as data.format says
    (auto: rows with 'paraphrases' are sets), from a JSONL path, a save_to_disk directory, 'hf:NAME[:SPLIT]' or
    the bundled demo."""
    from ..data.prompts import looks_like_paraphrase_sets, prompt_rows, read_jsonl_rows
    from ..data.schema import load_psets

    data = recipe.data
    if spec in DATA_SOURCES:  # a named source (data.train: demo)
        return DATA_SOURCES[spec].load(recipe, split)
    if spec.startswith("hf:"):
        source: Any = _hf_rows(spec, recipe, split)
        first = source[0] if len(source) else {}
    else:
        path = Path(spec)
        if not path.exists():
            from ..recipe.paths import data_path_places

            places = data_path_places(spec, recipe._source)
            where = "" if path.is_absolute() else f" (looked for {' and '.join(map(str, places))})"
            raise RecipeError(
                f"data.{split}: {spec} does not exist{where}; a relative data path is read next to the recipe "
                "file, else in the current directory"
            )
        source = path
        if data.format == "paraphrase_sets" or path.is_dir() or path.suffix in (".gz", ".bz2", ".xz", ".zst"):
            first = {"paraphrases": None}
        else:
            try:
                all_rows = read_jsonl_rows(path)
            except ValueError:  # a broken file: the paraphrase-set reader names every problem
                all_rows = [{"paraphrases": None}]
            if data.format == "auto":
                _mixed_kinds(all_rows, spec, split, data.columns.get("prompt", "prompt"))
            # a file with any paraphrase-set row is read as sets (its reader names what the other rows lack)
            first = next((r for r in all_rows if "paraphrases" in r), next(iter(all_rows), {"paraphrases": None}))
    sets = data.format == "paraphrase_sets" or (data.format == "auto" and looks_like_paraphrase_sets(first))
    if sets:
        return load_psets(source)
    if data.format == "prompts" and looks_like_paraphrase_sets(first) and first.get("paraphrases") is not None:
        # read as prompt rows, a set file would train on its set ids without paraphrase ids (a failure in TRL)
        raise RecipeError(
            f"data.{split}: {spec} holds paraphrase sets, but data.format is prompts: write ordinary rows from it "
            f"with grpo-sim data prompts {spec} --out ROWS.jsonl (or set data.format: auto to train on the sets)"
        )
    rows = source if not isinstance(source, Path) else read_jsonl_rows(source)
    limit = data.max_train_sets if split == "train" else data.max_eval_sets
    return prompt_rows(rows, spec, data.columns, data.system_prompt, limit)


def is_prompt_rows(items) -> bool:
    return bool(items) and isinstance(items[0], dict)


def load_sets(spec: str, recipe: Recipe, split: str):
    """Paraphrase sets (see :func:`load_data`); ordinary rows are an error here."""
    items = load_data(spec, recipe, split)
    if is_prompt_rows(items):
        raise RecipeError(
            f"data.{split}: {spec} holds ordinary prompts, not paraphrase sets (this needs sets: "
            "grpo-sim data import / paraphrase write them)"
        )
    return items


def trim_sets(sets, paraphrases_per_set: int | None, max_sets: int | None):
    from ..data.ops import keep_first_paraphrases, sets_shorter_than

    if is_prompt_rows(sets):
        return sets  # ordinary rows: load_data applied the limit
    if paraphrases_per_set is not None:
        short = [s.set_id for s in sets_shorter_than(sets, paraphrases_per_set)]
        if short:
            raise RecipeError(
                f"data.paraphrases_per_set={paraphrases_per_set}, but {len(short)} set(s) have fewer "
                f"paraphrases (e.g. {short[:3]}); lower it or drop them: grpo-sim data filter FILE "
                f"--out FILTERED --paraphrases-per-set {paraphrases_per_set}"
            )
        sets = keep_first_paraphrases(sets, paraphrases_per_set)
    return sets[:max_sets] if max_sets else sets


def training_rows(sets, recipe: Recipe):
    """The trainer's dataset: one row per paraphrase of every set, or the ordinary rows as they are."""
    from datasets import Dataset

    from ..data.schema import to_training_rows

    if is_prompt_rows(sets):
        return Dataset.from_list(sets)
    from ..data.prompts import with_system_prompt

    rows = to_training_rows(sets, recipe.data.prompt)
    for row in rows:
        row["prompt"] = with_system_prompt(row["prompt"], recipe.data.system_prompt)
    return Dataset.from_list(rows)


def resolve_model_path(recipe: Recipe, cache_dir: Path | None = None) -> str:
    source = MODEL_SOURCES.get(recipe.model.name_or_path)  # a named source (grpo-sim:demo-warmstart)
    return source.resolve(recipe, cache_dir) if source else recipe.model.name_or_path


def load_recipe_policy(recipe: Recipe, cache_dir: Path | None = None):
    """(model, tokenizer) as the recipe asks: model.dtype (``auto``: the checkpoint's dtype), attention."""
    from ..models.loading import load_policy

    path = resolve_model_path(recipe, cache_dir)
    kwargs = recipe.model.init_kwargs()  # the same arguments TRL gets for the reference model
    dtype = kwargs.pop("dtype", None)
    try:
        return load_policy(path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:  # no weights, no tokenizer, an unknown architecture: the directory given
        raise RecipeError(f"{recipe._source}: model.name_or_path {path!r} could not be loaded: {exc}") from None


def optimizer_sees_loaded_weights(recipe: Recipe, config) -> bool:
    """Whether AdamW would update the parameters in the dtype they were loaded in (plain DDP or one device).

    Not with LoRA (peft keeps adapters in float32, ``autocast_adapter_dtype``; under ZeRO-3 TRL keeps them
    bf16 and DeepSpeed holds the masters), not under DeepSpeed (fp32 master weights in its optimizer) and
    not under FSDP with mixed precision (accelerate upcasts the sharded parameters to float32).
    """
    if recipe.model.lora is not None or getattr(config, "deepspeed_plugin", None) is not None:
        return False
    return not fsdp_mixed_precision(config)


def fsdp_mixed_precision(config) -> bool:
    """FSDP with mixed precision: accelerate upcasts the sharded parameters to float32 (and saves them so)."""
    fsdp = bool(getattr(config, "fsdp_plugin_args", None)) or os.environ.get(
        "ACCELERATE_USE_FSDP", "false"
    ).lower() in ("1", "true", "yes")
    return fsdp and getattr(config, "mixed_precision", "no") != "no"


def load_model(recipe: Recipe, cache_dir: Path | None = None, config=None):
    """``(model, tokenizer, final_dtype)``.

    A bf16/fp16 model whose weights AdamW would update directly (see :func:`optimizer_sees_loaded_weights`)
    is upcast to float32 master weights: at lr 1e-6 almost every bf16 update rounds away (10 steps changed
    2% of the weights). Not with a Kahan-summation optimizer (``training.optim: stable_adamw``,
    :func:`grpo_sim.memory.kahan_optimizer`): it keeps the bf16 weights training at 12 B/param under DDP instead of
    the masters' 20 (``grpo-sim plan`` shows which fits). ``training.bf16`` (mixed precision) still runs the
    compute in bf16. ``final_dtype`` is then the loaded dtype, which final/ is saved in (checkpoints keep the
    float32 masters, so resuming is exact). Under FSDP with mixed precision (accelerate upcasts the shards itself)
    ``final_dtype`` is the loaded dtype too, so that final/ is not saved in float32. Otherwise None (saved as
    trained).
    """
    import torch

    model, tokenizer = load_recipe_policy(recipe, cache_dir)
    low_precision = {p.dtype for p in model.parameters() if p.dtype in (torch.bfloat16, torch.float16)}
    if low_precision and config is not None and recipe.model.lora is None and fsdp_mixed_precision(config):
        return model, tokenizer, model.dtype  # accelerate upcasts the shards; final/ goes back to the loaded dtype
    if not low_precision or config is None or not optimizer_sees_loaded_weights(recipe, config):
        return model, tokenizer, None
    if kahan_optimizer(recipe.training):
        logger.info("model loaded in %s: trained in place with Kahan summation (%s)", model.dtype, config.optim)
        return model, tokenizer, None
    final_dtype = model.dtype
    model.float()
    logger.info(
        "model loaded in %s: training float32 master weights (compute precision: %s); final/ is saved in %s",
        final_dtype,
        getattr(config, "mixed_precision", "no"),
        final_dtype,
    )
    return model, tokenizer, final_dtype


def vllm_model_length(tokenizer, prompts, max_completion_length: int, chat_template_kwargs=None) -> int:
    """vLLM's ``max_model_len`` for this run: the longest prompt in tokens, formatted as TRL formats it (the chat
    template with the generation prompt), plus ``max_completion_length``. Unset, TRL passes None and vLLM sizes its
    KV cache for the model's whole context (131,072 tokens for Llama-3.1-8B), which a colocated engine cannot hold.
    Only the 64 longest prompts by characters are tokenized."""
    longest = sorted(
        prompts, key=lambda p: -sum(len(str(m.get("content", ""))) for m in p) if isinstance(p, list) else -len(str(p))
    )[:64]
    lengths = []
    for prompt in longest:
        if isinstance(prompt, list):
            text = tokenizer.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
            )
        else:
            text = prompt
        lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return max(lengths, default=0) + int(max_completion_length)


def lora_config(recipe: Recipe):
    if recipe.model.lora is None:
        return None
    from peft import LoraConfig

    lora = recipe.model.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def cpu_defaults(recipe: Recipe) -> Recipe:
    """GRPOConfig defaults to bf16, which fails without a GPU: default to CPU-safe settings there."""
    import torch

    if torch.cuda.is_available():
        return recipe
    training = dict(recipe.training)
    training.setdefault("use_cpu", True)
    training.setdefault("bf16", False)
    return recipe.model_copy(update={"training": training})
