"""One JSON POST to an OpenAI-compatible server, with retries (stdlib ``urllib``, no extra dependency).

Shared by the paraphrase generator (:class:`grpo_sim.data.paraphrase.OpenAIBackend`) and the LLM
judge (:class:`grpo_sim.eval.judge.LLMJudge`), so both treat a flaky server the same way:

* retried: timeouts, refused/dropped/reset connections, truncated bodies, HTTP 408/409/425/429 and
  every 5xx, and replies that ``parse`` rejects (malformed JSON, no choices);
* not retried: any other HTTP status (a wrong URL, model name or API key does not heal);
* waits ``backoff * 2**attempt`` seconds with +-25 % jitter, capped at ``max_backoff``; a
  ``Retry-After`` header lengthens the wait (still capped).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: HTTP statuses worth retrying besides every 5xx.
RETRYABLE_STATUS = (408, 409, 425, 429)

#: What a ``parse`` callable may raise for a reply it cannot read (retried like a failed request).
PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError)


class HTTPRequestError(Exception):
    """A POST that failed for good.

    ``status``: the HTTP status of an answer that is not retried (``None`` when retries ran out);
    ``unreachable``: the last failure was a connection failure (nothing listening, reset), not a
    timeout or an error reply; ``attempts``: requests sent.
    """

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False, attempts: int = 1):
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable
        self.attempts = attempts


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


def _post_once(url: str, body: bytes, headers: dict[str, str], timeout: float) -> bytes:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = exc.read().decode("utf-8", "replace")[:300].strip() if exc.fp is not None else ""
        except Exception:  # noqa: BLE001 - the detail is only for the message
            detail = ""
        if exc.code in RETRYABLE_STATUS or exc.code >= 500:
            ra = exc.headers.get("Retry-After") if exc.headers else None
            try:
                retry_after = float(ra) if ra is not None else None
            except ValueError:
                retry_after = None
            raise _Retry(f"HTTP {exc.code} {detail}".strip(), retry_after) from None
        raise HTTPRequestError(f"HTTP {exc.code}: {detail or exc.reason}", status=exc.code) from None
    except (TimeoutError, socket.timeout) as exc:
        raise _Retry(f"timed out after {timeout:g} s ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise _Retry(f"timed out after {timeout:g} s") from None
        raise _Retry(f"{exc.reason}", unreachable=True) from None
    except (ConnectionError, OSError, http.client.HTTPException) as exc:  # reset, dropped, truncated body
        raise _Retry(
            f"{type(exc).__name__}: {exc}", unreachable=not isinstance(exc, http.client.HTTPException)
        ) from None


def post_json(
    url: str,
    payload: dict[str, Any],
    parse: Callable[[bytes], T],
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 4,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    on_request: Callable[[], None] | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """POST ``payload`` as JSON to ``url`` and return ``parse(raw_reply_bytes)``, retrying as the
    module docstring says; raises :class:`HTTPRequestError` when it gives up. ``on_request`` /
    ``on_retry`` are called before every request / retry (counters for the callers' statistics)."""
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last: _Retry | None = None
    attempts = 0
    for attempt in range(max_retries + 1):
        if attempt:
            if on_retry is not None:
                on_retry()
            delay = min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25)
            if last is not None and last.retry_after is not None:
                delay = max(delay, last.retry_after)
            time.sleep(min(max_backoff, delay))
        if on_request is not None:
            on_request()
        attempts += 1
        try:
            raw = _post_once(url, body, headers, timeout)
        except _Retry as exc:
            last = exc
            continue
        try:
            return parse(raw)
        except PARSE_ERRORS as exc:
            last = _Retry(f"malformed response ({type(exc).__name__}: {exc}): {raw[:120]!r}")
    assert last is not None
    raise HTTPRequestError(str(last), unreachable=last.unreachable, attempts=attempts)


def chat_content(raw: bytes) -> str:
    """The text of an OpenAI chat-completions reply (``choices[0].message.content``; ``None`` -> "")."""
    content = json.loads(raw.decode("utf-8"))["choices"][0]["message"]["content"]
    if content is not None and not isinstance(content, str):
        raise TypeError("message content is not a string")
    return content or ""


__all__ = ["HTTPRequestError", "PARSE_ERRORS", "RETRYABLE_STATUS", "chat_content", "post_json"]
