"""Importers from the native release formats of TriviaQA, HotpotQA, 2WikiMultiHopQA, MuSiQue and
ELI5 into paraphrase sets (:class:`~grpo_sim.data.schema.ParaphraseSet`).

Every importer returns one set per question with **one paraphrase**: the original question
(``paraphrase_id`` 0, no passages yet; ``grpo-sim data paraphrase`` adds wordings and
``grpo-sim data retrieve`` adds passages per wording). ``set_id`` is the dataset's own question
id. What the importers take from each format:

===============  ==========================  ==========================================  ==============================
dataset          question                    answers (gold, several allowed)             ``metadata["passages"]``
===============  ==========================  ==========================================  ==============================
TriviaQA         ``Question``                ``Answer.Value`` then ``Answer.Aliases``    evidence documents cut into
                                             (original casing, case-insensitive          100-word passages, only when
                                             de-duplication). ``NormalizedAliases`` are  ``evidence_dir`` is given (HF
                                             lower-cased copies of the aliases (the      ``rc`` rows carry the text);
                                             scorer normalises anyway), kept in          the document references are
                                             metadata; test rows have no answers.        always kept
HotpotQA         ``question``                ``[answer]`` (yes/no included); test rows   the 10 (distractor) or gold
                                             have none                                   (fullwiki dev: none) context
                                                                                         paragraphs
2WikiMultiHopQA  ``question``                ``[answer]`` + aliases of ``answer_id``     the context paragraphs
                                             from ``id_aliases.json`` (given, or found
                                             next to the data file)
MuSiQue          ``question``                ``[answer] + answer_aliases``               the 20 paragraphs
ELI5             ``title`` (``selftext`` in  the ``max_answers`` (3) highest-scored      none (ELI5 has no passages;
                 metadata); KILT: ``input``  answer texts, best first; ``[deleted]``/    KILT provenance is kept as
                                             ``[removed]`` and empty answers skipped     references)
===============  ==========================  ==========================================  ==============================

Passages have content-addressed ids ``<dataset>:<sha1(title, text)[:16]>`` (TriviaQA:
``triviaqa:<file>#<chunk>``), so the same paragraph shared by many questions is one corpus
entry; :func:`export_corpus` writes them as a corpus JSONL for ``grpo-sim data retrieve``.
``metadata["supporting_passage_ids"]`` lists the ids of the supporting paragraphs where the
format marks them. Other ``metadata`` keys: ``source`` (dataset), ``source_id``, ``split``
(when known) and dataset-specific fields (question type, decomposition, scores, ...).

Local files may be JSON (a list, or TriviaQA's ``{"Data": [...]}``), JSONL, or either one
gzipped (``.gz``). :func:`import_dataset` also takes a Hugging Face hub name, loaded with
``datasets.load_dataset`` (rows in the hub's column layout, e.g. HotpotQA's
``context = {"title": [...], "sentences": [...]}``, are understood as well).

Malformed rows are all collected and reported in one :class:`~grpo_sim.data.schema.DataError`
that names the file, the 1-based row (list position, or line for JSONL) and the field.

What an import silently could not do is said out loud: every importer takes ``notes=`` (a list the
messages are appended to; without it they go to the ``grpo_sim.data.importers`` logger as warnings)
and reports questions left without passages (TriviaQA without ``evidence_dir``, or documents missing
from it; ELI5 always) naming the option that fills them, and 2WikiMultiHopQA answer aliases that
were not added (no ``id_aliases.json``, or an ``answer_id`` it does not list), with counts.
:func:`export_corpus` refuses to write an empty corpus (:func:`missing_passages_message` says why).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .schema import DataError, Paraphrase, ParaphraseSet, Passage, _format_problems, write_corpus

__all__ = [
    "DATASETS",
    "HF_DEFAULTS",
    "import_dataset",
    "import_triviaqa",
    "import_hotpotqa",
    "import_2wikimultihopqa",
    "import_musique",
    "import_eli5",
    "export_corpus",
    "corpus_from_sets",
    "dedupe_answers",
    "missing_passages_message",
]

Problem = tuple[int | None, str, str]
logger = logging.getLogger(__name__)


def _tell(notes: list[str] | None, message: str) -> None:
    """Record something the import could not do: into ``notes`` when the caller collects them, else a warning."""
    if notes is None:
        logger.warning(message)
    else:
        notes.append(message)


def missing_passages_message(sets: Sequence[ParaphraseSet]) -> str | None:
    """Why ``sets`` carry no passages (no ``metadata.passages`` anywhere) and what fills them; ``None``
    when some set has passages. The dataset is read from ``metadata["source"]``."""
    if any(s.metadata.get("passages") for s in sets):
        return None
    sources = {s.metadata.get("source") for s in sets}
    n = len(sets)
    if sources == {"triviaqa"}:
        docs = sum(len(s.metadata.get("evidence") or []) for s in sets)
        return (f"none of the {n} TriviaQA questions has passages in metadata.passages: the release keeps the "
                f"texts of the {docs} referenced documents in its evidence/ folder; import with --evidence-dir "
                "PATH/evidence (evidence_dir=...) to cut them into passages, or retrieve from a corpus of your own "
                "(grpo-sim data retrieve --corpus)")
    if sources == {"eli5"}:
        return (f"none of the {n} ELI5 questions has passages in metadata.passages: ELI5 comes without passages; "
                "build a corpus of your own (e.g. Wikipedia) and give it to grpo-sim data retrieve --corpus")
    return (f"none of the {n} sets has passages in metadata.passages: give a corpus of your own to "
            "grpo-sim data retrieve --corpus")


class _RowError(Exception):
    """A malformed field in one row (collected, then reported together)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class _BadLine:
    """A JSONL line that is not valid JSON (kept in row order so all problems are reported together)."""

    def __init__(self, message: str):
        self.message = message


