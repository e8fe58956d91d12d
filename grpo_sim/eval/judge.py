"""LLM-judge consistency and accuracy through any OpenAI-compatible chat endpoint.

Works with ``vllm serve MODEL`` (``http://host:8000/v1``), ``trl vllm-serve``'s OpenAI route,
or a hosted API. Only the standard library is used (``urllib``), so no extra dependency.

The prompts (verbatim, ``{...}`` filled in):

:data:`EQUIVALENCE_PROMPT` -- asked once per *unordered* pair of a set's answers (the judge is
treated as symmetric); pairs whose SQuAD-normalised answers are identical count as equivalent
without a call::

    You are checking whether two answers to the same question are informationally equivalent.
    Question: {question}
    Answer A: {answer_a}
    Answer B: {answer_b}
    Do Answer A and Answer B give the same information (the same final answer), ignoring
    differences in wording, length, style and formatting? Reply with exactly one word: yes or no.

:data:`CORRECTNESS_PROMPT` -- asked once per answer that has gold answers::

    You are grading an answer against the gold answer(s) to a question.
    Question: {question}
    Gold answer(s): {gold}
    Candidate answer: {answer}
    Does the candidate answer give the same information as at least one gold answer (it may be
    phrased differently or add correct detail, but must not contradict it)? Reply with exactly
    one word: yes or no.

A reply counts as ``1.0`` when its first word is "yes", ``0.0`` when it is "no" (case and
punctuation ignored; otherwise the first standalone yes/no in the reply decides); anything
else is NaN (left out of the means and counted in ``stats["unparsed"]``).

Requests use ``temperature=0`` and go through :func:`grpo_sim.openai_http.post_json` (the same
client as the paraphrase generator): timeouts, connection errors, malformed replies, HTTP
408/409/425/429 and 5xx are retried with exponential backoff (``backoff * 2**attempt`` seconds,
jittered, capped at ``max_backoff``); other HTTP errors fail at once. Replies are cached on disk
(JSON, written atomically) keyed by ``sha256(model, prompt)``, so a rerun with the same judge
model sends no request twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from ..io import atomic_write_text
from ..openai_http import HTTPRequestError, chat_content, post_json
from ..similarity.text import normalize_answer

__all__ = [
    "CORRECTNESS_PROMPT",
    "EQUIVALENCE_PROMPT",
    "JudgeError",
    "JudgeUnreachableError",
    "LLMJudge",
    "chat_completions_url",
    "parse_verdict",
]

EQUIVALENCE_PROMPT = (
    "You are checking whether two answers to the same question are informationally equivalent.\n"
    "Question: {question}\n"
    "Answer A: {answer_a}\n"
    "Answer B: {answer_b}\n"
    "Do Answer A and Answer B give the same information (the same final answer), ignoring differences in "
    "wording, length, style and formatting? Reply with exactly one word: yes or no."
)

CORRECTNESS_PROMPT = (
    "You are grading an answer against the gold answer(s) to a question.\n"
    "Question: {question}\n"
    "Gold answer(s): {gold}\n"
    "Candidate answer: {answer}\n"
    "Does the candidate answer give the same information as at least one gold answer (it may be phrased "
    "differently or add correct detail, but must not contradict it)? Reply with exactly one word: yes or no."
)


class JudgeError(RuntimeError):
    """The judge endpoint failed (bad reply, HTTP error, retries exhausted)."""


class JudgeUnreachableError(JudgeError):
    """Nothing answers at the judge URL (connection refused, unknown host...)."""


def chat_completions_url(url: str) -> str:
    """``http://h:8000`` / ``http://h:8000/v1`` / a full ``.../chat/completions`` URL ->
    the chat-completions URL."""
    u = url.strip().rstrip("/")
    if not re.match(r"^https?://", u):
        raise JudgeError(f"judge URL {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)")
    if u.endswith("/chat/completions"):
        return u
    if u.endswith("/v1"):
        return u + "/chat/completions"
    return u + "/v1/chat/completions"


_WORD = re.compile(r"[a-z]+")


def parse_verdict(text: str) -> float:
    """1.0 for yes, 0.0 for no, NaN when the reply says neither (see the module docstring)."""
    words = _WORD.findall((text or "").lower())
    if not words:
        return float("nan")
    if words[0] in ("yes", "no"):
        return 1.0 if words[0] == "yes" else 0.0
    for w in words:
        if w in ("yes", "no"):
            return 1.0 if w == "yes" else 0.0
    return float("nan")


class LLMJudge:
    """Ask an OpenAI-compatible chat endpoint yes/no questions about answers.

    Args:
        url: base URL (``http://host:8000`` or ``.../v1``) or the full chat-completions URL.
        model: the model name the server expects (``vllm serve``: the served model name).
        api_key: sent as ``Authorization: Bearer``; default ``$OPENAI_API_KEY`` if set.
        cache_path: JSON file of cached replies (created; reused across runs). ``None``: memory only.
        timeout: seconds per request. max_retries: retries after the first try.
        backoff / max_backoff: exponential backoff in seconds. max_workers: concurrent requests.
        max_tokens: reply budget (a yes/no needs few tokens; raise it for reasoning models).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_workers: int = 8,
        max_tokens: int = 8,
    ):
        if not model:
            raise JudgeError("the LLM judge needs a model name (--judge-model), e.g. the name given to `vllm serve`")
        self.base_url = url
        self.url = chat_completions_url(url)
        self.model = str(model)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_workers = max(1, int(max_workers))
        self.max_tokens = int(max_tokens)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self._dirty = False
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "unparsed": 0}
        if self.cache_path is not None and self.cache_path.is_file():
            try:
                data = json.loads(self.cache_path.read_text(encoding="utf-8"))
                self._cache = dict(data.get("entries", {}))
            except (OSError, ValueError, AttributeError) as exc:
                raise JudgeError(
                    f"judge cache {self.cache_path} is not a readable JSON cache ({exc}); "
                    "delete it to start a fresh cache"
                ) from exc

    # HTTP ------------------------------------------------------------------------------------
    def _key(self, prompt: str) -> str:
        return hashlib.sha256(json.dumps([self.model, prompt], ensure_ascii=False).encode("utf-8")).hexdigest()

    def _count(self, key: str) -> Callable[[], None]:
        def bump() -> None:
            with self._lock:
                self.stats[key] += 1

        return bump

    def _post(self, prompt: str) -> str:
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        try:
            return post_json(
                self.url,
                payload,
                chat_content,
                api_key=self.api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
                backoff=self.backoff,
                max_backoff=self.max_backoff,
                on_request=self._count("requests"),
                on_retry=self._count("retries"),
            )
        except HTTPRequestError as exc:
            if exc.status is not None:
                raise JudgeError(
                    f"LLM judge at {self.url} answered {exc} (check --judge-model and the API key)"
                ) from None
            if exc.unreachable:
                raise JudgeUnreachableError(
                    f"LLM judge endpoint {self.url} is unreachable ({exc}) after {exc.attempts} tries: start an "
                    "OpenAI-compatible server (e.g. `vllm serve MODEL` or `trl vllm-serve`) or fix --judge-url"
                ) from None
            raise JudgeError(f"LLM judge at {self.url} failed after {exc.attempts} tries: {exc}") from None

    # Cached completions ----------------------------------------------------------------------
    def complete(self, prompt: str) -> str:
        """The reply to one prompt (cached)."""
        return self.complete_many([prompt])[0]

    def complete_many(self, prompts: Sequence[str]) -> list[str]:
        """Replies to many prompts: cached ones from the cache, the distinct rest concurrently.

        The first uncached prompt is sent alone, so an unreachable endpoint fails once, fast.
        The cache file is saved after every call (also when a request fails midway).
        """
        keys = [self._key(p) for p in prompts]
        todo: dict[str, str] = {}
        with self._lock:
            for k, p in zip(keys, prompts):
                if k in self._cache:
                    self.stats["cache_hits"] += 1
                elif k not in todo:
                    todo[k] = p
        try:
            items = list(todo.items())
            if items:
                k0, p0 = items[0]
                self._store(k0, self._post(p0))
            if len(items) > 1:
                first_error: BaseException | None = None
                with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
                    futures = [(k, pool.submit(self._post, p)) for k, p in items[1:]]
                    for k, fut in futures:
                        try:
                            self._store(k, fut.result())  # keep every reply that arrived, even after a failure
                        except BaseException as exc:  # noqa: BLE001 - re-raised below
                            first_error = first_error or exc
                if first_error is not None:
                    raise first_error
        finally:
            self.save()
        with self._lock:
            return [self._cache[k] for k in keys]

    def _store(self, key: str, reply: str) -> None:
        with self._lock:
            self._cache[key] = reply
            self._dirty = True

    def save(self) -> None:
        """Write the cache file atomically (no-op without ``cache_path`` or new entries)."""
        if self.cache_path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            payload = json.dumps({"version": 1, "entries": self._cache}, ensure_ascii=False)
            self._dirty = False
        atomic_write_text(self.cache_path, payload)

    # Verdicts --------------------------------------------------------------------------------
    def _verdicts(self, prompts: list[str]) -> list[float]:
        out = [parse_verdict(r) for r in self.complete_many(prompts)]
        with self._lock:
            self.stats["unparsed"] += sum(1 for v in out if v != v)
        return out

    def equivalent_many(self, items: Sequence[tuple[str, str, str]]) -> list[float]:
        """``(question, answer_a, answer_b)`` -> 1.0 equivalent / 0.0 not / NaN unparsed."""
        out: list[float] = [float("nan")] * len(items)
        ask: list[int] = []
        for k, (_, a, b) in enumerate(items):
            if normalize_answer(a) == normalize_answer(b):
                out[k] = 1.0
            else:
                ask.append(k)
        prompts = [
            EQUIVALENCE_PROMPT.format(question=items[k][0], answer_a=items[k][1], answer_b=items[k][2]) for k in ask
        ]
        for k, v in zip(ask, self._verdicts(prompts) if prompts else []):
            out[k] = v
        return out

    def correct_many(self, items: Sequence[tuple[str, str, Sequence[str]]]) -> list[float]:
        """``(question, answer, gold answers)`` -> 1.0 correct / 0.0 wrong / NaN unparsed."""
        prompts = [CORRECTNESS_PROMPT.format(question=q, gold=" | ".join(g), answer=a) for q, a, g in items]
        return self._verdicts(prompts) if prompts else []

    def __repr__(self) -> str:
        return f"LLMJudge(url={self.url!r}, model={self.model!r})"
