"""Evaluate a model on ordinary (prompt, reference) rows: greedy answers scored against the references.

Data without paraphrase sets has no consistency to measure; what it has is references (gold answers,
reference explanations). Each row's prompt (chat messages, the recipe's system prompt already first, as
training saw it) is rendered with the tokenizer's chat template and the recipe's chat template arguments,
answered greedily, and scored with each given similarity against the row's references (the best over
several). Every score is a mean over the rows that have references, with a bootstrap interval over rows.

Output directory (atomic writes): ``predictions.jsonl`` (one row per prompt: ``index, prompt, answer,
references`` and the row's score per key), ``summary.json`` (``{"schema_version": 1, "kind": "rows", "num_rows",
<key>, <key>_ci, "empty_answer_rate", "repetitive_answer_rate", "modal_answer", "modal_answer_share", "warnings",
"config"}``; the degeneration figures and warnings of :mod:`grpo_sim.eval.degeneration`) and ``report.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io import atomic_write_text
from .bootstrap import bootstrap_ci
from .degeneration import (
    EMPTY_ANSWER_WARN_RATE,
    MODAL_ANSWER_WARN_SHARE,
    REPEAT_MIN_COPIES,
    REPETITIVE_ANSWER_WARN_RATE,
    degeneration_figures,
    degeneration_warnings,
)
from .generate import _generate_hf, load_eval_model, render_prompt
from .metrics import encoders
from .report import encoder_lines
from .results import PREDICTIONS_FILE, REPORT_FILE, SUMMARY_FILE, write_json, write_jsonl

__all__ = ["evaluate_rows", "row_prompts", "score_rows"]


def row_prompts(
    rows: Sequence[Mapping[str, Any]], tokenizer: Any, chat_template_kwargs: Mapping[str, Any] | None = None
) -> list[str]:
    """The rendered prompt of each row, as TRL renders a conversational training prompt."""
    return [render_prompt(tokenizer, list(row["prompt"]), chat_template_kwargs) for row in rows]


def score_rows(
    answers: Sequence[str], rows: Sequence[Mapping[str, Any]], similarities: Mapping[str, tuple[str, str]]
) -> dict[str, np.ndarray]:
    """``{key: per-row score}`` for ``similarities`` ``{key: (similarity spec, reference column)}``: the best
    similarity of the answer to the row's reference(s) in that column; NaN for a row without references."""
    from ..rewards import reference_rewards

    return {
        key: reference_rewards(list(answers), [row.get(column) for row in rows], similarity=spec)
        for key, (spec, column) in similarities.items()
    }


def _references(row: Mapping[str, Any], similarities: Mapping[str, tuple[str, str]]) -> list[str]:
    """Every reference of a row in the scored columns (a string or a list of strings each)."""
    out: list[str] = []
    for column in dict.fromkeys(column for _, column in similarities.values()):
        value = row.get(column)
        out += [value] if isinstance(value, str) else list(value or [])
    return out


