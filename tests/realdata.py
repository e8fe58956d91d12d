"""Where the shared real dataset samples are: ``shared/realdata`` beside the checkout (or beside a folder above it,
as for a git worktree). Tests read them in place and skip, with the reason, where they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = tuple(parent / "shared" / "realdata" for parent in ROOT.parents[:3])
REALDATA = next((path for path in CANDIDATES if path.is_dir()), CANDIDATES[0])
needs_realdata = pytest.mark.skipif(
    not REALDATA.is_dir(), reason=f"real dataset samples not found at {' or '.join(map(str, CANDIDATES))}"
)
