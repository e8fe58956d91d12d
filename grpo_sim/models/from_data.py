"""A tiny policy for one's own data, without any hub: ``grpo-sim model init``.

The tokenizer is word-level (one token per word, case kept; see :mod:`grpo_sim.models.tiny`) and built on
the text the trainer will show the model: every wording of every set formatted with the recipe's prompt
template (question + its passages), the gold answers and, optionally, a passage corpus. A word-level
vocabulary is what lets a tiny model learn to copy an answer from its context on a CPU; byte-level BPE
split names into pieces and learnt nothing in the same budget (docs/own-data.md). Words that are not in
the given files are unknown to it, so give every file the model will see (train, eval, corpus).

Sizes follow the number of training tokens (:func:`size_for_tokens`); positions cover the longest
formatted prompt plus the completion budget (:func:`positions_for`).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

#: (fewer than this many training tokens, hidden size, layers, attention heads); the last row has no bound
SIZE_RULE: tuple[tuple[float, int, int, int], ...] = (
    (100_000, 64, 2, 4),
    (1_000_000, 128, 4, 4),
    (math.inf, 256, 6, 8),
)
#: position budgets are rounded up to a multiple of this
POSITION_MULTIPLE = 64
INIT_INFO = "model_init.json"


@dataclass
class ModelInitPlan:
    """What ``model init`` measured on the data and the model it builds from it."""

    data_files: list[str]
    corpus_files: list[str]
    prompt: str
    sets: int
    prompts: int
    answers: int
    corpus_passages: int
    training_tokens: int  # words of the formatted prompts and answers of the data files
    longest_prompt_tokens: int  # chat-formatted, with the generation prompt
    longest_answer_tokens: int
    max_completion_length: int
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int
    parameters: int = 0
    seed: int = 0


def size_for_tokens(tokens: int) -> tuple[int, int, int]:
    """(hidden size, layers, heads) for ``tokens`` training tokens: the first :data:`SIZE_RULE` row it is below.

    CPU-sized on purpose (0.13M / 1.05M / 6.3M parameters besides the embeddings): a model that trains in
    minutes on 2 cores, not one that fits the data best.
    """
    for bound, hidden, layers, heads in SIZE_RULE:
        if tokens < bound:
            return hidden, layers, heads
    raise AssertionError("SIZE_RULE ends with an unbounded row")


def positions_for(longest_prompt: int, longest_answer: int, max_completion_length: int) -> int:
    """Positions for the longest prompt and the longer of the completion budget and the longest answer (+ eos),
    rounded up to a multiple of :data:`POSITION_MULTIPLE`."""
    needed = longest_prompt + max(max_completion_length, longest_answer + 1)
    return -(-needed // POSITION_MULTIPLE) * POSITION_MULTIPLE


def data_texts(sets, prompt: str) -> tuple[list[str], list[str]]:
    """(formatted prompts of every wording, gold answers), as the trainer and SFT format them."""
    from ..data.schema import to_training_rows

    rows = to_training_rows(sets, prompt)
    return [row["prompt"][-1]["content"] for row in rows], [a for s in sets for a in s.answers]


def ordinary_rows(path: str | Path) -> list[dict] | None:
    """The rows of a JSONL file of ordinary (prompt, reference) rows; None for a paraphrase-set file."""
    from ..data.prompts import looks_like_paraphrase_sets, read_jsonl_rows

    path = Path(path)
    if not path.is_file() or path.suffix in (".gz", ".bz2", ".xz", ".zst"):
        return None
    try:
        rows = read_jsonl_rows(path)
    except ValueError:  # broken: the paraphrase-set reader names every problem
        return None
    return rows if rows and not looks_like_paraphrase_sets(rows[0]) else None


def row_texts(rows: Sequence[dict], source: str) -> tuple[list[str], list[str]]:
    """(prompts, references) of ordinary rows: the ``prompt`` column when there is one, else ``question`` (a string,
    or chat messages whose contents are joined), and every reference in ``answers``."""
    from ..data.prompts import prompt_rows

    column = "prompt" if "prompt" in rows[0] else "question"
    parsed = prompt_rows(rows, source, {"prompt": column})
    prompts = ["\n".join(m["content"] for m in row["prompt"]) for row in parsed]
    answers = [
        a for row in parsed for a in ([row["answers"]] if isinstance(row["answers"], str) else row["answers"] or [])
    ]
    return prompts, answers


def plan_model(
    data_files: Sequence[str | Path],
    corpus_files: Sequence[str | Path] = (),
    prompt: str = "rag_short_answer",
    max_completion_length: int = 32,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    seed: int = 0,
):
    """Read the files, build the tokenizer and decide the sizes; returns ``(plan, tokenizer)``."""
    from ..data.schema import check_prompt_template, load_psets, read_corpus
    from .tiny import build_word_tokenizer

    check_prompt_template(prompt)
    if not data_files:
        raise ValueError("give at least one paraphrase-set (or ordinary rows) file with --data")
    sets, prompts, answers = [], [], []
    for f in data_files:
        rows = ordinary_rows(f)
        if rows is None:
            file_sets = load_psets(f)
            sets += file_sets
            file_prompts, file_answers = data_texts(file_sets, prompt)
        else:
            sets += rows
            file_prompts, file_answers = row_texts(rows, str(f))
        prompts += file_prompts
        answers += file_answers
    passages = [p for f in corpus_files for p in read_corpus(f)]
    corpus_texts = [f"{p.title}: {p.text}" if p.title else p.text for p in passages]
    tokenizer = build_word_tokenizer([*prompts, *answers, *corpus_texts])

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chat = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    training_tokens = sum(length(t) for t in prompts) + sum(length(a) for a in answers)
    rule_hidden, rule_layers, rule_heads = size_for_tokens(training_tokens)
    hidden = hidden_size or rule_hidden
    heads = num_heads or (rule_heads if hidden % rule_heads == 0 else 1)
    if hidden % heads:
        raise ValueError(f"--hidden-size {hidden} is not divisible by --heads {heads}")
    longest_prompt = max(length(t) for t in chat)
    longest_answer = max((length(a) for a in answers), default=0)
    plan = ModelInitPlan(
        data_files=[str(f) for f in data_files],
        corpus_files=[str(f) for f in corpus_files],
        prompt=prompt,
        sets=len(sets),
        prompts=len(prompts),
        answers=len(answers),
        corpus_passages=len(passages),
        training_tokens=training_tokens,
        longest_prompt_tokens=longest_prompt,
        longest_answer_tokens=longest_answer,
        max_completion_length=max_completion_length,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_layers=num_layers or rule_layers,
        num_heads=heads,
        max_position_embeddings=positions_for(longest_prompt, longest_answer, max_completion_length),
        seed=seed,
    )
    return plan, tokenizer


def init_model(out: str | Path, plan: ModelInitPlan, tokenizer, overwrite: bool = False) -> Path:
    """Build the planned model and save it with its tokenizer and ``model_init.json`` into ``out``.

    Written into a sibling temporary directory that replaces ``out`` only when complete.
    """
    from .tiny import build_tiny_qwen2, count_parameters, save_tiny_policy

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose another --out or pass --overwrite")
    model = build_tiny_qwen2(
        tokenizer,
        hidden_size=plan.hidden_size,
        num_layers=plan.num_layers,
        num_heads=plan.num_heads,
        seed=plan.seed,
        max_position_embeddings=plan.max_position_embeddings,
    )
    plan.parameters = count_parameters(model)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tiny_policy(model, tokenizer, tmp)
    (tmp / INIT_INFO).write_text(json.dumps(asdict(plan), indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    return out


def describe(plan: ModelInitPlan) -> list[str]:
    rule = next(
        f"{h} hidden, {layer} layers, {hd} heads" for bound, h, layer, hd in SIZE_RULE if plan.training_tokens < bound
    )
    return [
        f"data: {plan.sets} sets, {plan.prompts} prompts (template {plan.prompt}), {plan.answers} answers"
        + (f", {plan.corpus_passages} corpus passages" if plan.corpus_passages else ""),
        f"tokenizer: word-level, {plan.vocab_size} tokens",
        f"training tokens: {plan.training_tokens} -> size rule: {rule}",
        f"model: Qwen2, hidden {plan.hidden_size}, {plan.num_layers} layers, {plan.num_heads} heads, "
        f"{plan.parameters:,} parameters",
        f"positions: {plan.max_position_embeddings} (longest prompt {plan.longest_prompt_tokens} tokens + "
        f"max(completion budget {plan.max_completion_length}, longest answer {plan.longest_answer_tokens} + 1), "
        f"rounded up to a multiple of {POSITION_MULTIPLE})",
    ]


__all__ = ["ModelInitPlan", "SIZE_RULE", "describe", "init_model", "plan_model", "positions_for", "size_for_tokens"]
