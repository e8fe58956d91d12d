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
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..openai_http import HTTPRequestError, post_json
from .schema import DataError, Paraphrase, ParaphraseSet

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

DEFAULT_TEMPLATE = """Rewrite the question below in {n} different ways. Each rewrite must ask for exactly the same \
information, so that it has the same answer, but use different wording or sentence structure. \
Do not answer the question and do not add facts or hints that are not in it.

Question: {question}

Reply with a JSON list of {n} strings and nothing else."""

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


class GenerationError(RuntimeError):
    """A backend could not produce output for a question (after all retries)."""


# ------------------------------------------------------------------------------------------
# Templates and parsing
# ------------------------------------------------------------------------------------------


def load_template(path: str | os.PathLike[str] | None) -> str:
    """The prompt template in ``path`` (``None``: :data:`DEFAULT_TEMPLATE`); must contain ``{question}``."""
    if path is None:
        return DEFAULT_TEMPLATE
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: template file not found")
    text = p.read_text(encoding="utf-8")
    if "{question}" not in text:
        raise DataError(f"{p}: the template must contain '{{question}}' (where the question goes); "
                        "'{n}' (number of paraphrases) is optional")
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


# ------------------------------------------------------------------------------------------
# Filters
# ------------------------------------------------------------------------------------------

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _norm(s: str) -> str:
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
    q_norm = _norm(question)
    q_ans = _norm_answer(question)
    ignore = {_norm_answer(x) for x in cfg.leak_ignore}
    gold = [a for a in (_norm_answer(x) for x in answers) if a and a not in ignore and not _contains_words(q_ans, a)]
    kept: list[str] = []
    kept_norm: list[str] = [_norm(e) for e in existing if e.strip()]
    for raw in candidates:
        c = " ".join(str(raw).split())
        if not c:
            counts["empty"] += 1
            continue
        if len(c) > cfg.max_chars:
            counts["overlong"] += 1
            continue
        cn = _norm(c)
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


# ------------------------------------------------------------------------------------------
# Template paraphrasing (no LLM)
# ------------------------------------------------------------------------------------------

_WH = ("what", "who", "whom", "whose", "where", "when", "which", "why", "how")
_AUX = ("is", "are", "was", "were", "does", "do", "did", "can", "could", "will", "would", "has", "have", "had",
        "should", "may", "might")
_LOWER_FIRST = set(_WH) | set(_AUX) | {
    "in", "on", "at", "for", "from", "to", "of", "by", "with", "name", "the", "a", "an"
}


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


_NP_STOP = {"and", "or", "but", "why", "how", "what", "who", "which", "when", "where", "for", "to", "from", "with",
            "by", "in", "on", "at", "if", "that", "than"}
_NP_VERBS = re.compile(r"\b(born|located|founded|made|built|called|named|released|written|played|known|based|"
                       r"used|done|given|held|owned|set|shown)\b", re.I)


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
        if (1 <= len(rest_words) <= 10 and not _NP_VERBS.search(rest) and not (set(rest_words) & _NP_STOP)
                and rest_words[-1] not in ("of", "the", "a", "an")):
            out.append(f"Can you tell me {wh} {rest} {aux}?")
            out.append(f"Do you know {wh} {rest} {aux}?")
    # "Who <verb> ...?" (subject question): the embedded form keeps the word order
    if w0 == "who" and w1 and w1 not in _AUX:
        out.append(f"Can you tell me {lowered}?")
        out.append(f"Do you know {lowered}?")
    # "Which N ..." <-> "What N ..." (when the next word is not an auxiliary)
    if w0 in ("which", "what") and w1 and w1 not in _AUX and w1 not in ("of", "one", "ones"):
        out.append(("What" if w0 == "which" else "Which") + body[len(words[0]):] + "?")
    # "In which X ..." -> "In what X ..."
    m = re.match(r"^(in|on|at|from|for|by)\s+which\s+(.+)$", body, re.I)
    if m:
        out.append(f"{m.group(1).capitalize()} what {m.group(2)}?")
    # neutral wrappers: grammatical for any question
    out.extend([
        f"I would like to know: {lowered}?",
        f"Quick question: {lowered}?",
        f"Can you tell me: {lowered}?",
        f"Please answer this question: {body}?",
        f"Here is my question: {lowered}?",
        f"Could you answer this: {lowered}?",
        f"Tell me, {lowered}?",
    ])
    return out


def template_paraphrases(question: str, n: int, seed: int | None = 0,
                         wordings: Iterable[Sequence[str]] = ()) -> list[str]:
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
    seen = {_norm(question)}
    for c in cands:
        k = _norm(c)
        if k and k not in seen:
            seen.add(k)
            out.append(c)
        if len(out) >= n:
            break
    return out


