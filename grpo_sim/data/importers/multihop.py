"""HotpotQA and 2WikiMultiHopQA into paraphrase sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..schema import ParaphraseSet
from .common import (
    Problem,
    _BadLine,
    _convert_rows,
    _get,
    _make_set,
    _multihop_passages,
    _question,
    _raise_problems,
    _read_rows,
    _row_id,
    _supporting_facts,
    _tell,
    dedupe_answers,
    missing_passages_message,
)


def _multihop_converter(
    source: str, split: str | None, keep: Sequence[str], aliases: Mapping[str, list[str]] | None = None
) -> Callable[[dict[str, Any]], ParaphraseSet]:
    """HotpotQA-style rows (``_id``, ``question``, ``answer``, ``context``, ``supporting_facts``):
    context paragraphs as passages, the non-empty ``keep`` fields in the metadata, and the
    ``aliases`` of the row's ``answer_id`` as extra gold answers (2WikiMultiHopQA)."""

    def convert(row: dict[str, Any]) -> ParaphraseSet:
        qid = _row_id(row, "_id", "id")
        question = _question(row, "question")
        answer = _get(row, "answer", required=False, kind=str)
        answer_id = row.get("answer_id")
        extra = aliases.get(answer_id, []) if aliases is not None and isinstance(answer_id, str) else []
        passages, supporting = _multihop_passages(source, row)
        meta: dict[str, Any] = {"source": source, "source_id": qid}
        if split:
            meta["split"] = split
        for k in keep:
            if row.get(k) not in (None, "", []):
                meta[k] = row[k]
        sf = _supporting_facts(row)
        if sf:
            meta["supporting_facts"] = [[t, i] for t, i in sf]
        meta["passages"] = passages
        meta["supporting_passage_ids"] = supporting
        return _make_set(qid, question, dedupe_answers([answer, *extra]), meta)

    return convert


def _hotpot_converter(split: str | None) -> Callable[[dict[str, Any]], ParaphraseSet]:
    return _multihop_converter("hotpotqa", split, ("type", "level"))


def import_hotpotqa(
    path: str | os.PathLike[str], limit: int | None = None, split: str | None = None, notes: list[str] | None = None
) -> list[ParaphraseSet]:
    """HotpotQA (``hotpot_{train_v1.1,dev_distractor_v1,dev_fullwiki_v1,test_fullwiki_v1}.json``).

    Question: ``question``; answers: ``[answer]`` (``yes``/``no`` for many comparison questions;
    none for test rows); ``metadata["passages"]``: the context paragraphs (sentences joined),
    ``supporting_passage_ids`` those named in ``supporting_facts``; ``type``/``level`` kept.
    """
    path = Path(path)
    rows, _, unit = _read_rows(path)
    sets = _convert_rows(rows, _hotpot_converter(split), str(path), unit, limit)
    if sets and missing_passages_message(sets):  # fullwiki test rows come without context
        _tell(notes, missing_passages_message(sets) or "")
    return sets


def _load_2wiki_aliases(path: Path) -> dict[str, list[str]]:
    """``id_aliases.json`` of 2WikiMultiHopQA: JSONL ``{"Q_id", "aliases", "demonyms"}``."""
    out: dict[str, list[str]] = {}
    rows, _, unit = _read_rows(path)
    problems: list[Problem] = []
    for n, row in rows:
        if isinstance(row, _BadLine):
            problems.append((n, "<json>", row.message))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("Q_id"), str):
            problems.append((n, "Q_id", "expected an object with a string 'Q_id'"))
            continue
        names = [a for a in (row.get("aliases") or []) + (row.get("demonyms") or []) if isinstance(a, str)]
        out[row["Q_id"]] = names
    _raise_problems(str(path), problems, unit)
    return out


def _2wiki_converter(split: str | None, aliases: dict[str, list[str]]) -> Callable[[dict[str, Any]], ParaphraseSet]:
    return _multihop_converter("2wikimultihopqa", split, ("type", "entity_ids", "evidences", "answer_id"), aliases)


def import_2wikimultihopqa(
    path: str | os.PathLike[str],
    limit: int | None = None,
    split: str | None = None,
    aliases_path: str | os.PathLike[str] | None = None,
    notes: list[str] | None = None,
) -> list[ParaphraseSet]:
    """2WikiMultiHopQA (``train.json``/``dev.json``/``test.json``: a JSON list).

    Question: ``question``; answers: ``[answer]`` plus, when an ``id_aliases.json`` is given as
    ``aliases_path`` or lies next to ``path``, the aliases (and demonyms) of ``answer_id``;
    ``metadata["passages"]``: the context paragraphs; ``type``, ``evidences``, ``entity_ids``,
    ``answer_id`` and ``supporting_facts`` kept. Questions whose aliases could not be added (no
    alias file, or an ``answer_id`` missing from it) are counted and reported through ``notes``.
    """
    path = Path(path)
    if aliases_path is None and (path.parent / "id_aliases.json").exists():
        aliases_path = path.parent / "id_aliases.json"
    aliases = _load_2wiki_aliases(Path(aliases_path)) if aliases_path is not None else None
    rows, _, unit = _read_rows(path)
    sets = _convert_rows(rows, _2wiki_converter(split, aliases or {}), str(path), unit, limit)
    _2wiki_alias_notes(sets, aliases, aliases_path, path.parent, notes)
    return sets


def _2wiki_alias_notes(
    sets: Sequence[ParaphraseSet],
    aliases: Mapping[str, list[str]] | None,
    aliases_path: Any,
    folder: Path | None,
    notes: list[str] | None,
) -> None:
    """Count the questions whose answer aliases were not added, and say how to add them."""
    with_id = [s for s in sets if isinstance(s.metadata.get("answer_id"), str)]
    if not with_id:
        return
    if aliases is None:
        where = f" or found next to the data file ({folder / 'id_aliases.json'})" if folder is not None else ""
        _tell(
            notes,
            f"2WikiMultiHopQA: the answer aliases of {len(with_id)} of {len(sets)} questions were skipped: "
            f"no id_aliases.json given{where}, so each question keeps only its one written answer and "
            "EM/F1 reject the other names of the same entity; pass --aliases PATH/id_aliases.json "
            "(aliases_path=..., from the 2WikiMultiHopQA release)",
        )
        return
    unknown = [s for s in with_id if s.metadata["answer_id"] not in aliases]
    if unknown:
        _tell(
            notes,
            f"2WikiMultiHopQA: {len(unknown)} of {len(with_id)} answer ids are not in {aliases_path} "
            f"(e.g. {unknown[0].metadata['answer_id']} of question {unknown[0].set_id}); those questions "
            "keep only their written answer",
        )
