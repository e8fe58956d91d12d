"""Rule-based wordings of a question, no LLM (:class:`~grpo_sim.data.paraphrase.backends.TemplateBackend`)."""

from __future__ import annotations

import random
import re
from typing import Iterable, Sequence

from .filters import normalize_text

# Template paraphrasing (no LLM)

_WH = ("what", "who", "whom", "whose", "where", "when", "which", "why", "how")
_AUX = (
    "is",
    "are",
    "was",
    "were",
    "does",
    "do",
    "did",
    "can",
    "could",
    "will",
    "would",
    "has",
    "have",
    "had",
    "should",
    "may",
    "might",
)
_LOWER_FIRST = (
    set(_WH) | set(_AUX) | {"in", "on", "at", "for", "from", "to", "of", "by", "with", "name", "the", "a", "an"}
)


def _family_paraphrases(question: str, wordings: Iterable[Sequence[str]]) -> list[str]:
    """Other wordings of a question asked with one template of a family (templates with ``{s}`` for the subject)."""
    for family in wordings:
        for tmpl in family:
            pattern = "^" + re.escape(tmpl).replace(re.escape("{s}"), r"(?P<s>[\w'-]+(?: [\w'-]+)*?)") + "$"
            m = re.match(pattern, question.strip())
            if m:
                s = m.group("s")
                return [t.format(s=s) for t in family if t != tmpl]
    return []


def _lower_first(q: str) -> str:
    first = q.split(" ", 1)[0]
    return q[0].lower() + q[1:] if first.lower() in _LOWER_FIRST and not first.isupper() else q


_NP_STOP = {
    "and",
    "or",
    "but",
    "why",
    "how",
    "what",
    "who",
    "which",
    "when",
    "where",
    "for",
    "to",
    "from",
    "with",
    "by",
    "in",
    "on",
    "at",
    "if",
    "that",
    "than",
}
_NP_VERBS = re.compile(
    r"\b(born|located|founded|made|built|called|named|released|written|played|known|based|"
    r"used|done|given|held|owned|set|shown)\b",
    re.I,
)


def _rule_paraphrases(question: str) -> list[str]:
    q = " ".join(question.strip().split())
    if not q:
        return []
    body = q.rstrip("?.! ").strip()
    lowered = _lower_first(body)
    out: list[str] = []
    words = body.split()
    w0 = words[0].lower() if words else ""
    w1 = words[1].lower() if len(words) > 1 else ""
    # "What/Who is <noun phrase>?" -> "Can you tell me what <noun phrase> is?"
    m = re.match(r"^(what|who)\s+(is|are|was|were)\s+(.+)$", body, re.I)
    if m:
        wh, aux, rest = m.group(1).lower(), m.group(2).lower(), m.group(3)
        rest_words = rest.lower().split()
        if (
            1 <= len(rest_words) <= 10
            and not _NP_VERBS.search(rest)
            and not (set(rest_words) & _NP_STOP)
            and rest_words[-1] not in ("of", "the", "a", "an")
        ):
            out.append(f"Can you tell me {wh} {rest} {aux}?")
            out.append(f"Do you know {wh} {rest} {aux}?")
    # "Who <verb> ...?" (subject question): the embedded form keeps the word order
    if w0 == "who" and w1 and w1 not in _AUX:
        out.append(f"Can you tell me {lowered}?")
        out.append(f"Do you know {lowered}?")
    # "Which N ..." <-> "What N ..." (when the next word is not an auxiliary)
    if w0 in ("which", "what") and w1 and w1 not in _AUX and w1 not in ("of", "one", "ones"):
        out.append(("What" if w0 == "which" else "Which") + body[len(words[0]) :] + "?")
    # "In which X ..." -> "In what X ..."
    m = re.match(r"^(in|on|at|from|for|by)\s+which\s+(.+)$", body, re.I)
    if m:
        out.append(f"{m.group(1).capitalize()} what {m.group(2)}?")
    # neutral wrappers: grammatical for any question
    out.extend(
        [
            f"I would like to know: {lowered}?",
            f"Quick question: {lowered}?",
            f"Can you tell me: {lowered}?",
            f"Please answer this question: {body}?",
            f"Here is my question: {lowered}?",
            f"Could you answer this: {lowered}?",
            f"Tell me, {lowered}?",
        ]
    )
    return out


def template_paraphrases(
    question: str, n: int, seed: int | None = 0, wordings: Iterable[Sequence[str]] = ()
) -> list[str]:
    """Up to ``n`` distinct rule-based wordings of ``question`` (never the question itself).

    ``wordings``: families of question templates with ``{s}`` for the subject (e.g. the synthetic
    world's, ``grpo_sim.demo.world.QUESTION_WORDINGS``); a question asked in one template of a
    family gets the family's other templates first. Then rule-based rewrites (``What is X?`` ->
    ``Can you tell me what X is?``, ``Which``<->``What``, ``In which`` -> ``In what``) and neutral
    wrappers (``Can you tell me ...?``, ``I would like to know: ...?``). ``seed`` shuffles the family
    templates (``None``: keep template order); the rule order is fixed.
    """
    if n < 1:
        return []
    rel = _family_paraphrases(question, wordings)
    if rel and seed is not None:
        rng = random.Random(f"{seed}:{question}")
        rng.shuffle(rel)
    cands = rel + _rule_paraphrases(question)
    out: list[str] = []
    seen = {normalize_text(question)}
    for c in cands:
        k = normalize_text(c)
        if k and k not in seen:
            seen.add(k)
            out.append(c)
        if len(out) >= n:
            break
    return out
