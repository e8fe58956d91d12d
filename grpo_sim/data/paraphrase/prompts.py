"""The paraphrasing prompt (a template with ``{question}`` and ``{n}``) and parsing a model's reply into wordings."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..schema import DataError

DEFAULT_TEMPLATE = """Rewrite the question below in {n} different ways. Each rewrite must ask for exactly the same \
information, so that it has the same answer, but use different wording or sentence structure. \
Do not answer the question and do not add facts or hints that are not in it.

Question: {question}

Reply with a JSON list of {n} strings and nothing else."""


# Templates and parsing


def load_template(path: str | os.PathLike[str] | None) -> str:
    """The prompt template in ``path`` (``None``: :data:`DEFAULT_TEMPLATE`); must contain ``{question}``."""
    if path is None:
        return DEFAULT_TEMPLATE
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: template file not found")
    text = p.read_text(encoding="utf-8")
    if "{question}" not in text:
        raise DataError(
            f"{p}: the template must contain '{{question}}' (where the question goes); "
            "'{n}' (number of paraphrases) is optional"
        )
    return text


def render_prompt(template: str, question: str, n: int) -> str:
    """Substitute ``{question}`` and ``{n}`` (no other brace handling)."""
    if "{question}" not in template:
        raise ValueError("prompt template must contain '{question}'")
    return template.replace("{n}", str(n)).replace("{question}", question)


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.):\]]|\[\d{1,3}\]|[A-Za-z][.)])\s+")


def _strings_from_json(obj: Any) -> list[str] | None:
    if isinstance(obj, dict):
        for key in ("paraphrases", "questions", "rewrites", "items", "results"):
            if isinstance(obj.get(key), list):
                return _strings_from_json(obj[key])
        return None
    if isinstance(obj, list):
        out = []
        for x in obj:
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, dict):
                for key in ("paraphrase", "question", "text", "rewrite"):
                    if isinstance(x.get(key), str):
                        out.append(x[key])
                        break
        return out
    return None


def _clean_line(s: str) -> str:
    s = _BULLET.sub("", s.strip()).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'\u201c\u201d`":
        s = s[1:-1].strip()
    elif len(s) >= 2 and s[0] == "\u201c" and s[-1] == "\u201d":
        s = s[1:-1].strip()
    return s.rstrip(",").strip()


def parse_paraphrases(text: str) -> list[str]:
    """Candidate wordings from raw model output (JSON list preferred, else one per line)."""
    if not text or not text.strip():
        return []
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        for start, end in (("[", "]"), ("{", "}")):
            i, j = cand.find(start), cand.rfind(end)
            if i != -1 and j > i:
                try:
                    got = _strings_from_json(json.loads(cand[i : j + 1]))
                except json.JSONDecodeError:
                    continue
                if got is not None:
                    return [g.strip() for g in got]
    body = _FENCE.sub(lambda m: m.group(1), text)
    out = []
    for line in body.splitlines():
        s = line.strip()
        if not s or s in ("[", "]", "{", "}"):
            continue
        # preambles like "Here are 3 paraphrases:" / "Sure!"
        if s.endswith(":") and not s.endswith("?:"):
            continue
        if re.match(r"^(sure|certainly|of course|okay|ok)\b[!.,]?\s*$", s, re.I):
            continue
        c = _clean_line(s)
        if c:
            out.append(c)
    return out
