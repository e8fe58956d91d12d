"""Filters for generated wordings: empty, overlong, answer leaks, (near-)duplicates, surplus."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

FILTER_REASONS = (
    "empty",
    "overlong",
    "answer_leak",
    "duplicate_of_question",
    "near_duplicate_of_question",
    "duplicate_of_paraphrase",
    "near_duplicate_of_paraphrase",
    "surplus",
)


# Filters

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(s: str) -> str:
    return " ".join(_PUNCT.sub(" ", s.lower()).split())


def _norm_answer(s: str) -> str:
    return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", s.lower())).split())


def _contains_words(haystack_norm: str, needle_norm: str) -> bool:
    if not needle_norm:
        return False
    return f" {needle_norm} " in f" {haystack_norm} "


@dataclass
class FilterConfig:
    """Settings of :func:`filter_paraphrases`."""

    max_chars: int = 400
    near_dup_threshold: float = 0.92
    check_answer_leak: bool = True
    leak_ignore: tuple[str, ...] = ("yes", "no")


def _similarity(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) / 100.0


def filter_paraphrases(
    question: str,
    candidates: Sequence[str],
    answers: Sequence[str] = (),
    n: int | None = None,
    existing: Sequence[str] = (),
    config: FilterConfig | None = None,
) -> tuple[list[str], dict[str, int]]:
    """``(kept, counts)``: the candidates that pass every filter (at most ``n``), in order, and
    the number dropped per reason (every reason of :data:`FILTER_REASONS` present, 0 or more).

    ``existing`` are wordings the set already has besides the question (kept candidates must
    differ from them as well)."""
    cfg = config or FilterConfig()
    counts = {r: 0 for r in FILTER_REASONS}
    q_norm = normalize_text(question)
    q_ans = _norm_answer(question)
    ignore = {_norm_answer(x) for x in cfg.leak_ignore}
    gold = [a for a in (_norm_answer(x) for x in answers) if a and a not in ignore and not _contains_words(q_ans, a)]
    kept: list[str] = []
    kept_norm: list[str] = [normalize_text(e) for e in existing if e.strip()]
    for raw in candidates:
        c = " ".join(str(raw).split())
        if not c:
            counts["empty"] += 1
            continue
        if len(c) > cfg.max_chars:
            counts["overlong"] += 1
            continue
        cn = normalize_text(c)
        if not cn:
            counts["empty"] += 1
            continue
        if cfg.check_answer_leak and gold:
            ca = _norm_answer(c)
            if any(_contains_words(ca, a) for a in gold):
                counts["answer_leak"] += 1
                continue
        if cn == q_norm:
            counts["duplicate_of_question"] += 1
            continue
        if _similarity(cn, q_norm) >= cfg.near_dup_threshold:
            counts["near_duplicate_of_question"] += 1
            continue
        if cn in kept_norm:
            counts["duplicate_of_paraphrase"] += 1
            continue
        if any(_similarity(cn, k) >= cfg.near_dup_threshold for k in kept_norm):
            counts["near_duplicate_of_paraphrase"] += 1
            continue
        if n is not None and len(kept) >= n:
            counts["surplus"] += 1
            continue
        kept.append(c)
        kept_norm.append(cn)
    return kept, counts
