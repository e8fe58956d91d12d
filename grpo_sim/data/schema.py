"""The paraphrase-set format: pydantic models, JSONL I/O and conversion to training rows.

One JSONL line holds one :class:`ParaphraseSet`::

    {"set_id": "s0", "question": "Where was Varenko born?",
     "paraphrases": [{"paraphrase_id": 0, "question": "Where was Varenko born?",
                      "passages": [{"id": "p3", "title": "Varenko", "text": "Varenko was born in Oslandia."}]},
                     {"paraphrase_id": 1, "question": "What is the birthplace of Varenko?", "passages": []}],
     "answers": ["Oslandia"], "metadata": {"relation": "born_in"}}

``paraphrase_id`` 0 is by convention the canonical wording. Passages are per paraphrase
because retrieval is run per wording (that is where answers across wordings start to diverge).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import string
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..io import atomic_write_lines


class DataError(ValueError):
    """A data file (or in-memory data) does not follow the paraphrase-set format.

    ``problems`` lists every problem found as ``(line, field, message)``; ``line`` is
    1-based (``None`` when not tied to a line of a file).
    """

    def __init__(self, message: str, problems: Sequence[tuple[int | None, str, str]] = ()):
        super().__init__(message)
        self.problems = list(problems)


class Passage(BaseModel):
    """A retrievable passage."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = ""
    text: str

    @field_validator("id")
    @classmethod
    def _id_non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("passage id must be a non-empty string")
        return v


class Paraphrase(BaseModel):
    """One wording of a question together with the passages retrieved for that wording."""

    model_config = ConfigDict(extra="forbid")

    paraphrase_id: int
    question: str
    passages: list[Passage] = Field(default_factory=list)

    @field_validator("question")
    @classmethod
    def _question_non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question must be a non-empty string (give the wording of this paraphrase)")
        return v


class ParaphraseSet(BaseModel):
    """Several wordings of one question, its gold answers and free-form metadata."""

    model_config = ConfigDict(extra="forbid")

    set_id: str
    question: str
    paraphrases: list[Paraphrase] = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answers", mode="before")
    @classmethod
    def _single_answer_to_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("set_id")
    @classmethod
    def _set_id_non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("set_id must be a non-empty string")
        return v

    @field_validator("question")
    @classmethod
    def _question_non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question must be a non-empty string (the canonical wording)")
        return v

    @model_validator(mode="after")
    def _unique_paraphrase_ids(self) -> "ParaphraseSet":
        seen: set[int] = set()
        dups: list[int] = []
        for p in self.paraphrases:
            if p.paraphrase_id in seen and p.paraphrase_id not in dups:
                dups.append(p.paraphrase_id)
            seen.add(p.paraphrase_id)
        if dups:
            raise ValueError(
                f"paraphrase_id values must be unique within a set; duplicated: {dups} "
                "(renumber the paraphrases 0..n-1)"
            )
        return self

    @property
    def num_paraphrases(self) -> int:
        return len(self.paraphrases)


# ------------------------------------------------------------------------------------------
# JSONL I/O
# ------------------------------------------------------------------------------------------


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<row>"


def _hint(err: dict[str, Any]) -> str:
    etype = err.get("type", "")
    msg = err.get("msg", "")
    if etype == "missing":
        return "field is missing: add it"
    if etype == "extra_forbidden":
        return "unknown field: remove it or move it into 'metadata'"
    if etype == "too_short":
        return "must hold at least one paraphrase: add one (paraphrase 0 = the canonical question)"
    if etype.endswith("_type") or etype.endswith("_parsing"):
        return f"{msg} (got {err.get('input')!r}): change it to that type"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def _validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [(_loc_to_field(tuple(e.get("loc", ()))), _hint(e)) for e in exc.errors()]


def _format_problems(source: str, problems: Sequence[tuple[int | None, str, str]], limit: int = 50) -> str:
    lines = [f"{source}: {len(problems)} problem(s) in paraphrase-set data:"]
    for line, field, msg in problems[:limit]:
        where = f"{source}:{line}" if line is not None else source
        lines.append(f"  {msg}" if field == "<file>" else f"  {where}: field '{field}': {msg}")
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
    b"PK\x03\x04": "zip",
    b"(\xb5/\xfd": "zstd",
}


