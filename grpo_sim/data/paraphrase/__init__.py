"""Paraphrase generation for paraphrase sets: LLM backends, a persistent cache, and filters.

Backends (all produce, for one question, a list of candidate wordings):

* :class:`OpenAIBackend` - any OpenAI-compatible HTTP endpoint (vLLM's server, llama.cpp,
  TGI, OpenAI, ...) through :func:`grpo_sim.openai_http.post_json` (stdlib ``urllib``);
  ``concurrency`` requests run in a thread pool; timeouts, connection errors, HTTP
  408/409/425/429/5xx and malformed JSON responses are retried with exponential backoff
  (``Retry-After`` honoured); other 4xx fail at once.
* :class:`VLLMBackend` - ``vllm.LLM`` in-process (imported only when used).
* :class:`TemplateBackend` - rule-based wordings, no LLM (:func:`template_paraphrases`).

The prompt is a template with ``{question}`` and optionally ``{n}`` (plain substitution, so
literal braces in a user template are fine). The model is asked for a JSON list of strings;
:func:`parse_paraphrases` also accepts code fences, ``{"paraphrases": [...]}`` and numbered or
bulleted lines.

:class:`ParaphraseCache` is an append-only JSONL file keyed by (model, template, question, n):
each finished question is appended (one ``write`` + ``fsync``) as soon as its answer arrives,
so an interrupted, failed or repeated run never pays twice for a question; a torn last line
from a crash is ignored on load. Filters run after the cache, so changing filter settings
costs no requests.

:func:`filter_paraphrases` drops, in this order (each candidate counted under its first
reason): ``empty``, ``overlong`` (> ``max_chars``), ``answer_leak`` (contains a gold answer,
as whole words after normalisation, that the question does not contain; ``yes``/``no``
answers are not checked), ``duplicate_of_question`` / ``near_duplicate_of_question`` (same
normalised text / character similarity >= ``near_dup_threshold``, rapidfuzz's normalised
Indel ratio of the normalised texts; CLI ``--near-duplicate-threshold``), ``duplicate_of_paraphrase``
/ ``near_duplicate_of_paraphrase`` (same against the wordings kept so far, including the set's
existing ones) and ``surplus`` (more than ``n`` good ones). :class:`ParaphraseStats` keeps the
counts per set (``per_set``) so a report can say which sets the near-duplicate filter left short.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from ...progress import progress_bar
from ..schema import Paraphrase, ParaphraseSet
from .backends import GenerationError, OpenAIBackend, TemplateBackend, VLLMBackend, make_backend
from .cache import ParaphraseCache, cache_key
from .filters import FILTER_REASONS, FilterConfig, filter_paraphrases
from .prompts import DEFAULT_TEMPLATE, load_template, parse_paraphrases, render_prompt
from .rules import template_paraphrases

__all__ = [
    "DEFAULT_TEMPLATE",
    "FILTER_REASONS",
    "GenerationError",
    "OpenAIBackend",
    "VLLMBackend",
    "TemplateBackend",
    "ParaphraseCache",
    "ParaphraseStats",
    "FilterConfig",
    "filter_paraphrases",
    "load_template",
    "make_backend",
    "paraphrase_sets",
    "parse_paraphrases",
    "render_prompt",
    "template_paraphrases",
]


# Driver


@dataclass
class ParaphraseStats:
    """Counts of one :func:`paraphrase_sets` run."""

    questions: int = 0
    skipped_complete: int = 0
    cache_hits: int = 0
    generated: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    candidates: int = 0
    kept: int = 0
    short_sets: int = 0
    filtered: dict[str, int] = field(default_factory=lambda: {r: 0 for r in FILTER_REASONS})
    errors: dict[str, str] = field(default_factory=dict)
    #: the near-duplicate threshold the filters ran with
    near_duplicate_threshold: float | None = None
    #: per filtered set: set_id -> {"candidates", "kept", "needed", "near_duplicates"} (near-duplicates of the
    #: question or of a kept wording); the run's totals hide which sets lost their wordings
    per_set: dict[str, dict[str, int]] = field(default_factory=dict)

    def near_duplicate_lines(self, max_sets: int = 20) -> list[str]:
        """What the near-duplicate filter dropped, per set (sets with drops, most first), and what to change
        when it left sets short. Empty when it dropped nothing."""
        dropped = {k: v for k, v in self.per_set.items() if v["near_duplicates"]}
        if not dropped:
            return []
        total = sum(v["near_duplicates"] for v in dropped.values())
        short = sum(1 for v in dropped.values() if v["kept"] < v["needed"])
        lines = [
            f"near-duplicate filter (character similarity >= {self.near_duplicate_threshold:g}) dropped {total} "
            f"of {self.candidates} candidates in {len(dropped)} set(s)"
            + (f", leaving {short} of them short:" if short else ":")
        ]
        order = sorted(dropped, key=lambda k: -dropped[k]["near_duplicates"])
        for set_id in order[:max_sets]:
            v = dropped[set_id]
            lines.append(
                f"  {set_id}: dropped {v['near_duplicates']} of {v['candidates']}, kept {v['kept']} "
                f"of {v['needed']} needed"
            )
        if len(order) > max_sets:
            lines.append(f"  ... and {len(order) - max_sets} more sets")
        if short:
            lines.append(
                "  rewrites that only add a prefix to a long question look alike character by character; "
                f"raise --near-duplicate-threshold above {self.near_duplicate_threshold:g} to keep them, "
                "or lower it to demand more change"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "skipped_complete": self.skipped_complete,
            "cache_hits": self.cache_hits,
            "generated": self.generated,
            "failed": self.failed,
            "requests": self.requests,
            "retries": self.retries,
            "candidates": self.candidates,
            "kept": self.kept,
            "short_sets": self.short_sets,
            "filtered": dict(self.filtered),
            "errors": dict(self.errors),
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "per_set": {k: dict(v) for k, v in self.per_set.items()},
        }


def paraphrase_sets(
    sets: Sequence[ParaphraseSet],
    backend: Any,
    n: int = 4,
    template: str = DEFAULT_TEMPLATE,
    cache: ParaphraseCache | None = None,
    filters: FilterConfig | None = None,
    concurrency: int | None = None,
    progress: bool = False,
    replace_existing: bool = False,
) -> tuple[list[ParaphraseSet], ParaphraseStats]:
    """Add up to ``n`` generated wordings to every set.

    A set keeps its existing paraphrases (new ids continue after the largest one); a set that
    already has ``n + 1`` or more wordings is left alone unless ``replace_existing`` (then all
    but the canonical paraphrase 0 are replaced). Raw outputs are cached before filtering; a
    question whose generation fails after all retries keeps its current wordings, is listed in
    ``stats.errors`` and is retried on the next run. ``metadata["paraphrase"]`` records the
    backend, the model, the number kept and the filter counts of each set.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    render_prompt(template, "x", n)  # validates the template
    cache = cache if cache is not None else ParaphraseCache(None)
    if filters is None and getattr(backend, "name", "") == "template":
        # wrapper rewrites of long questions differ by a short prefix only; keep them
        filters = FilterConfig(near_dup_threshold=0.98)
    stats = ParaphraseStats(
        questions=len(sets), near_duplicate_threshold=(filters or FilterConfig()).near_dup_threshold
    )
    model_id = getattr(backend, "model_id", getattr(backend, "name", "backend"))
    req0 = getattr(backend, "requests", 0)
    ret0 = getattr(backend, "retries", 0)

    work: list[tuple[int, str, str]] = []  # (set index, key, prompt)
    keys: dict[int, str] = {}
    queued: set[str] = set()
    for i, s in enumerate(sets):
        if not replace_existing and len(s.paraphrases) >= n + 1:
            stats.skipped_complete += 1
            continue
        key = cache_key(model_id, template, s.question, n)
        keys[i] = key
        if key in cache:
            stats.cache_hits += 1
        elif key not in queued:  # sets sharing a question share one request
            queued.add(key)
            work.append((i, key, render_prompt(template, s.question, n)))

    def record(i: int, key: str, raw: str) -> None:
        cache.put(
            key,
            {
                "model": model_id,
                "question": sets[i].question,
                "n": n,
                "template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
                "raw": raw,
                "time": round(time.time(), 3),
            },
        )

    if work and hasattr(backend, "prepare"):
        backend.prepare()  # e.g. load the vLLM model; a missing dependency fails here, before any work
    advance, close = progress_bar(len(work), f"paraphrasing ({getattr(backend, 'name', 'backend')})", progress)
    try:
        if work and hasattr(backend, "generate_batch"):
            chunk = 256
            for start in range(0, len(work), chunk):
                part = work[start : start + chunk]
                try:
                    outs = backend.generate_batch([p for _, _, p in part])
                except GenerationError as e:
                    for i, _, _ in part:
                        stats.errors[sets[i].set_id] = str(e)
                    continue
                for (i, key, _), raw in zip(part, outs):
                    record(i, key, raw)
                    stats.generated += 1
                    advance(1)
        elif work:
            workers = max(1, int(concurrency or getattr(backend, "concurrency", 1)))
            with cf.ThreadPoolExecutor(max_workers=workers) as pool:
                futs = {pool.submit(backend.generate, sets[i].question, prompt, n): (i, key) for i, key, prompt in work}
                for fut in cf.as_completed(futs):
                    i, key = futs[fut]
                    try:
                        raw = fut.result()
                    except GenerationError as e:
                        stats.errors[sets[i].set_id] = str(e)
                    else:
                        record(i, key, raw)
                        stats.generated += 1
                    advance(1)
    finally:
        close()
    stats.failed = len(stats.errors)
    stats.requests = getattr(backend, "requests", 0) - req0
    stats.retries = getattr(backend, "retries", 0) - ret0

    out: list[ParaphraseSet] = []
    for i, s in enumerate(sets):
        key = keys.get(i)
        rec = cache.get(key) if key is not None else None
        if rec is None:
            out.append(s)
            continue
        base = [p for p in s.paraphrases if p.paraphrase_id == 0] if replace_existing else list(s.paraphrases)
        if not base:
            base = [Paraphrase(paraphrase_id=0, question=s.question)]
        need = max(0, n + 1 - len(base))
        candidates = parse_paraphrases(rec["raw"])
        existing = [p.question for p in base if p.question.strip() != s.question.strip()]
        kept, counts = filter_paraphrases(s.question, candidates, s.answers, n=need, existing=existing, config=filters)
        stats.candidates += len(candidates)
        stats.kept += len(kept)
        for r, c in counts.items():
            stats.filtered[r] += c
        if len(kept) < need:
            stats.short_sets += 1
        stats.per_set[s.set_id] = {
            "candidates": len(candidates),
            "kept": len(kept),
            "needed": need,
            "near_duplicates": counts["near_duplicate_of_question"] + counts["near_duplicate_of_paraphrase"],
        }
        next_id = max(p.paraphrase_id for p in base) + 1
        new = base + [Paraphrase(paraphrase_id=next_id + k, question=q) for k, q in enumerate(kept)]
        meta = dict(s.metadata)
        meta["paraphrase"] = {
            "backend": getattr(backend, "name", "backend"),
            "model": model_id,
            "n_requested": n,
            "n_kept": len(kept),
            "filtered": {r: c for r, c in counts.items() if c},
        }
        out.append(s.model_copy(update={"paraphrases": new, "metadata": meta}))
    return out, stats


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def unique_questions(sets: Iterable[ParaphraseSet]) -> int:
    return len({s.question for s in sets})