def evaluate_rows(
    model_or_path: Any,
    rows: Sequence[Mapping[str, Any]],
    similarities: Mapping[str, tuple[str, str]],
    output_dir: str | os.PathLike[str] | None = None,
    *,
    tokenizer: Any = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Greedy answers of a model (a path, or a loaded model with ``tokenizer``) to ordinary rows
    (``{prompt: [messages], answers, ...}`` as :func:`grpo_sim.data.prompts.prompt_rows` gives them), scored with
    ``similarities``; returns the summary (and writes the files when ``output_dir`` is given)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        model, loaded_tokenizer, name = load_eval_model(model_or_path)
        tokenizer = tokenizer or loaded_tokenizer
    else:
        model, name = model_or_path, type(model_or_path).__name__
        if tokenizer is None:
            raise ValueError("evaluate_rows: a model object needs its tokenizer (tokenizer=...)")
    prompts = row_prompts(rows, tokenizer, chat_template_kwargs)
    answers = _generate_hf(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        batch_size,
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        seed=seed,
        progress=progress,
        label="held-out rows",
    )
    scores = score_rows(answers, rows, similarities)
    summary: dict[str, Any] = {"schema_version": 1, "kind": "rows", "name": str(name), "num_rows": len(rows)}
    for key, values in scores.items():
        finite = values[np.isfinite(values)]
        summary[key] = float(finite.mean()) if finite.size else None
        summary[f"{key}_ci"] = bootstrap_ci(values, n_boot=n_boot, seed=seed) if finite.size and n_boot else None
        summary[f"{key}_rows"] = int(finite.size)
    references = [_references(row, similarities) for row in rows]
    figures = degeneration_figures(answers, references=references)
    summary.update(figures)
    summary["warnings"] = degeneration_warnings(figures)
    summary["config"] = {
        "similarities": {key: spec for key, (spec, _) in similarities.items()},
        "columns": {key: column for key, (_, column) in similarities.items()},
        "max_new_tokens": max_new_tokens,
        "chat_template_kwargs": dict(chat_template_kwargs or {}),
        "decoding": "greedy",
        "n_boot": n_boot,
        "seed": seed,
        "encoders": encoders({key: spec for key, (spec, _) in similarities.items()}),
    }
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        predictions = [
            {
                "index": k,
                "prompt": prompt,
                "answer": answer,
                "references": {column: row.get(column) for _, column in similarities.values()},
                **{key: (None if not np.isfinite(values[k]) else float(values[k])) for key, values in scores.items()},
            }
            for k, (row, prompt, answer) in enumerate(zip(rows, prompts, answers))
        ]
        write_jsonl(out / PREDICTIONS_FILE, predictions)
        summary["files"] = {"predictions": PREDICTIONS_FILE, "summary": SUMMARY_FILE, "report": REPORT_FILE}
        atomic_write_text(out / REPORT_FILE, render_rows_report(summary))
        write_json(out / SUMMARY_FILE, summary)
    return summary


def render_rows_report(summary: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation on held-out rows: {summary.get('name')}", ""]
    lines += [f"**Warning:** {warning}" for warning in summary.get("warnings", [])]
    lines += [
        "",
        f"{summary['num_rows']} rows, greedy answers scored against their references (mean over the rows "
        "that have references, 95% bootstrap interval over rows).",
        *encoder_lines(summary["config"].get("encoders")),
        "",
        "| metric | similarity | value | 95% interval | rows |",
        "|---|---|---|---|---|",
    ]
    for key, spec in summary["config"]["similarities"].items():
        value, ci = summary.get(key), summary.get(f"{key}_ci")
        shown = "n/a" if value is None else f"{value:.4f}"
        interval = "" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
        lines.append(f"| {key} | `{spec}` | {shown} | {interval} | {summary.get(f'{key}_rows', 0)} |")
    lines.append(f"| empty answers (share) | | {summary['empty_answer_rate']:.4f} | | {summary['num_rows']} |")
    if "repetitive_answer_rate" in summary:
        lines.append(
            f"| repetitive answers (share) | | {summary['repetitive_answer_rate']:.4f} | | {summary['num_rows']} |"
        )
    if summary.get("modal_answer") is not None:
        lines.append(
            f"| one answer for different rows (share): {summary['modal_answer']!r} | | "
            f"{summary['modal_answer_share']:.4f} | | {summary['modal_answer_inputs']} |"
        )
    lines += [
        "",
        f"Warnings at {100 * EMPTY_ANSWER_WARN_RATE:.0f}% empty answers, {100 * REPETITIVE_ANSWER_WARN_RATE:.0f}% "
        f"answers repeating a word or phrase {REPEAT_MIN_COPIES}+ times in a row, {100 * MODAL_ANSWER_WARN_SHARE:.0f}% "
        "one answer for different rows (grpo_sim.eval.degeneration).",
    ]
    return "\n".join(lines) + "\n"
