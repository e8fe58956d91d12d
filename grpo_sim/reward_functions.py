"""Reward functions to mix into a recipe as ``function`` terms (TRL's reward-function signature).

Also an example of a user reward function: any ``my_pkg.module:function`` with this signature works.
"""

from __future__ import annotations

from typing import Any

from .rewards import as_texts


def length_window(completions: list, min_words: int = 1, max_words: int = 64, **kwargs: Any) -> list[float]:
    """1.0 for a completion of ``min_words``..``max_words`` words, else 0.0 (keeps answers short but not empty)."""
    return [float(min_words <= len(text.split()) <= max_words) for text in as_texts(completions)]
