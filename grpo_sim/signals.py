"""SIGTERM/SIGINT as a request to stop at the next safe point (a training step, a sweep's poll loop).

The state lives on the instance, so two stoppers (a sweep and the training it runs in-process, or two tests)
never share it. A repeated signal listed in ``abort_on_repeat`` raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Record the first SIGTERM/SIGINT in ``signum`` instead of dying; ``on_signal(signum)`` is told of each."""

    def __init__(self, abort_on_repeat: tuple[int, ...] = STOP_SIGNALS, on_signal: Callable[[int], None] | None = None):
        self.signum: int | None = None
        self.abort_on_repeat = abort_on_repeat
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (e.g. inside a notebook worker): signals stay as they were
                pass

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> "StopSignals":
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum in self.abort_on_repeat:
            raise KeyboardInterrupt
        self.signum = signum
        if self.on_signal is not None:
            self.on_signal(signum)
