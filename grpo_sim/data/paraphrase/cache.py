"""The append-only JSONL cache of generated wordings, keyed by (model, template, question, n)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

# Cache


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
