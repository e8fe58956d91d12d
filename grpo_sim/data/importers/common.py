"""What every importer shares: reading local JSON/JSONL(.gz) rows, collecting row problems, field helpers,
passage ids and the notes an import reports."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..schema import DataError, Paraphrase, ParaphraseSet

Problem = tuple[int | None, str, str]
logger = logging.getLogger("grpo_sim.data.importers")  # the logger the importers' docs name


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
        return (
            f"none of the {n} TriviaQA questions has passages in metadata.passages: the release keeps the "
            f"texts of the {docs} referenced documents in its evidence/ folder; import with --evidence-dir "
            "PATH/evidence (evidence_dir=...) to cut them into passages, or retrieve from a corpus of your own "
            "(grpo-sim data retrieve --corpus)"
        )
    if sources == {"eli5"}:
        return (
            f"none of the {n} ELI5 questions has passages in metadata.passages: ELI5 comes without passages; "
            "build a corpus of your own (e.g. Wikipedia) and give it to grpo-sim data retrieve --corpus"
        )
    return (
        f"none of the {n} sets has passages in metadata.passages: give a corpus of your own to "
        "grpo-sim data retrieve --corpus"
    )


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
        raise DataError(
            f"{path}: a JSON object without the '{list_key}' list this format keeps its rows in",
            [(None, list_key, "missing")],
        )
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


def _get(
    row: dict[str, Any],
    *names: str,
    required: bool = True,
    kind: type | tuple[type, ...] | None = None,
    default: Any = None,
) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            value = row[name]
            if kind is not None and not isinstance(value, kind):
                kinds = kind if isinstance(kind, tuple) else (kind,)
                raise _RowError(
                    name,
                    f"expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__} {_short(value)}",
                )
            return value
    if required:
        raise _RowError(
            names[0], "field is missing" + (f" (also looked for {', '.join(names[1:])})" if len(names) > 1 else "")
        )
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