def _text_lines(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file; unreadable files and lines become ``problems``.

    A compressed or binary file is one problem naming the file (not a UnicodeDecodeError traceback).
    """
    try:
        fh = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}): check the path and its permissions") from None
    with fh:
        head = fh.read(8)
        kind = next((name for magic, name in _COMPRESSED_MAGIC.items() if head.startswith(magic)), None)
        if kind is not None:
            problems.append((None, "<file>", f"{path} is {kind}-compressed, not JSONL text: decompress it first"))
            return
        fh.seek(0)
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(
                    (
                        lineno,
                        "<encoding>",
                        f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                        f"{e.start + 1}): a binary file? save it as UTF-8 JSONL",
                    )
                )
                if sum(1 for _, f, _ in problems if f == "<encoding>") >= 5:
                    problems.append(
                        (None, "<file>", f"{path}: stopped reading after 5 lines that are not UTF-8 (a binary file?)")
                    )
                    return
                continue
            if "\x00" in text:
                problems.append(
                    (lineno, "<encoding>", "contains NUL bytes: is this a binary file? save it as UTF-8 JSONL")
                )
                continue
            yield lineno, text


def _read_jsonl_models(path: Path, model: type[BaseModel], key: str, what: str) -> tuple[list[Any], list[Problem]]:
    """Validate every line of a JSONL file as ``model``; unique ``key``. Returns (rows, all problems)."""
    rows: list[Any] = []
    problems: list[Problem] = []
    first_line_of: dict[str, int] = {}
    for lineno, raw in _text_lines(path, problems):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append((lineno, "<json>", f"not valid JSON ({e.msg} at column {e.colno}): fix the syntax"))
            continue
        except RecursionError:
            problems.append((lineno, "<json>", "JSON nested too deeply to read: one paraphrase set per line"))
            continue
        if not isinstance(obj, dict):
            problems.append(
                (lineno, "<row>", f"expected a JSON object, got {type(obj).__name__}: write one object per line")
            )
            continue
        try:
            row = model.model_validate(obj)
        except ValidationError as e:
            problems.extend((lineno, f, m) for f, m in _validation_problems(e))
            continue
        value = getattr(row, key)
        if value in first_line_of:
            problems.append(
                (lineno, key, f"duplicate {what} {value!r} (first on line {first_line_of[value]}): make it unique")
            )
            continue
        first_line_of[value] = lineno
        rows.append(row)
    return rows, problems


def read_psets(path: str | os.PathLike[str]) -> list[ParaphraseSet]:
    """Read paraphrase sets from a JSONL file (one set per line; blank lines are skipped).

    Every bad line is collected; a :class:`DataError` naming file, 1-based line, field and a
    fix is raised after the whole file was read. Duplicate ``set_id`` values are errors too.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected a JSONL file of paraphrase sets)")
    sets, problems = _read_jsonl_models(path, ParaphraseSet, "set_id", "set_id")
    if problems:
        raise DataError(_format_problems(str(path), problems), problems)
    return sets


def _coerce_sets(sets: Iterable[ParaphraseSet | dict[str, Any]]) -> list[ParaphraseSet]:
    out: list[ParaphraseSet] = []
    problems: list[tuple[int | None, str, str]] = []
    for i, s in enumerate(sets):
        if isinstance(s, ParaphraseSet):
            out.append(s)
            continue
        try:
            out.append(ParaphraseSet.model_validate(s))
        except ValidationError as e:
            problems.extend((None, f"sets[{i}].{f}", m) for f, m in _validation_problems(e))
    if problems:
        raise DataError(_format_problems("<paraphrase sets>", problems), problems)
    return out


def write_psets(path: str | os.PathLike[str], sets: Iterable[ParaphraseSet | dict[str, Any]]) -> Path:
    """Write sets as JSONL atomically (temp file in the same directory, then ``os.replace``)."""
    sets = _coerce_sets(sets)
    return atomic_write_lines(
        path, (json.dumps(s.model_dump(mode="json"), ensure_ascii=False, sort_keys=False) for s in sets)
    )


# ------------------------------------------------------------------------------------------
# Prompts and training rows
# ------------------------------------------------------------------------------------------

PROMPT_TEMPLATES: dict[str, str] = {
    "rag_short_answer": "{passages}\nQuestion: {question}\nAnswer:",
    "rag_long_answer": (
        "Use the passages to answer the question in one or two full sentences.\n"
        "{passages}\nQuestion: {question}\nAnswer:"
    ),
    "closed_book": "Question: {question}\nAnswer:",
}


def format_passages(passages: Sequence[Passage]) -> str:
    """``[1] title: text`` lines (1-based), or ``[1] text`` for an untitled passage."""
    lines = []
    for k, p in enumerate(passages, start=1):
        lines.append(f"[{k}] {p.title}: {p.text}" if p.title else f"[{k}] {p.text}")
    return "\n".join(lines)


_TEMPLATE_FIELDS = ("question", "passages")


