"""Paraphrase backends: an OpenAI-compatible endpoint, vLLM in-process, rule-based templates."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Iterable, Sequence

from ...openai_http import HTTPRequestError, post_json
from .rules import template_paraphrases


class GenerationError(RuntimeError):
    """A backend could not produce output for a question (after all retries)."""


# Backends


class TemplateBackend:
    """Rule-based paraphrases (no model); output is a JSON list like an LLM's."""

    name = "template"
    concurrency = 1

    def __init__(self, seed: int | None = 0, wordings: Iterable[Sequence[str]] = ()):
        self.seed = seed
        self.wordings = [list(family) for family in wordings]
        families = (
            f":families={hashlib.sha256(json.dumps(self.wordings).encode()).hexdigest()[:12]}" if self.wordings else ""
        )
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
            return post_json(
                self.endpoint,
                self._payload(prompt),
                self._parse,
                api_key=self.api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
                backoff=self.backoff,
                max_backoff=self.max_backoff,
                on_request=self._count_request,
                on_retry=self._count_retry,
            )
        except HTTPRequestError as exc:
            if exc.status is not None:
                raise GenerationError(
                    f"{exc} from {self.endpoint} (not retried: check the URL, model name and API key)"
                ) from exc
            raise GenerationError(f"gave up after {exc.attempts} attempts: {exc}") from exc


class VLLMBackend:
    """``vllm.LLM`` in-process (install ``grpo-sim[vllm]``); all prompts go to one batched
    ``LLM.chat`` call per chunk."""

    name = "vllm"
    concurrency = 1

    def __init__(
        self,
        model: str,
        temperature: float = 0.8,
        max_tokens: int = 512,
        seed: int = 0,
        llm_kwargs: dict[str, Any] | None = None,
        llm: Any = None,
    ):
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
                raise GenerationError(
                    "the vllm backend needs vLLM (pip install 'grpo-sim[vllm]'); "
                    "or use --backend openai with a running server"
                ) from e
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