# ------------------------------------------------------------------------------------------
# File reading
# ------------------------------------------------------------------------------------------


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _read_rows(path: Path, list_key: str | None = None) -> tuple[list[tuple[int, Any]], dict[str, Any], str]:
    """``([(row number, row)], top-level extras, "row"|"line")`` of a JSON list / JSON object with a
    list under ``list_key`` / JSONL file (optionally gzipped)."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give the dataset's JSON/JSONL file")
    with _open_text(path) as fh:
        text = fh.read()
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: the file is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as whole_err:
        # JSONL: one object per line
        rows: list[tuple[int, Any]] = []
        problems: list[Problem] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append((lineno, "<json>", f"not valid JSON ({e.msg} at column {e.colno}): fix the syntax"))
        if problems and (len(problems) == len([ln for ln in text.splitlines() if ln.strip()]) or stripped[0] == "["):
            raise DataError(
                f"{path}: not valid JSON or JSONL "
                f"({whole_err.msg} at line {whole_err.lineno} column {whole_err.colno})",
                [(whole_err.lineno, "<json>", whole_err.msg)],
            )
        for lineno, field, msg in problems:  # reported together with the rows' own problems
            rows.append((lineno, _BadLine(msg)))
        rows.sort(key=lambda r: r[0])
        return rows, {}, "line"
    extras: dict[str, Any] = {}
    if isinstance(obj, dict) and list_key is not None and list_key in obj:
        extras = {k: v for k, v in obj.items() if k != list_key}
        obj = obj[list_key]
    elif isinstance(obj, dict) and list_key is not None:
        raise DataError(f"{path}: a JSON object without the '{list_key}' list this format keeps its rows in",
                        [(None, list_key, "missing")])
    if isinstance(obj, dict):  # a single row
        return [(1, obj)], extras, "row"
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(obj).__name__}")
    return list(enumerate(obj, start=1)), extras, "row"


def _raise_problems(source: str, problems: list[Problem], unit: str) -> None:
    if not problems:
        return
    lines = [f"{source}: {len(problems)} malformed row(s):"]
    for n, field, msg in problems[:50]:
        lines.append(f"  {source}: {unit} {n}: field '{field}': {msg}")
    if len(problems) > 50:
        lines.append(f"  ... and {len(problems) - 50} more")
    raise DataError("\n".join(lines), problems)


def _convert_rows(
    rows: Iterable[tuple[int, Any]],
    convert: Callable[[dict[str, Any]], ParaphraseSet | None],
    source: str,
    unit: str,
    limit: int | None,
) -> list[ParaphraseSet]:
    """Run ``convert`` over rows, collecting every problem; de-duplicate set ids (``id~2``, ...)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    out: list[ParaphraseSet] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for n, row in rows:
        if limit is not None and len(out) >= limit:
            break
        if isinstance(row, _BadLine):
            problems.append((n, "<json>", row.message))
            continue
        if not isinstance(row, dict):
            problems.append((n, "<row>", f"expected a JSON object, got {type(row).__name__}"))
            continue
        try:
            pset = convert(row)
        except _RowError as e:
            rid = row.get("_id") or row.get("id") or row.get("QuestionId") or row.get("question_id") or row.get("q_id")
            field = e.field
            msg = e.message + (f" (row id {rid!r})" if isinstance(rid, str) else "")
            problems.append((n, field, msg))
            continue
        if pset is None:
            continue
        if pset.set_id in seen:
            seen[pset.set_id] += 1
            pset.metadata["duplicate_of_id"] = pset.set_id
            pset = pset.model_copy(update={"set_id": f"{pset.set_id}~{seen[pset.set_id]}"})
        else:
            seen[pset.set_id] = 1
        out.append(pset)
    _raise_problems(source, problems, unit)
    return out


