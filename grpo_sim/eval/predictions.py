"""Prediction rows and the sets the evaluation scores: reading and checking predictions, per-set views.

A prediction row is ``set_id, paraphrase_id, answer`` (plus ``level``, ``passage_ids``, gold ``answers``, ...);
:func:`check_predictions` names every bad row and field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..data.schema import ParaphraseSet, _coerce_sets

#: generation levels a prediction row can belong to
LEVELS: tuple[str, ...] = ("e2e", "generator")


class EvalError(ValueError):
    """Bad evaluation input; the message names the file, row and field and says what to change."""


# --------------------------------------------------------------------------------------------
# Predictions: reading and checking
# --------------------------------------------------------------------------------------------

REQUIRED_PREDICTION_FIELDS = ("set_id", "paraphrase_id", "answer")


def check_predictions(
    predictions: Iterable[Mapping[str, Any]], source: str = "predictions", line_numbers: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Validate and normalise prediction rows (copies).

    Required fields: ``set_id`` (string or integer), ``paraphrase_id`` (integer), ``answer``
    (string). Optional: ``level`` (``"e2e"`` (default) or ``"generator"``), ``passage_ids``
    (list of strings), ``answers`` (gold answers), ``question``, ``prompt``. A repeated
    ``(level, set_id, paraphrase_id)`` is an error.
    """
    out: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, int], int] = {}
    for k, row in enumerate(predictions):
        where = f"{source}: line {line_numbers[k]}" if line_numbers is not None else f"{source}: row {k + 1}"
        if not isinstance(row, Mapping):
            raise EvalError(
                f"{where}: expected a JSON object with {', '.join(REQUIRED_PREDICTION_FIELDS)}, "
                f"got {type(row).__name__}"
            )
        missing = [f for f in REQUIRED_PREDICTION_FIELDS if f not in row]
        if missing:
            raise EvalError(
                f"{where}: missing field '{missing[0]}' (every prediction row needs "
                f"{', '.join(REQUIRED_PREDICTION_FIELDS)})"
            )
        r = dict(row)
        if not isinstance(r["set_id"], (str, int)) or isinstance(r["set_id"], bool) or str(r["set_id"]) == "":
            raise EvalError(f"{where}: field 'set_id' must be a non-empty string, got {r['set_id']!r}")
        r["set_id"] = str(r["set_id"])
        pid = r["paraphrase_id"]
        if isinstance(pid, bool) or not (
            isinstance(pid, int) or (isinstance(pid, str) and pid.strip().lstrip("-").isdigit())
        ):
            raise EvalError(f"{where}: field 'paraphrase_id' must be an integer, got {pid!r}")
        r["paraphrase_id"] = int(pid)
        if r["answer"] is None:
            r["answer"] = ""
        if not isinstance(r["answer"], str):
            raise EvalError(f"{where}: field 'answer' must be a string, got {type(r['answer']).__name__}")
        level = r.get("level") or "e2e"
        if level not in LEVELS:
            raise EvalError(f"{where}: field 'level' is {level!r}; use one of {list(LEVELS)}")
        r["level"] = level
        pids = r.get("passage_ids")
        if pids is not None:
            if not isinstance(pids, list) or not all(isinstance(x, (str, int)) for x in pids):
                raise EvalError(f"{where}: field 'passage_ids' must be a list of passage id strings")
            r["passage_ids"] = [str(x) for x in pids]
        gold = r.get("answers")
        if gold is not None:
            if isinstance(gold, str):
                gold = [gold]
            if not isinstance(gold, list) or not all(isinstance(x, str) for x in gold):
                raise EvalError(f"{where}: field 'answers' must be a list of gold answer strings")
            r["answers"] = gold
        key = (level, r["set_id"], r["paraphrase_id"])
        if key in seen:
            raise EvalError(
                f"{where}: duplicate prediction for set {key[1]!r} paraphrase {key[2]} "
                f"(level {level}; first at row {seen[key] + 1}): keep one row per paraphrase"
            )
        seen[key] = k
        out.append(r)
    return out


