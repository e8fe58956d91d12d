"""Progress on stderr for long data jobs (paraphrasing, encoding a corpus): a bar, or a spinner."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator


def progress_bar(total: int, description: str, show: bool) -> tuple[Callable[..., None], Callable[[], None]]:
    """``(advance(n=1), close())`` of a rich progress bar on stderr; no-ops when ``show`` is false."""
    if not show or total <= 0:
        return (lambda n=1: None), (lambda: None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = prog.add_task(description, total=total)
    prog.start()
    lock = threading.Lock()

    def advance(n: int = 1) -> None:
        with lock:
            prog.advance(task, n)

    return advance, prog.stop


@contextmanager
def spinner(description: str, show: bool) -> Iterator[None]:
    """A rich status spinner on stderr while the block runs (nothing when ``show`` is false)."""
    if not show:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(description):
        yield