# ------------------------------------------------------------------------------------------
# Field helpers
# ------------------------------------------------------------------------------------------


def _get(row: dict[str, Any], *names: str, required: bool = True, kind: type | tuple[type, ...] | None = None,
         default: Any = None) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            value = row[name]
            if kind is not None and not isinstance(value, kind):
                kinds = kind if isinstance(kind, tuple) else (kind,)
                raise _RowError(name, f"expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__} "
                                      f"{_short(value)}")
            return value
    if required:
        raise _RowError(names[0],
                        "field is missing" + (f" (also looked for {', '.join(names[1:])})" if len(names) > 1 else ""))
    return default


def _short(value: Any, n: int = 60) -> str:
    s = repr(value)
    return s if len(s) <= n else s[: n - 3] + "..."


def _question(row: dict[str, Any], *names: str) -> str:
    q = _get(row, *names, kind=str)
    if not q.strip():
        raise _RowError(names[0], "the question is empty")
    return q.strip()


def _row_id(row: dict[str, Any], *names: str) -> str:
    v = _get(row, *names, kind=(str, int))
    v = str(v)
    if not v.strip():
        raise _RowError(names[0], "the id is empty")
    return v


def _norm_key(s: str) -> str:
    return " ".join(s.lower().split())


def dedupe_answers(answers: Iterable[Any]) -> list[str]:
    """Non-empty answer strings, stripped, in order, without case/whitespace-insensitive repeats."""
    out: list[str] = []
    seen: set[str] = set()
    for a in answers:
        if not isinstance(a, str):
            continue
        a = a.strip()
        key = _norm_key(a)
        if a and key not in seen:
            seen.add(key)
            out.append(a)
    return out


def _passage_id(dataset: str, title: str, text: str) -> str:
    h = hashlib.sha1(f"{title}\n{text}".encode("utf-8")).hexdigest()[:16]
    return f"{dataset}:{h}"