def check_prompt_template(template: str) -> str:
    """The format string for ``template`` (a name in :data:`PROMPT_TEMPLATES` or a format string).

    Raises ValueError for an unknown name (with the closest one), a string without ``{question}``,
    a placeholder other than ``{question}``/``{passages}``, or a malformed format string.
    """
    if template in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[template]
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(
            f"prompt template {template!r} is not a valid format string ({exc}); "
            "write literal braces as '{{' and '}}'"
        ) from None
    if "question" not in {re.split(r"[.\[]", f)[0] for f in fields}:
        close = difflib.get_close_matches(template, list(PROMPT_TEMPLATES), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown prompt template {template!r}: {hint}use one of {sorted(PROMPT_TEMPLATES)} "
            "or a format string containing '{question}'"
        )
    unknown = sorted({f for f in fields if f not in _TEMPLATE_FIELDS})  # also {question.x}, {0}, {}
    if unknown:
        raise ValueError(
            f"prompt template {template!r} uses unknown placeholder(s) "
            f"{', '.join('{' + f + '}' for f in unknown)}: only {{question}} and {{passages}} are "
            "filled in (write literal braces as '{{' and '}}')"
        )
    return template


def build_rag_prompt(question: str, passages: Sequence[Passage] = (), template: str = "rag_short_answer") -> str:
    """User-message text for one paraphrase.

    ``template`` names one of :data:`PROMPT_TEMPLATES` (``rag_short_answer``, ``rag_long_answer``,
    ``closed_book``) or is a format string with ``{question}`` and optionally ``{passages}``.
    A RAG template with no passages drops the passage block.
    """
    fmt = check_prompt_template(template)
    block = format_passages(passages)
    text = fmt.format(passages=block, question=question)
    return text.lstrip("\n") if not block else text


PromptBuilder = Callable[[str, Sequence[Passage]], str]


def to_training_rows(
    sets: Iterable[ParaphraseSet | dict[str, Any]],
    prompt_builder: PromptBuilder | str | None = None,
) -> list[dict[str, Any]]:
    """One row per paraphrase: ``prompt`` (chat messages), ``set_id``, ``paraphrase_id``,
    ``answers``, ``question``, ``passage_ids``.

    ``prompt_builder`` is ``f(question, passages) -> str``, a template name for
    :func:`build_rag_prompt`, or ``None`` (``rag_short_answer``). Rows of one set are adjacent
    and in paraphrase order.
    """
    if prompt_builder is None or isinstance(prompt_builder, str):
        template = prompt_builder or "rag_short_answer"

        def prompt_builder(q: str, ps: Sequence[Passage]) -> str:  # noqa: F811
            return build_rag_prompt(q, ps, template=template)

    rows: list[dict[str, Any]] = []
    for s in _coerce_sets(sets):
        for p in s.paraphrases:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": prompt_builder(p.question, p.passages)}],
                    "set_id": s.set_id,
                    "paraphrase_id": p.paraphrase_id,
                    "answers": list(s.answers),
                    "question": p.question,
                    "passage_ids": [x.id for x in p.passages],
                }
            )
    return rows


# ------------------------------------------------------------------------------------------
# Validation reports, Hugging Face ``datasets`` form, passage corpora
# ------------------------------------------------------------------------------------------

Problem = tuple[int | None, str, str]


def _atomic_write_text_lines(path: Path, lines: Iterable[str]) -> Path:
    return atomic_write_lines(path, lines)


def _is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists()
    )


def psets_from_hf(dataset: Any, source: str = "<dataset>") -> list[ParaphraseSet]:
    """Paraphrase sets from a Hugging Face ``datasets.Dataset`` (or any iterable of row dicts).

    Columns as in the JSONL form; ``metadata`` may be a JSON string (the form
    :func:`psets_to_hf` writes, since free-form dicts do not fit one Arrow schema) or a dict.
    Every bad row is collected; a :class:`DataError` names ``source``, the 1-based row number,
    the field and a fix.
    """
    sets: list[ParaphraseSet] = []
    problems: list[Problem] = []
    first_row_of: dict[str, int] = {}
    for rowno, row in enumerate(dataset, start=1):
        if not isinstance(row, dict):
            problems.append((rowno, "<row>", f"expected a mapping, got {type(row).__name__}"))
            continue
        row = dict(row)
        meta = row.get("metadata")
        if isinstance(meta, str):
            try:
                row["metadata"] = json.loads(meta) if meta.strip() else {}
            except json.JSONDecodeError as e:
                problems.append((rowno, "metadata", f"not a valid JSON string ({e.msg}): store a JSON object"))
                continue
        elif meta is None:
            row.pop("metadata", None)
        try:
            pset = ParaphraseSet.model_validate(row)
        except ValidationError as e:
            problems.extend((rowno, f, m) for f, m in _validation_problems(e))
            continue
        if pset.set_id in first_row_of:
            problems.append(
                (
                    rowno,
                    "set_id",
                    f"duplicate set_id {pset.set_id!r} (first in row {first_row_of[pset.set_id]}): make it unique",
                )
            )
            continue
        first_row_of[pset.set_id] = rowno
        sets.append(pset)
    if problems:
        raise DataError(_format_problems(source, problems), problems)
    return sets


