"""Similarity metrics as fast pairwise-matrix functions, resolved by name.

>>> from grpo_sim.similarity import pairwise
>>> pairwise("bleu2", ["the cat sat"], ["the cat sat down"]).shape
(1, 1)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import embedding, lexical  # noqa: F401  (the built-in metrics register themselves)
from .base import CallableSimilarity, Similarity
from .registry import available, get_similarity, register


def pairwise(metric: Any, texts_a: Sequence[str], texts_b: Sequence[str] | None = None) -> np.ndarray:
    """Matrix of ``sim(a[i], b[j])`` (``texts_b=None``: a against itself), each text encoded once."""
    return get_similarity(metric).matrix(texts_a, texts_b)


__all__ = ["Similarity", "CallableSimilarity", "available", "get_similarity", "pairwise", "register"]