def _join_sentences(sentences: Sequence[str]) -> str:
    """Join sentence strings: HotpotQA's carry their own leading space, 2Wiki's do not."""
    out = ""
    for s in sentences:
        if not out:
            out = s
        elif s[:1].isspace() or out[-1:].isspace():
            out += s
        else:
            out += " " + s
    return out.strip()


def _make_set(set_id: str, question: str, answers: list[str], metadata: dict[str, Any]) -> ParaphraseSet:
    return ParaphraseSet(
        set_id=set_id,
        question=question,
        paraphrases=[Paraphrase(paraphrase_id=0, question=question)],
        answers=answers,
        metadata=metadata,
    )


def _context_paragraphs(row: dict[str, Any], field: str = "context") -> list[tuple[str, list[str]]]:
    """HotpotQA/2Wiki context as ``[(title, sentences)]``; accepts the release layout
    ``[[title, [sentences]], ...]`` and the hub layout ``{"title": [...], "sentences": [[...]]}``."""
    ctx = row.get(field)
    if ctx is None:
        return []
    paras: list[tuple[str, list[str]]] = []
    if isinstance(ctx, dict):
        titles, sents = ctx.get("title"), ctx.get("sentences", ctx.get("content"))
        if not isinstance(titles, list) or not isinstance(sents, list) or len(titles) != len(sents):
            raise _RowError(field, "expected {'title': [...], 'sentences': [[...], ...]} of equal length")
        pairs = list(zip(titles, sents))
    elif isinstance(ctx, list):
        pairs = []
        for i, item in enumerate(ctx):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise _RowError(f"{field}[{i}]", f"expected [title, [sentence, ...]], got {_short(item)}")
            pairs.append((item[0], item[1]))
    else:
        raise _RowError(field, f"expected a list of [title, sentences] pairs, got {type(ctx).__name__}")
    for i, (title, sentences) in enumerate(pairs):
        if not isinstance(title, str):
            raise _RowError(f"{field}[{i}][0]", f"the paragraph title must be a string, got {_short(title)}")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise _RowError(f"{field}[{i}][1]", f"expected a list of sentence strings, got {_short(sentences)}")
        paras.append((title, sentences))
    return paras


def _supporting_facts(row: dict[str, Any]) -> list[tuple[str, int]]:
    sf = row.get("supporting_facts")
    if sf is None:
        return []
    if isinstance(sf, dict):
        titles, ids = sf.get("title", []), sf.get("sent_id", [])
        if not isinstance(titles, list) or not isinstance(ids, list) or len(titles) != len(ids):
            raise _RowError("supporting_facts", "expected {'title': [...], 'sent_id': [...]} of equal length")
        return [(t, int(i)) for t, i in zip(titles, ids)]
    if not isinstance(sf, list):
        raise _RowError("supporting_facts", f"expected a list of [title, sentence index], got {type(sf).__name__}")
    out = []
    for i, item in enumerate(sf):
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str):
            raise _RowError(f"supporting_facts[{i}]", f"expected [title, sentence index], got {_short(item)}")
        out.append((item[0], item[1]))
    return out


def _multihop_passages(dataset: str, row: dict[str, Any]) -> tuple[list[dict[str, str]], list[str]]:
    paras = _context_paragraphs(row)
    sf_titles = {t for t, _ in _supporting_facts(row)}
    passages, supporting = [], []
    for title, sentences in paras:
        text = _join_sentences(sentences)
        if not text:
            continue
        pid = _passage_id(dataset, title, text)
        passages.append({"id": pid, "title": title, "text": text})
        if title in sf_titles and pid not in supporting:
            supporting.append(pid)
    return passages, supporting


