"""The similarity protocol every metric implements.

A metric turns each text into an *encoding* exactly once (tokens, n-gram count vectors,
embeddings...), then scores whole blocks of encodings at once in compiled code. Rewards
encode a batch once and then ask for per-set blocks or for sampled pairs only.

Orientation: ``block(a, b)[i, j] = sim(a[i], b[j])`` where ``a[i]`` plays the role of the
*hypothesis* (the completion being rewarded) and ``b[j]`` the *reference*. Asymmetric metrics
(BLEU's brevity penalty, chrF's beta) depend on that orientation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np


class Similarity(ABC):
    """A text similarity in [0, 1] computed as whole matrices.

    Subclasses implement :meth:`encode`, :meth:`select`, :meth:`block` and may override
    :meth:`paired` with something faster than the generic row-by-row fallback.
    """

    #: registry spec that rebuilds this metric (e.g. ``"bleu2"``, ``"embedding:model=..."``)
    name: str = "similarity"
    #: True when sim(a, b) == sim(b, a) for all texts
    symmetric: bool = False

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> Any:
        """Encode ``texts`` once; the result is only ever passed back to this metric."""

    @abstractmethod
    def select(self, encoded: Any, index: np.ndarray) -> Any:
        """Rows ``index`` of an encoding (an encoding of ``[texts[i] for i in index]``)."""

    @abstractmethod
    def block(self, enc_a: Any, enc_b: Any) -> np.ndarray:
        """Matrix ``M[i, j] = sim(a[i], b[j])`` of shape (len(a), len(b)), dtype float64."""

    def paired(self, enc_a: Any, enc_b: Any) -> np.ndarray:
        """Element-wise ``sim(a[k], b[k])`` for encodings of equal length."""
        n = _length(self, enc_a)
        out = np.empty(n, dtype=np.float64)
        for k in range(n):
            idx = np.array([k])
            out[k] = self.block(self.select(enc_a, idx), self.select(enc_b, idx))[0, 0]
        return out

    def size(self, encoded: Any) -> int:
        """Number of texts in an encoding."""
        return len(encoded)

    # Convenience entry points -------------------------------------------------------------
    def matrix(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None) -> np.ndarray:
        """Pairwise matrix; ``texts_b=None`` compares ``texts_a`` with itself (encoded once)."""
        enc_a = self.encode(list(texts_a))
        enc_b = enc_a if texts_b is None else self.encode(list(texts_b))
        return self.block(enc_a, enc_b)

    def pairs(self, texts_a: Sequence[str], texts_b: Sequence[str]) -> np.ndarray:
        """Element-wise similarity of two equally long lists of texts."""
        if len(texts_a) != len(texts_b):
            raise ValueError(f"pairs() needs equally long lists, got {len(texts_a)} and {len(texts_b)}")
        return self.paired(self.encode(list(texts_a)), self.encode(list(texts_b)))

    def __call__(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None) -> np.ndarray:
        return self.matrix(texts_a, texts_b)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _length(metric: Similarity, encoded: Any) -> int:
    return metric.size(encoded)


class CallableSimilarity(Similarity):
    """Wraps a user function ``fn(texts_a, texts_b) -> matrix`` as a :class:`Similarity`.

    The encoding is the text itself. ``paired`` calls the function once per distinct left text
    with only the right texts it is paired with, so sampled (relaxed) rewards cost O(pairs)
    calls-worth of work, not a full matrix.
    """

    def __init__(self, fn: Callable[[list[str], list[str]], Any], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        arr = np.empty(len(texts), dtype=object)
        arr[:] = list(texts)
        return arr

    def select(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index, dtype=np.int64)]

    def block(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        out = np.asarray(self.fn(list(enc_a), list(enc_b)), dtype=np.float64)
        if out.shape != (len(enc_a), len(enc_b)):
            raise ValueError(
                f"similarity {self.name!r} returned shape {out.shape}, expected "
                f"({len(enc_a)}, {len(enc_b)}): a similarity callable must return the full "
                "len(a) x len(b) matrix"
            )
        return out

    def paired(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        out = np.empty(len(enc_a), dtype=np.float64)
        # group by left text: one call per distinct hypothesis with its references
        groups: dict[str, list[int]] = {}
        for k, text in enumerate(enc_a):
            groups.setdefault(text, []).append(k)
        for text, ks in groups.items():
            row = self.block(self.encode([text]), enc_b[ks])[0]
            out[ks] = row
        return out