# ------------------------------------------------------------------------------------------
# Backends
# ------------------------------------------------------------------------------------------


class TemplateBackend:
    """Rule-based paraphrases (no model); output is a JSON list like an LLM's."""

    name = "template"
    concurrency = 1

    def __init__(self, seed: int | None = 0, wordings: Iterable[Sequence[str]] = ()):
        self.seed = seed
        self.wordings = [list(family) for family in wordings]
        families = f":families={hashlib.sha256(json.dumps(self.wordings).encode()).hexdigest()[:12]}" \
            if self.wordings else ""
        self.model_id = f"template-rules-v1:seed={seed}{families}"

    def generate(self, question: str, prompt: str, n: int) -> str:
        return json.dumps(template_paraphrases(question, n, seed=self.seed, wordings=self.wordings))


class OpenAIBackend:
    """OpenAI-compatible chat-completions client (stdlib ``urllib``; no extra dependency).

    ``url`` is the API base (``http://host:8000/v1``) or the full ``.../chat/completions``
    (``.../completions`` for ``mode="completions"``) URL. The API key comes from ``api_key`` or
    the ``OPENAI_API_KEY`` environment variable (optional for local servers). Each question is
    one request; ``max_retries`` retries follow ``backoff * 2**attempt`` seconds (capped at
    ``max_backoff``, with +-25 % jitter).
    """

    name = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float = 0.8,
        max_tokens: int = 512,
        concurrency: int = 8,
        mode: str = "chat",
        extra_body: dict[str, Any] | None = None,
        system_prompt: str | None = None,
    ):
        if mode not in ("chat", "completions"):
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        if not url:
            raise ValueError("the openai backend needs a URL (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise ValueError("the openai backend needs a model name (the server's model id)")
        self.mode = mode
        base = url.rstrip("/")
        if base.endswith("/chat/completions") or base.endswith("/completions"):
            self.endpoint = base
        else:
            self.endpoint = base + ("/chat/completions" if mode == "chat" else "/completions")
        self.model = model
        self.model_id = f"openai:{model}"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = max(1, int(concurrency))
        self.extra_body = dict(extra_body or {})
        self.system_prompt = system_prompt
        self.requests = 0  # HTTP requests sent (attempts included)
        self.retries = 0
        self._lock = threading.Lock()

    def _payload(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.mode == "chat":
            msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            body["messages"] = msgs + [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update(self.extra_body)
        return body

    def _parse(self, raw: bytes) -> str:
        choice = json.loads(raw.decode("utf-8"))["choices"][0]
        text = choice["message"]["content"] if self.mode == "chat" else choice["text"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        return text

    def _count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def generate(self, question: str, prompt: str, n: int) -> str:
        try:
            return post_json(self.endpoint, self._payload(prompt), self._parse, api_key=self.api_key,
                             timeout=self.timeout, max_retries=self.max_retries, backoff=self.backoff,
                             max_backoff=self.max_backoff, on_request=self._count_request,
                             on_retry=self._count_retry)
        except HTTPRequestError as exc:
            if exc.status is not None:
                raise GenerationError(f"{exc} from {self.endpoint} (not retried: check the URL, model name and "
                                      "API key)") from exc
            raise GenerationError(f"gave up after {exc.attempts} attempts: {exc}") from exc


class VLLMBackend:
    """``vllm.LLM`` in-process (install ``grpo-sim[vllm]``); all prompts go to one batched
    ``LLM.chat`` call per chunk."""

    name = "vllm"
    concurrency = 1

    def __init__(self, model: str, temperature: float = 0.8, max_tokens: int = 512, seed: int = 0,
                 llm_kwargs: dict[str, Any] | None = None, llm: Any = None):
        if not model and llm is None:
            raise ValueError("the vllm backend needs --model (a local path or hub id)")
        self.model = model
        self.model_id = f"vllm:{model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._llm = llm
        self._llm_kwargs = dict(llm_kwargs or {})

    def prepare(self) -> None:
        """Load the model now (raises :class:`GenerationError` when vLLM is not installed)."""
        self._ensure()

    def _ensure(self) -> Any:
        if self._llm is None:
            try:
                import vllm
            except ImportError as e:
                raise GenerationError("the vllm backend needs vLLM (pip install 'grpo-sim[vllm]'); "
                                      "or use --backend openai with a running server") from e
            self._llm = vllm.LLM(model=self.model, seed=self.seed, **self._llm_kwargs)
        return self._llm

    def generate_batch(self, prompts: Sequence[str]) -> list[str]:
        llm = self._ensure()
        try:
            from vllm import SamplingParams

            params = SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed)
        except ImportError:  # a stand-in llm object (tests)
            params = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        convs = [[{"role": "user", "content": p}] for p in prompts]
        outs = llm.chat(convs, params, use_tqdm=False)
        return [o.outputs[0].text if o.outputs else "" for o in outs]

    def generate(self, question: str, prompt: str, n: int) -> str:
        return self.generate_batch([prompt])[0]


def make_backend(kind: str, url: str | None = None, model: str | None = None, **kwargs: Any) -> Any:
    """A backend by name: ``openai`` (needs ``url`` and ``model``), ``vllm`` (``model``) or ``template``."""
    kind = kind.lower()
    if kind == "openai":
        return OpenAIBackend(url or "", model or "", **kwargs)
    if kind == "vllm":
        allowed = {k: v for k, v in kwargs.items() if k in ("temperature", "max_tokens", "seed", "llm_kwargs", "llm")}
        return VLLMBackend(model or "", **allowed)
    if kind == "template":
        return TemplateBackend(seed=kwargs.get("seed", 0), wordings=kwargs.get("wordings", ()))
    raise ValueError(f"unknown backend {kind!r}: use openai, vllm or template")


# ------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------


def cache_key(model_id: str, template: str, question: str, n: int) -> str:
    h = hashlib.sha256()
    for part in (model_id, template, question, str(n)):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class ParaphraseCache:
    """Append-only JSONL cache of model outputs keyed by (model, template, question, n).

    ``path=None`` keeps the cache in memory. Each :meth:`put` appends one complete line with a
    single ``write`` followed by ``flush``/``fsync`` under a lock; on load, lines that do not
    parse (a torn tail after a crash) are skipped and counted in ``corrupt_lines``; the last
    record for a key wins.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else None
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.corrupt_lines = 0
        self._needs_newline = False
        if self.path is not None and self.path.exists():
            raw = self.path.read_bytes()
            self._needs_newline = bool(raw) and not raw.endswith(b"\n")
            for line in raw.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key = rec["key"]
                    rec["raw"]  # noqa: B018 - required field
                except (ValueError, KeyError, TypeError):
                    self.corrupt_lines += 1
                    continue
                self._data[key] = rec

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        rec = {"key": key, **record}
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            self._data[key] = rec
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                if self._needs_newline:
                    fh.write("\n")
                    self._needs_newline = False
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


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
        lines = [f"near-duplicate filter (character similarity >= {self.near_duplicate_threshold:g}) dropped {total} "
                 f"of {self.candidates} candidates in {len(dropped)} set(s)"
                 + (f", leaving {short} of them short:" if short else ":")]
        order = sorted(dropped, key=lambda k: -dropped[k]["near_duplicates"])
        for set_id in order[:max_sets]:
            v = dropped[set_id]
            lines.append(f"  {set_id}: dropped {v['near_duplicates']} of {v['candidates']}, kept {v['kept']} "
                         f"of {v['needed']} needed")
        if len(order) > max_sets:
            lines.append(f"  ... and {len(order) - max_sets} more sets")
        if short:
            lines.append("  rewrites that only add a prefix to a long question look alike character by character; "
                         f"raise --near-duplicate-threshold above {self.near_duplicate_threshold:g} to keep them, "
                         "or lower it to demand more change")
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
    stats = ParaphraseStats(questions=len(sets),
                            near_duplicate_threshold=(filters or FilterConfig()).near_dup_threshold)
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
        cache.put(key, {"model": model_id, "question": sets[i].question, "n": n,
                        "template_sha256": hashlib.sha256(template.encode()).hexdigest()[:16],
                        "raw": raw, "time": round(time.time(), 3)})

    from .pipeline import progress_bar

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
        stats.per_set[s.set_id] = {"candidates": len(candidates), "kept": len(kept), "needed": need,
                                   "near_duplicates": counts["near_duplicate_of_question"]
                                   + counts["near_duplicate_of_paraphrase"]}
        next_id = max(p.paraphrase_id for p in base) + 1
        new = base + [Paraphrase(paraphrase_id=next_id + k, question=q) for k, q in enumerate(kept)]
        meta = dict(s.metadata)
        meta["paraphrase"] = {"backend": getattr(backend, "name", "backend"), "model": model_id, "n_requested": n,
                              "n_kept": len(kept), "filtered": {r: c for r, c in counts.items() if c}}
        out.append(s.model_copy(update={"paraphrases": new, "metadata": meta}))
    return out, stats


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def unique_questions(sets: Iterable[ParaphraseSet]) -> int:
    return len({s.question for s in sets})