# ------------------------------------------------------------------------------------------
# TriviaQA
# ------------------------------------------------------------------------------------------

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
            for k_src, k_dst in (("Type", "answer_type"), ("type", "answer_type"),
                                 ("NormalizedAliases", "normalized_aliases"),
                                 ("normalized_aliases", "normalized_aliases"),
                                 ("MatchedWikiEntityName", "matched_wiki_entity"),
                                 ("matched_wiki_entity_name", "matched_wiki_entity")):
                if answer.get(k_src) not in (None, ""):
                    meta[k_dst] = answer[k_src]
        src = row.get("QuestionSource", row.get("question_source"))
        if src:
            meta["question_source"] = src

        passages: list[dict[str, str]] = []
        refs: list[dict[str, Any]] = []
        # release layout: lists of objects with Filename; hub layout: dict of lists with the text inline
        for key, hub_key, sub in (("EntityPages", "entity_pages", "wikipedia"),
                                  ("SearchResults", "search_results", "web")):
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
                    passages.extend(_triviaqa_doc_passages(title, filename or f"{qid}-{sub}-{i}", text,
                                                           chunk_words, max_chunks_per_doc))
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
        raise DataError(f"{ev}: evidence_dir is not a directory (expected the TriviaQA 'evidence' folder "
                        "with 'wikipedia/' and 'web/')")
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
    refs = [(r.get("kind"), r.get("filename")) for s in sets for r in s.metadata.get("evidence") or []
            if r.get("filename")]
    missing = [f"{kind}/{name}" for kind, name in refs if name not in found]
    _tell(notes, f"{len(no_passages)} of {len(sets)} TriviaQA questions have no passages: {len(missing)} of the "
                 f"{len(refs)} referenced documents are not under {evidence_dir} (e.g. {', '.join(missing[:3])}); "
                 "give the release's complete evidence/ folder (with wikipedia/ and web/)")


# ------------------------------------------------------------------------------------------
# HotpotQA and 2WikiMultiHopQA
# ------------------------------------------------------------------------------------------


def _multihop_converter(source: str, split: str | None, keep: Sequence[str],
                        aliases: Mapping[str, list[str]] | None = None) -> Callable[[dict[str, Any]], ParaphraseSet]:
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


def import_hotpotqa(path: str | os.PathLike[str], limit: int | None = None, split: str | None = None,
                   notes: list[str] | None = None) -> list[ParaphraseSet]:
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


def _2wiki_alias_notes(sets: Sequence[ParaphraseSet], aliases: Mapping[str, list[str]] | None,
                       aliases_path: Any, folder: Path | None, notes: list[str] | None) -> None:
    """Count the questions whose answer aliases were not added, and say how to add them."""
    with_id = [s for s in sets if isinstance(s.metadata.get("answer_id"), str)]
    if not with_id:
        return
    if aliases is None:
        where = f" or found next to the data file ({folder / 'id_aliases.json'})" if folder is not None else ""
        _tell(notes, f"2WikiMultiHopQA: the answer aliases of {len(with_id)} of {len(sets)} questions were skipped: "
                     f"no id_aliases.json given{where}, so each question keeps only its one written answer and "
                     "EM/F1 reject the other names of the same entity; pass --aliases PATH/id_aliases.json "
                     "(aliases_path=..., from the 2WikiMultiHopQA release)")
        return
    unknown = [s for s in with_id if s.metadata["answer_id"] not in aliases]
    if unknown:
        _tell(notes, f"2WikiMultiHopQA: {len(unknown)} of {len(with_id)} answer ids are not in {aliases_path} "
                     f"(e.g. {unknown[0].metadata['answer_id']} of question {unknown[0].set_id}); those questions "
                     "keep only their written answer")


# ------------------------------------------------------------------------------------------
# MuSiQue
# ------------------------------------------------------------------------------------------


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
    path: str | os.PathLike[str], limit: int | None = None, split: str | None = None, answerable_only: bool = False,
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


# ------------------------------------------------------------------------------------------
# ELI5
# ------------------------------------------------------------------------------------------

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
                        provenance.append({k: pr[k] for k in ("wikipedia_id", "title", "start_paragraph_id",
                                                              "end_paragraph_id") if k in pr})
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