def psets_to_hf(sets: Iterable[ParaphraseSet | dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` with one row per set; ``metadata`` is stored as a JSON string."""
    import datasets

    rows = []
    for s in _coerce_sets(sets):
        d = s.model_dump(mode="json")
        d["metadata"] = json.dumps(d["metadata"], ensure_ascii=False, sort_keys=True)
        rows.append(d)
    passage = {"id": datasets.Value("string"), "title": datasets.Value("string"), "text": datasets.Value("string")}
    features = datasets.Features(
        {
            "set_id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "paraphrases": datasets.List(
                {
                    "paraphrase_id": datasets.Value("int64"),
                    "question": datasets.Value("string"),
                    "passages": datasets.List(passage),
                }
            ),
            "answers": datasets.List(datasets.Value("string")),
            "metadata": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def load_psets(source: Any) -> list[ParaphraseSet]:
    """Read and validate paraphrase sets from a JSONL file, a directory written by
    ``datasets.Dataset.save_to_disk`` (the form :func:`psets_to_hf` builds) or an in-memory
    ``datasets.Dataset``. Raises :class:`DataError` listing every problem (the trainer and the
    evaluator call this, and so does ``grpo-sim data validate``); a source with no sets is one."""
    sets = _load_psets(source)
    if not sets:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "<dataset>"
        raise DataError(
            f"{name}: the file holds no paraphrase sets (it is empty or has only blank lines); "
            "expected one JSON object per line",
            [(None, "<file>", f"{name} holds no paraphrase sets (it is empty or has only blank lines)")],
        )
    return sets


def _load_psets(source: Any) -> list[ParaphraseSet]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if _is_hf_dataset_dir(path):
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                raise DataError(
                    f"{path}: a DatasetDict with splits {list(ds)}; point at one split's directory "
                    f"(e.g. {path / next(iter(ds))})"
                )
            return psets_from_hf(ds, source=str(path))
        if path.is_dir():
            raise DataError(f"{path}: a directory but not one written by datasets' save_to_disk; give a JSONL file")
        return read_psets(path)
    return psets_from_hf(source)


def validate_file(source: Any) -> list[Problem]:
    """Every problem in a paraphrase-set file (see :func:`load_psets`) as ``(row, field, message)``;
    an empty list when the data is valid."""
    try:
        load_psets(source)
    except DataError as e:
        return list(e.problems) or [(None, "<file>", str(e))]
    return []


def read_corpus(path: str | os.PathLike[str]) -> list[Passage]:
    """Read a passage corpus: JSONL, one ``{"id", "title" (optional), "text"}`` object per line.

    Every bad line (bad JSON, missing/empty id, missing text, unknown field, duplicate id) is
    collected and reported in one :class:`DataError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: corpus file not found (expected JSONL passages: id, title, text)")
    out, problems = _read_jsonl_models(path, Passage, "id", "passage id")
    if problems:
        raise DataError(
            _format_problems(str(path), problems).replace("paraphrase-set data", "passage corpus"), problems
        )
    if not out:
        raise DataError(f"{path}: the corpus holds no passages")
    return out


def write_corpus(path: str | os.PathLike[str], passages: Iterable[Passage | dict[str, Any]]) -> Path:
    """Write passages as JSONL atomically (temp file + rename)."""
    items = [p if isinstance(p, Passage) else Passage.model_validate(p) for p in passages]
    return _atomic_write_text_lines(
        Path(path), (json.dumps(p.model_dump(mode="json"), ensure_ascii=False) for p in items)
    )


def corpus_hash(passages: Sequence[Passage]) -> str:
    """sha256 over the passages (id, title, text) in order; identifies a corpus for index caches."""
    import hashlib

    h = hashlib.sha256()
    for p in passages:
        h.update(json.dumps([p.id, p.title, p.text], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


__all__ = [
    "DataError",
    "Passage",
    "Paraphrase",
    "ParaphraseSet",
    "PROMPT_TEMPLATES",
    "build_rag_prompt",
    "check_prompt_template",
    "format_passages",
    "read_psets",
    "to_training_rows",
    "write_psets",
    "Problem",
    "corpus_hash",
    "load_psets",
    "psets_from_hf",
    "psets_to_hf",
    "read_corpus",
    "validate_file",
    "write_corpus",
]
