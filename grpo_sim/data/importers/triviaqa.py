"""TriviaQA (rc / unfiltered JSON, or the hub's rows) into paraphrase sets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..schema import DataError, ParaphraseSet
from .common import (
    _convert_rows,
    _make_set,
    _question,
    _read_rows,
    _row_id,
    _RowError,
    _short,
    _tell,
    dedupe_answers,
    missing_passages_message,
)

TRIVIAQA_CHUNK_WORDS = 100


def _chunk_words(text: str, n_words: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + n_words]) for i in range(0, len(words), n_words)]


def _triviaqa_doc_passages(
    title: str, filename: str, text: str, n_words: int, max_chunks: int | None
) -> list[dict[str, str]]:
    chunks = _chunk_words(text, n_words)
    if max_chunks is not None:
        chunks = chunks[:max_chunks]
    return [{"id": f"triviaqa:{filename}#{k}", "title": title, "text": c} for k, c in enumerate(chunks)]


def _triviaqa_converter(
    evidence_dir: Path | None, split: str | None, chunk_words: int, max_chunks_per_doc: int | None
) -> Callable[[dict[str, Any]], ParaphraseSet]:
    def convert(row: dict[str, Any]) -> ParaphraseSet:
        question = _question(row, "Question", "question")
        qid = _row_id(row, "QuestionId", "question_id")
        answer = row.get("Answer", row.get("answer"))
        answers: list[str] = []
        meta: dict[str, Any] = {"source": "triviaqa", "source_id": qid}
        if split:
            meta["split"] = split
        if answer is not None:
            if not isinstance(answer, dict):
                raise _RowError("Answer", f"expected an object with Value/Aliases, got {type(answer).__name__}")
            value = answer.get("Value", answer.get("value"))
            aliases = answer.get("Aliases", answer.get("aliases", []))
            if value is not None and not isinstance(value, str):
                raise _RowError("Answer.Value", f"expected a string, got {_short(value)}")
            if not isinstance(aliases, list):
                raise _RowError("Answer.Aliases", f"expected a list of strings, got {type(aliases).__name__}")
            answers = [a for a in dedupe_answers([value, *aliases]) if a != "<unk>"]  # hub test rows: "<unk>"
            if value is not None and value.strip() == "":
                raise _RowError("Answer.Value", "the answer is empty")
            for k_src, k_dst in (
                ("Type", "answer_type"),
                ("type", "answer_type"),
                ("NormalizedAliases", "normalized_aliases"),
                ("normalized_aliases", "normalized_aliases"),
                ("MatchedWikiEntityName", "matched_wiki_entity"),
                ("matched_wiki_entity_name", "matched_wiki_entity"),
            ):
                if answer.get(k_src) not in (None, ""):
                    meta[k_dst] = answer[k_src]
        src = row.get("QuestionSource", row.get("question_source"))
        if src:
            meta["question_source"] = src

        passages: list[dict[str, str]] = []
        refs: list[dict[str, Any]] = []
        # release layout: lists of objects with Filename; hub layout: dict of lists with the text inline
        for key, hub_key, sub in (
            ("EntityPages", "entity_pages", "wikipedia"),
            ("SearchResults", "search_results", "web"),
        ):
            items = row.get(key)
            if items is None and isinstance(row.get(hub_key), dict):
                d = row[hub_key]
                n = len(d.get("title", []) or [])
                items = [
                    {
                        "Title": d.get("title", [""] * n)[i],
                        "Filename": (d.get("filename") or [""] * n)[i],
                        "_text": (d.get("wiki_context") or d.get("search_context") or [None] * n)[i],
                        **({"Url": d["url"][i]} if d.get("url") else {}),
                        **({"Rank": d["rank"][i]} if d.get("rank") else {}),
                    }
                    for i in range(n)
                ]
            if items is None:
                continue
            if not isinstance(items, list):
                raise _RowError(key, f"expected a list of documents, got {type(items).__name__}")
            for i, doc in enumerate(items):
                if not isinstance(doc, dict):
                    raise _RowError(f"{key}[{i}]", f"expected an object with Title/Filename, got {_short(doc)}")
                title = doc.get("Title", "") or ""
                filename = doc.get("Filename", "") or ""
                ref = {"kind": sub, "title": title, "filename": filename}
                for extra in ("Url", "Rank", "Description"):
                    if extra in doc:
                        ref[extra.lower()] = doc[extra]
                refs.append(ref)
                text = doc.get("_text")
                if text is None and evidence_dir is not None and filename:
                    f = evidence_dir / sub / filename
                    if f.exists():
                        text = f.read_text(encoding="utf-8", errors="replace")
                if text:
                    passages.extend(
                        _triviaqa_doc_passages(
                            title, filename or f"{qid}-{sub}-{i}", text, chunk_words, max_chunks_per_doc
                        )
                    )
        meta["evidence"] = refs
        meta["passages"] = passages
        return _make_set(qid, question, answers, meta)

    return convert


def import_triviaqa(
    path: str | os.PathLike[str],
    limit: int | None = None,
    evidence_dir: str | os.PathLike[str] | None = None,
    split: str | None = None,
    chunk_words: int = TRIVIAQA_CHUNK_WORDS,
    max_chunks_per_doc: int | None = None,
    notes: list[str] | None = None,
) -> list[ParaphraseSet]:
    """TriviaQA (rc or unfiltered release: ``{"Data": [...], "Domain", "Split", ...}``).

    Answers: ``Answer.Value`` first, then ``Answer.Aliases`` (de-duplicated case-insensitively);
    test rows without ``Answer`` get ``answers = []``. With ``evidence_dir`` (the release's
    ``evidence/`` folder holding ``wikipedia/`` and ``web/``) each referenced document that is
    present is cut into ``chunk_words``-word passages in ``metadata["passages"]``; document
    references (title, filename, url, rank) are always kept in ``metadata["evidence"]``.
    ``split`` defaults to the file's ``Split`` key. Questions left without passages (no
    ``evidence_dir``, or documents missing from it) are reported through ``notes``.
    """
    path = Path(path)
    rows, extras, unit = _read_rows(path, list_key="Data")
    split = split or extras.get("Split")
    ev = Path(evidence_dir) if evidence_dir is not None else None
    if ev is not None and not ev.is_dir():
        raise DataError(
            f"{ev}: evidence_dir is not a directory (expected the TriviaQA 'evidence' folder "
            "with 'wikipedia/' and 'web/')"
        )
    sets = _convert_rows(rows, _triviaqa_converter(ev, split, chunk_words, max_chunks_per_doc), str(path), unit, limit)
    if extras.get("Domain"):
        for s in sets:
            s.metadata["domain"] = extras["Domain"]
    _triviaqa_notes(sets, ev, notes)
    return sets


def _triviaqa_notes(sets: Sequence[ParaphraseSet], evidence_dir: Path | None, notes: list[str] | None) -> None:
    """Say how many questions got no passages and which referenced documents were not found."""
    if not sets:
        return
    no_passages = [s for s in sets if not s.metadata.get("passages")]
    if len(no_passages) == len(sets) and evidence_dir is None:
        _tell(notes, missing_passages_message(sets) or "")
        return
    if evidence_dir is None or not no_passages:
        return
    found = {p["id"].rsplit("#", 1)[0].removeprefix("triviaqa:") for s in sets for p in s.metadata["passages"]}
    refs = [
        (r.get("kind"), r.get("filename")) for s in sets for r in s.metadata.get("evidence") or [] if r.get("filename")
    ]
    missing = [f"{kind}/{name}" for kind, name in refs if name not in found]
    _tell(
        notes,
        f"{len(no_passages)} of {len(sets)} TriviaQA questions have no passages: {len(missing)} of the "
        f"{len(refs)} referenced documents are not under {evidence_dir} (e.g. {', '.join(missing[:3])}); "
        "give the release's complete evidence/ folder (with wikipedia/ and web/)",
    )