# ------------------------------------------------------------------------------------------
# Dispatcher, hub loading, corpus export
# ------------------------------------------------------------------------------------------

_ALIASES = {
    "triviaqa": "triviaqa", "trivia_qa": "triviaqa", "trivia-qa": "triviaqa",
    "hotpotqa": "hotpotqa", "hotpot_qa": "hotpotqa", "hotpot": "hotpotqa",
    "2wikimultihopqa": "2wikimultihopqa", "2wiki": "2wikimultihopqa", "2wikimqa": "2wikimultihopqa",
    "2wikimultihop": "2wikimultihopqa",
    "musique": "musique",
    "eli5": "eli5", "eli5_category": "eli5", "eli5-category": "eli5", "kilt_eli5": "eli5",
}

DATASETS = ("triviaqa", "hotpotqa", "2wikimultihopqa", "musique", "eli5")

# Suggested hub ids and configs (user-supplied names win; these are only defaults for the short
# names and the configs of well-known hub datasets).
HF_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext"),
    "hotpotqa": ("hotpotqa/hotpot_qa", "distractor"),
    "2wikimultihopqa": ("framolfese/2WikiMultihopQA", None),
    "musique": ("dgslibisey/MuSiQue", None),
    "eli5": ("rexarski/eli5_category", None),
}
_HF_CONFIGS = {
    "trivia_qa": "rc.nocontext", "mandarjoshi/trivia_qa": "rc.nocontext",
    "hotpot_qa": "distractor", "hotpotqa/hotpot_qa": "distractor",
    "kilt_tasks": "eli5", "facebook/kilt_tasks": "eli5",
}

_IMPORTERS: dict[str, Callable[..., list[ParaphraseSet]]] = {
    "triviaqa": import_triviaqa,
    "hotpotqa": import_hotpotqa,
    "2wikimultihopqa": import_2wikimultihopqa,
    "musique": import_musique,
    "eli5": import_eli5,
}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    if key not in _ALIASES:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return _ALIASES[key]


def _looks_like_path(s: str) -> bool:
    return (os.sep in s and not re.fullmatch(r"[\w.-]+/[\w.-]+", s)) or s.startswith((".", "~")) or \
        bool(re.search(r"\.(json|jsonl|gz)$", s))


def _hub_converter(
    name: str, split: str | None, kwargs: dict[str, Any]
) -> Callable[[dict[str, Any]], ParaphraseSet | None]:
    if name == "triviaqa":
        return _triviaqa_converter(None, split, kwargs.get("chunk_words", TRIVIAQA_CHUNK_WORDS),
                                   kwargs.get("max_chunks_per_doc"))
    if name == "hotpotqa":
        return _hotpot_converter(split)
    if name == "2wikimultihopqa":
        aliases = _load_2wiki_aliases(Path(kwargs["aliases_path"])) if kwargs.get("aliases_path") else {}
        return _2wiki_converter(split, aliases)
    if name == "musique":
        return _musique_converter(split, kwargs.get("answerable_only", False))
    return _eli5_converter(split, kwargs.get("max_answers", 3), kwargs.get("min_score"))


