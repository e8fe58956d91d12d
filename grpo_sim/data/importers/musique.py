"""MuSiQue into paraphrase sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..schema import ParaphraseSet
from .common import (
    _convert_rows,
    _get,
    _make_set,
    _passage_id,
    _question,
    _read_rows,
    _row_id,
    _RowError,
    _short,
    _tell,
    dedupe_answers,
    missing_passages_message,
)


def _musique_converter(split: str | None, answerable_only: bool) -> Callable[[dict[str, Any]], ParaphraseSet | None]:
    def convert(row: dict[str, Any]) -> ParaphraseSet | None:
        qid = _row_id(row, "id")
        question = _question(row, "question")
        answerable = row.get("answerable", True)
        if answerable_only and answerable is False:
            return None
        answer = _get(row, "answer", required=False, kind=str)
        aliases = _get(row, "answer_aliases", required=False, kind=list, default=[])
        paragraphs = _get(row, "paragraphs", required=False, kind=list, default=[])
        passages, supporting = [], []
        for i, p in enumerate(paragraphs):
            if not isinstance(p, dict):
                raise _RowError(f"paragraphs[{i}]", f"expected an object with title/paragraph_text, got {_short(p)}")
            text = p.get("paragraph_text")
            if not isinstance(text, str):
                raise _RowError(f"paragraphs[{i}].paragraph_text", "field is missing or not a string")
            title = p.get("title") or ""
            if not isinstance(title, str):
                raise _RowError(f"paragraphs[{i}].title", f"expected a string, got {_short(title)}")
            if not text.strip():
                continue
            pid = _passage_id("musique", title, text.strip())
            passages.append({"id": pid, "title": title, "text": text.strip()})
            if p.get("is_supporting"):
                supporting.append(pid)
        meta: dict[str, Any] = {"source": "musique", "source_id": qid, "answerable": bool(answerable)}
        if split:
            meta["split"] = split
        hops = qid.split("__", 1)[0]
        if hops and hops != qid:
            meta["hops"] = hops
        if row.get("question_decomposition") is not None:
            meta["question_decomposition"] = row["question_decomposition"]
        meta["passages"] = passages
        meta["supporting_passage_ids"] = supporting
        return _make_set(qid, question, dedupe_answers([answer, *aliases]), meta)

    return convert


def import_musique(
    path: str | os.PathLike[str],
    limit: int | None = None,
    split: str | None = None,
    answerable_only: bool = False,
    notes: list[str] | None = None,
) -> list[ParaphraseSet]:
    """MuSiQue (``musique_{ans,full}_v1.0_{train,dev,test}.jsonl``).

    Question: ``question``; answers: ``[answer] + answer_aliases``; ``metadata["passages"]``:
    the 20 paragraphs (``supporting_passage_ids``: those with ``is_supporting``);
    ``question_decomposition``, ``answerable`` and the hop type (``2hop``, ``3hop1``, ...) kept.
    ``answerable_only`` drops MuSiQue-Full's unanswerable rows.
    """
    path = Path(path)
    rows, _, unit = _read_rows(path)
    sets = _convert_rows(rows, _musique_converter(split, answerable_only), str(path), unit, limit)
    if sets and missing_passages_message(sets):
        _tell(notes, missing_passages_message(sets) or "")
    return sets