def read_predictions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and check a ``predictions.jsonl`` file (see :func:`check_predictions`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    rows: list[Any] = []
    lines: list[int] = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError as e:
                raise EvalError(f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
            lines.append(lineno)
    if not rows:
        raise EvalError(f"{path}: no prediction rows (expected JSONL with set_id, paraphrase_id, answer)")
    return check_predictions(rows, source=str(path), line_numbers=lines)


# --------------------------------------------------------------------------------------------
# Sets as seen by the evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class SetView:
    """What the evaluation needs of one paraphrase set."""

    set_id: str
    question: str
    paraphrase_ids: list[int]
    passage_ids: list[list[str]] | None  # retrieved ids per paraphrase; None: no passage ids
    answers: list[str] = field(default_factory=list)


def views_from_sets(sets: Iterable[ParaphraseSet | Mapping[str, Any]]) -> list[SetView]:
    views = []
    for s in _coerce_sets(sets):
        ids = [[p.id for p in para.passages] for para in s.paraphrases]
        views.append(
            SetView(
                s.set_id,
                s.question,
                [p.paraphrase_id for p in s.paraphrases],
                ids if any(ids) else None,
                list(s.answers),
            )
        )
    return views


def views_from_predictions(preds: Sequence[Mapping[str, Any]]) -> list[SetView]:
    """Sets rebuilt from prediction rows alone (replay without the data file): paraphrases in
    row order, passage ids and gold answers from the e2e rows (or the first level present)."""
    levels_present = [lv for lv in LEVELS if any(r["level"] == lv for r in preds)]
    main = levels_present[0] if levels_present else "e2e"
    views: dict[str, SetView] = {}
    for r in preds:
        if r["level"] != main:
            continue
        v = views.get(r["set_id"])
        if v is None:
            v = views[r["set_id"]] = SetView(
                r["set_id"], str(r.get("question") or ""), [], [], list(r.get("answers") or [])
            )
        v.paraphrase_ids.append(r["paraphrase_id"])
        v.passage_ids.append(list(r.get("passage_ids") or []))
        if not v.question and r.get("question"):
            v.question = str(r["question"])
    for v in views.values():
        if not any(v.passage_ids):
            v.passage_ids = None
    return list(views.values())


def organise_predictions(
    views: list[SetView], preds: list[dict[str, Any]], source: str
) -> tuple[list[SetView], dict[str, dict[str, dict[int, dict[str, Any]]]], list[str]]:
    """Match predictions to sets: ``(evaluated views, level -> set -> pid -> row, notes)``."""
    by_id = {v.set_id: v for v in views}
    table: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for k, r in enumerate(preds):
        v = by_id.get(r["set_id"])
        if v is None:
            raise EvalError(
                f"{source}: row {k + 1}: set_id {r['set_id']!r} is not in the data "
                "(predictions and data must come from the same paraphrase-set file)"
            )
        if r["paraphrase_id"] not in v.paraphrase_ids:
            raise EvalError(
                f"{source}: row {k + 1}: set {r['set_id']!r} has no paraphrase_id "
                f"{r['paraphrase_id']} (it has {v.paraphrase_ids})"
            )
        table.setdefault(r["level"], {}).setdefault(r["set_id"], {})[r["paraphrase_id"]] = r
    if not table:
        raise EvalError(f"{source}: no predictions to score")
    covered = set().union(*(set(t) for t in table.values()))
    evaluated = [v for v in views if v.set_id in covered]
    notes = []
    if len(evaluated) < len(views):
        notes.append(
            f"{len(views) - len(evaluated)} of {len(views)} sets of the data have no predictions and were left out"
        )
    for level, sets in table.items():
        for v in evaluated:
            got = sets.get(v.set_id, {})
            missing = [p for p in v.paraphrase_ids if p not in got]
            if missing:
                raise EvalError(
                    f"{source}: level '{level}': no prediction for set {v.set_id!r} "
                    f"paraphrase_id {missing[0]} (each set needs one answer per paraphrase)"
                )
    single = [v.set_id for v in evaluated if len(v.paraphrase_ids) < 2]
    if single:
        notes.append(
            f"{len(single)} of {len(evaluated)} sets have a single wording (e.g. {single[0]!r}): scored for accuracy, "
            "not for consistency (consistency needs 2 or more wordings: grpo-sim data paraphrase)"
        )
    return evaluated, table, notes


def check_sets_for_consistency(views: Sequence[SetView], source: str = "data") -> None:
    """Sets to evaluate exist. Sets with a single wording are scored for accuracy only (their consistency is not
    defined), as docs/own-data.md says; :func:`organise_predictions` notes how many there are."""
    if not views:
        raise EvalError(f"{source}: no paraphrase sets to evaluate")
