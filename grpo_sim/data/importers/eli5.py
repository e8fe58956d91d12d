"""ELI5 (and its KILT version) into paraphrase sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..schema import ParaphraseSet
from .common import (
    _convert_rows,
    _get,
    _make_set,
    _norm_key,
    _question,
    _read_rows,
    _row_id,
    _RowError,
    _short,
    _tell,
    missing_passages_message,
)

_ELI5_DROP = {"[deleted]", "[removed]"}


def _eli5_converter(
    split: str | None, max_answers: int, min_score: int | None
) -> Callable[[dict[str, Any]], ParaphraseSet]:
    def convert(row: dict[str, Any]) -> ParaphraseSet:
        meta: dict[str, Any] = {"source": "eli5"}
        if split:
            meta["split"] = split
        if "input" in row and "output" in row:  # KILT layout
            qid = _row_id(row, "id")
            question = _question(row, "input")
            outputs = _get(row, "output", kind=list)
            texts, scores, provenance = [], [], []
            for i, o in enumerate(outputs):
                if not isinstance(o, dict):
                    raise _RowError(f"output[{i}]", f"expected an object, got {_short(o)}")
                if isinstance(o.get("answer"), str):
                    texts.append(o["answer"])
                    s = (o.get("meta") or {}).get("score") if isinstance(o.get("meta"), dict) else None
                    scores.append(s if isinstance(s, (int, float)) else None)
                for pr in o.get("provenance") or []:
                    if isinstance(pr, dict):
                        provenance.append(
                            {
                                k: pr[k]
                                for k in ("wikipedia_id", "title", "start_paragraph_id", "end_paragraph_id")
                                if k in pr
                            }
                        )
            ids: list[Any] = [None] * len(texts)
            if provenance:
                meta["provenance"] = provenance
        else:
            qid = _row_id(row, "q_id", "id")
            question = _question(row, "title")
            ans = _get(row, "answers", kind=dict)
            texts = ans.get("text")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise _RowError("answers.text", f"expected a list of strings, got {_short(texts)}")
            scores = ans.get("score", [None] * len(texts))
            if not isinstance(scores, list) or len(scores) != len(texts):
                raise _RowError("answers.score", f"expected a list of {len(texts)} numbers (one per answer text)")
            for i, s in enumerate(scores):
                if s is not None and not isinstance(s, (int, float)):
                    raise _RowError(f"answers.score[{i}]", f"expected a number, got {_short(s)}")
            ids = ans.get("a_id", [None] * len(texts))
            if not isinstance(ids, list) or len(ids) != len(texts):
                ids = [None] * len(texts)
            for k in ("category", "subreddit"):
                if row.get(k):
                    meta[k] = row[k]
            if isinstance(row.get("selftext"), str) and row["selftext"].strip():
                meta["selftext"] = row["selftext"]
        # rank: score descending, ties keep the file order
        order = sorted(range(len(texts)), key=lambda i: (-(scores[i] if scores[i] is not None else float("-inf")), i))
        kept_texts, kept_scores, kept_ids = [], [], []
        for i in order:
            t = texts[i].strip()
            if not t or t in _ELI5_DROP:
                continue
            if min_score is not None and scores[i] is not None and scores[i] < min_score:
                continue
            if _norm_key(t) in {_norm_key(x) for x in kept_texts}:
                continue
            kept_texts.append(t)
            kept_scores.append(scores[i])
            kept_ids.append(ids[i])
            if len(kept_texts) >= max_answers:
                break
        meta["source_id"] = qid
        meta["answer_scores"] = kept_scores
        if any(x is not None for x in kept_ids):
            meta["answer_ids"] = kept_ids
        meta["num_answers_total"] = len(texts)
        meta["passages"] = []
        return _make_set(qid, question, kept_texts, meta)

    return convert


def import_eli5(
    path: str | os.PathLike[str],
    limit: int | None = None,
    split: str | None = None,
    max_answers: int = 3,
    min_score: int | None = None,
    notes: list[str] | None = None,
) -> list[ParaphraseSet]:
    """ELI5: the ELI5-Category / HF ``eli5`` layout (``q_id, title, selftext, answers{a_id, text,
    score}``, JSON list or JSONL) or KILT's ``eli5-*-kilt.jsonl`` (``id, input, output[{answer}]``).

    Question: ``title`` (KILT: ``input``); ``selftext`` kept in metadata. Answers (long-form
    gold): the ``max_answers`` highest-scored answer texts, best first (score ties keep file
    order; ``[deleted]``/``[removed]``/empty skipped; ``min_score`` drops low-voted ones).
    ELI5 comes without passages: retrieve from your own corpus (``notes`` says so).
    """
    if max_answers < 1:
        raise ValueError(f"max_answers must be >= 1, got {max_answers}")
    path = Path(path)
    rows, _, unit = _read_rows(path)
    sets = _convert_rows(rows, _eli5_converter(split, max_answers, min_score), str(path), unit, limit)
    if sets:
        _tell(notes, missing_passages_message(sets) or "")
    return sets
