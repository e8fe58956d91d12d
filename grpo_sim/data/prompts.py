"""Ordinary (prompt, reference) datasets: rows with a prompt and references, no paraphrase sets.

A row's prompt is a string (sent as one user message) or a list of chat messages; its references
(gold answers, reference explanations, critiques) are a string or a list of strings, stored in the
``answers`` column that reference terms read by default. ``columns`` maps these names to the
dataset's own (``{prompt: question, answers: answer}``); every other column is kept, so function
terms receive it as TRL passes dataset columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from .schema import DataError

STANDARD_COLUMNS = ("prompt", "answers")


def looks_like_paraphrase_sets(first_row: Mapping[str, Any]) -> bool:
    return "paraphrases" in first_row


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})", [(lineno, "<line>", exc.msg)]) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}",
                    [(lineno, "<line>", "not an object")],
                )
            rows.append(row)
    return rows


def _messages(prompt: Any, system_prompt: str | None, where: str) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt
        )
    ):
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    else:
        raise ValueError(
            f"{where}: prompt must be a string or a list of {{role, content}} messages, got {str(prompt)[:60]!r}"
        )
    return with_system_prompt(messages, system_prompt)


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """``messages`` with ``system_prompt`` as a first system message (unless they start with one): the one rule for
    training prompts and the prompts evaluated after training."""
    if system_prompt and messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def prompt_rows(
    rows: Iterable[Mapping[str, Any]],
    source: str,
    columns: Mapping[str, str] | None = None,
    system_prompt: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Training rows ``{prompt: [messages], answers: ..., <other columns>}``; DataError lists every bad row."""
    mapping = {name: (columns or {}).get(name, name) for name in STANDARD_COLUMNS}
    out, problems = [], []
    seen_columns: list[set[str]] = []
    for rowno, row in enumerate(rows, start=1):
        if limit is not None and len(out) >= limit:
            break
        row = dict(row)
        seen_columns.append(set(row))
        where = f"{source} row {rowno}"
        if mapping["prompt"] not in row:
            problems.append(
                (
                    rowno,
                    mapping["prompt"],
                    f"no prompt column {mapping['prompt']!r} (has {sorted(row)}); map it with data.columns.prompt",
                )
            )
            continue
        prompt = row.pop(mapping["prompt"])
        answers = row.pop(mapping["answers"], None)
        if answers is not None and not (
            isinstance(answers, str) or (isinstance(answers, list) and all(isinstance(a, str) for a in answers))
        ):
            problems.append((rowno, mapping["answers"], "references must be a string or a list of strings"))
            continue
        try:
            messages = _messages(prompt, system_prompt, where)
        except ValueError as exc:
            problems.append((rowno, mapping["prompt"], str(exc).removeprefix(f"{where}: ")))
            continue
        out.append({**row, "prompt": messages, "answers": answers})
    named = (columns or {}).get("answers")
    if named is not None and out and not any(named in row for row in seen_columns):
        present = ", ".join(sorted(set().union(*seen_columns)))
        raise DataError(
            f"{source}: data.columns.answers names {named!r}, which no row has (columns present: {present}); name "
            "the reference column as the data spells it",
            [(None, "data.columns.answers", f"no column {named!r}")],
        )
    if problems:
        lines = [f"row {r}, {field}: {message}" for r, field, message in problems[:20]]
        raise DataError(f"{source}: {len(problems)} bad row(s):\n  " + "\n  ".join(lines), problems)
    if not out:
        raise DataError(f"{source}: no rows", [(None, "<file>", "no rows")])
    return out