def import_from_hub(
    name: str, hf_name: str | None = None, split: str | None = None, limit: int | None = None,
    hf_config: str | None = None, **kwargs: Any
) -> list[ParaphraseSet]:
    """Load a dataset with ``datasets.load_dataset(hf_name, hf_config, split=split)`` (needs hub
    access) and convert its rows with the same rules as the local importer of ``name``."""
    import datasets

    name = canonical_name(name)
    if hf_name is None:
        hf_name, default_cfg = HF_DEFAULTS[name]
        hf_config = hf_config or default_cfg
    hf_config = hf_config or _HF_CONFIGS.get(hf_name)
    split = split or "train"
    try:
        ds = datasets.load_dataset(hf_name, hf_config, split=split, streaming=limit is not None)
    except Exception as e:  # noqa: BLE001 - hub/network errors become a clear message
        raise DataError(f"could not load {hf_name!r} (config {hf_config!r}, split {split!r}) from the Hugging Face "
                        f"hub: {type(e).__name__}: {e}. "
                        "Give a local file instead, or check the name/config/split") from e
    rows = ((i, dict(r)) for i, r in enumerate(ds, start=1))
    notes = kwargs.pop("notes", None)
    sets = _convert_rows(rows, _hub_converter(name, split, kwargs), f"hf:{hf_name}[{split}]", "row", limit)
    for s in sets:
        s.metadata.setdefault("hf_dataset", hf_name)
    if name == "2wikimultihopqa":
        aliases = _load_2wiki_aliases(Path(kwargs["aliases_path"])) if kwargs.get("aliases_path") else None
        _2wiki_alias_notes(sets, aliases, kwargs.get("aliases_path"), None, notes)
    elif sets and missing_passages_message(sets):
        _tell(notes, missing_passages_message(sets) or "")
    return sets


def import_dataset(
    name: str,
    path_or_hf_name: str | os.PathLike[str],
    split: str | None = None,
    limit: int | None = None,
    **kwargs: Any,
) -> list[ParaphraseSet]:
    """Import ``name`` (triviaqa, hotpotqa, 2wikimultihopqa, musique, eli5; common spellings
    accepted) from a local file in its native format, or from the Hugging Face hub when
    ``path_or_hf_name`` is not an existing path (``hf_config=`` picks a config). Extra keyword
    arguments go to the dataset's importer (e.g. ``evidence_dir`` for TriviaQA)."""
    cname = canonical_name(name)
    p = Path(os.path.expanduser(str(path_or_hf_name)))
    hf_config = kwargs.pop("hf_config", None)
    if p.exists():
        return _IMPORTERS[cname](p, limit=limit, split=split, **kwargs)
    if isinstance(path_or_hf_name, os.PathLike) or _looks_like_path(str(path_or_hf_name)):
        raise DataError(f"{p}: file not found (give the {cname} data file, or a Hugging Face dataset name)")
    return import_from_hub(cname, str(path_or_hf_name), split=split, limit=limit, hf_config=hf_config, **kwargs)


def corpus_from_sets(sets: Iterable[ParaphraseSet]) -> list[Passage]:
    """The dataset-provided passages of ``sets`` (``metadata["passages"]``), first occurrence of
    each id kept, in order."""
    out: list[Passage] = []
    seen: set[str] = set()
    problems: list[Problem] = []
    for s in sets:
        items = s.metadata.get("passages") or []
        if not isinstance(items, list):
            problems.append((None, f"{s.set_id}.metadata.passages", "expected a list of passages"))
            continue
        for i, p in enumerate(items):
            try:
                passage = p if isinstance(p, Passage) else Passage.model_validate(p)
            except Exception as e:  # noqa: BLE001
                problems.append((None, f"{s.set_id}.metadata.passages[{i}]", str(e).splitlines()[0]))
                continue
            if passage.id not in seen:
                seen.add(passage.id)
                out.append(passage)
    if problems:
        raise DataError(_format_problems("<paraphrase sets>", problems), problems)
    return out


def export_corpus(sets: Iterable[ParaphraseSet], path: str | os.PathLike[str]) -> int:
    """Write the dataset-provided passages of ``sets`` as a corpus JSONL (atomic); returns the count.

    No passages at all is a :class:`DataError` (nothing is written): an empty corpus would only fail
    later, in retrieval; the message names the option that fills it (:func:`missing_passages_message`)."""
    sets = list(sets)
    passages = corpus_from_sets(sets)
    if not passages:
        raise DataError(f"{path}: not written, the corpus would be empty: "
                        f"{missing_passages_message(sets) or 'no set has metadata.passages'}")
    write_corpus(path, passages)
    return len(passages)


def iter_dataset_names() -> Iterator[str]:
    yield from DATASETS
