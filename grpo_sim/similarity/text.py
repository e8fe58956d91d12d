"""Text normalisation and token-id helpers shared by the lexical metrics.

* :func:`normalize_answer` is the SQuAD v1.1 answer normalisation (used by ``exact_match`` and
  ``token_f1``).
* :func:`is_repetitive` flags a degenerate answer that repeats a word or phrase (``"The The The"``), with the
  thresholds named (:data:`REPEAT_MIN_COPIES`, :data:`REPEAT_MAX_PHRASE_WORDS`, :data:`REPETITIVE_ANSWER_WARN_RATE`);
  :mod:`grpo_sim.eval.degeneration` builds the evaluation's degeneration figures on it.
* :class:`TokenVocab` maps tokens (any hashable, usually ``str``) to dense integer ids. A metric
  instance owns one vocabulary so that encodings produced by *different* ``encode`` calls of the
  same metric share one id space and can be compared block-wise in compiled code. Its memory is
  bounded (two generations of at most ``max_size`` tokens), so a long training run on ever-new
  text does not grow it without end.
* :class:`NgramBank` turns a batch of integer sequences into sparse "indicator" matrices
  whose products give *clipped* n-gram match counts (see its docstring).
"""

from __future__ import annotations

import re
import string
import weakref
from itertools import chain
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
import scipy.sparse as sp

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 answer normalisation.

    Lower-case, remove every character of :data:`string.punctuation` (ASCII punctuation only;
    e.g. ``"«»"`` or ``"。"`` are kept), remove the articles ``a``/``an``/``the`` as whole words
    (``\\b`` is Unicode-aware), and collapse white space to single spaces (leading/trailing white
    space removed). Identical to the official ``evaluate-v1.1.py`` / ``evaluate-v2.0.py`` function.
    """
    s = s.lower()
    s = s.translate(_PUNCT_TABLE)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


#: a phrase repeated this many times in a row makes an answer repetitive (grpo_sim.eval.degeneration)
REPEAT_MIN_COPIES = 3
#: the longest phrase (in words) whose repetition is looked for
REPEAT_MAX_PHRASE_WORDS = 4
#: warn (degenerate output) when at least this share of the answers is repetitive
REPETITIVE_ANSWER_WARN_RATE = 0.2

_EDGE_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019"


def _words(text: str) -> list[str]:
    words = (w.strip(_EDGE_PUNCT).lower() for w in text.split())
    return [w for w in words if w]


def is_repetitive(
    text: str, min_copies: int = REPEAT_MIN_COPIES, max_phrase_words: int = REPEAT_MAX_PHRASE_WORDS
) -> bool:
    """Whether a phrase of 1..``max_phrase_words`` words occurs ``min_copies`` or more times in a row in ``text``."""
    words = _words(text)
    for size in range(1, max_phrase_words + 1):
        for start in range(0, len(words) - size * min_copies + 1):
            phrase = words[start : start + size]
            if all(words[start + k * size : start + (k + 1) * size] == phrase for k in range(1, min_copies)):
                return True
    return False


def repetitive_answer_rate(answers: Sequence[str]) -> float:
    """The share of ``answers`` that :func:`is_repetitive` flags (0.0 for no answers)."""
    return sum(map(is_repetitive, answers)) / len(answers) if answers else 0.0


class TokenVocab:
    """A token -> id mapping whose memory stays bounded however many distinct tokens it meets.

    Ids are ``0, 1, 2, ...`` in order of first sight until ``max_size`` tokens are held. Then, at the
    start of the next :meth:`ids` call, a new *generation* begins: the current mapping becomes the
    previous one and the one before it is dropped, its ids (those not carried over) are reused for
    new tokens. A token seen in the previous generation keeps its id, so encodings made in the
    same or in adjacent generations share one id space; encodings further apart must not be compared
    (:func:`check_same_id_space` says so). At most about ``2 * max_size`` entries are held, and ids
    stay below about ``2 * max_size`` plus one call's tokens.
    """

    DEFAULT_MAX_SIZE = 1 << 16

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = int(max_size)
        self.generation = 0
        self._ids: dict[Hashable, int] = {}
        self._previous: dict[Hashable, int] = {}
        self._free: list[int] = []  # ids of dropped tokens, handed out again before new ones
        self._next_id = 0

    def __len__(self) -> int:
        """Entries held (current and previous generation)."""
        return len(self._ids) + len(self._previous)

    def _next_generation(self) -> None:
        kept = self._ids
        self._free.extend(i for t, i in self._previous.items() if t not in kept)
        self._previous, self._ids = kept, {}
        self.generation += 1

    def ids(self, tokens: Iterable[Hashable]) -> list[int]:
        """Ids of ``tokens`` (new tokens get fresh ids); one call never spans two generations."""
        if len(self._ids) >= self.max_size:
            self._next_generation()
        tokens = tokens if isinstance(tokens, list) else list(tokens)
        current = self._ids
        get = current.get
        out = [get(t, -1) for t in tokens]  # the common case: every token already has an id
        if -1 in out:
            previous = self._previous.get
            for k, i in enumerate(out):
                if i != -1:
                    continue
                token = tokens[k]
                i = get(token, -1)  # an earlier position of this call may have added it
                if i == -1:
                    i = previous(token, -1)
                    if i == -1:
                        i = self._free.pop() if self._free else self._new_id()
                    current[token] = i
                out[k] = i
        return out

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def encode_batch(self, token_lists: Sequence[Sequence[Hashable]]) -> tuple[np.ndarray, np.ndarray]:
        """All token lists of one call in one vocabulary: ``(flat_ids, offsets)``.

        ``flat_ids[offsets[i]:offsets[i + 1]]`` are the ids of ``token_lists[i]``.
        """
        lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.asarray(self.ids(list(chain.from_iterable(token_lists))), dtype=np.int64)
        return flat, offsets


def check_same_id_space(generation_a: int | None, generation_b: int | None) -> None:
    """Raise if two encodings were made too many vocabulary generations apart to share ids."""
    if generation_a is not None and generation_b is not None and abs(generation_a - generation_b) > 1:
        raise ValueError(
            f"these encodings were made {abs(generation_a - generation_b)} vocabulary generations apart (the "
            "metric's vocabulary is bounded and has since reused ids); encode the texts again to compare them"
        )


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def gather_segments(flat: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``index`` of a ragged array ``(flat, offsets)`` as a new ragged array (vectorised)."""
    index = np.asarray(index, dtype=np.int64)
    starts = offsets[:-1][index]
    lengths = offsets[1:][index] - starts
    new_offsets = offsets_from_lengths(lengths)
    total = int(new_offsets[-1])
    # position k of the output comes from starts[seg(k)] + (k - new_offsets[seg(k)])
    seg = np.repeat(np.arange(len(index), dtype=np.int64), lengths)
    src = starts[seg] + (np.arange(total, dtype=np.int64) - new_offsets[:-1][seg])
    return flat[src], new_offsets


def _dense_ids(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Inverse of ``np.unique(values)`` (dense ids 0..k-1) and ``k``."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64), 0
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.reshape(-1).astype(np.int64, copy=False), len(uniq)


class NgramSpace:
    """The feature tables of one :class:`NgramBank` encoding (shared by its row selections).

    Per order ``n`` (index ``n - 1``): the distinct n-grams as ``(prefix, last)`` where
    ``prefix`` is the id of the n-gram's first ``n - 1`` symbols in the order ``n - 1`` table
    (unused for ``n = 1``) and ``last`` its last symbol; and the indicator features as
    ``(gram, rank)``. Aligning two spaces is therefore two integer sorts per order.
    """

    def __init__(self, gram_prefix, gram_last, feat_gram, feat_rank):
        self.gram_prefix: list[np.ndarray] = gram_prefix
        self.gram_last: list[np.ndarray] = gram_last
        self.feat_gram: list[np.ndarray] = feat_gram
        self.feat_rank: list[np.ndarray] = feat_rank
        # alignments with other spaces: id(other) -> (weakref(other), column maps per order)
        self._align_cache: dict[int, tuple[Any, list]] = {}

    @property
    def orders(self) -> int:
        return len(self.gram_last)

    def align(self, other: "NgramSpace") -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Per order: ``(columns of self's features, columns of other's features, n_joint)``."""
        hit = self._align_cache.get(id(other))
        if hit is not None and hit[0]() is other:
            return hit[1]
        if self.orders != other.orders:
            raise ValueError(f"cannot compare n-gram encodings with {self.orders} and {other.orders} orders")
        out = []
        ja = jb = None
        for k in range(self.orders):
            la, lb = self.gram_last[k], other.gram_last[k]
            if k == 0:
                ka, kb = la, lb
            else:
                base = int(max(la.max(initial=0), lb.max(initial=0))) + 1
                ka = ja[self.gram_prefix[k]] * base + la
                kb = jb[other.gram_prefix[k]] * base + lb
            joint, _ = _dense_ids(np.concatenate([ka, kb]))
            ja, jb = joint[: len(ka)], joint[len(ka) :]
            ra, rb = self.feat_rank[k], other.feat_rank[k]
            width = int(max(ra.max(initial=0), rb.max(initial=0))) + 1
            fa = ja[self.feat_gram[k]] * width + ra
            fb = jb[other.feat_gram[k]] * width + rb
            cols, n_joint = _dense_ids(np.concatenate([fa, fb]))
            out.append((cols[: len(fa)], cols[len(fa) :], n_joint))
        if len(self._align_cache) >= 8:
            self._align_cache.clear()
        self._align_cache[id(other)] = (weakref.ref(other), out)
        return out


class NgramBank:
    """Clipped n-gram match machinery for orders ``1..max_order`` over a batch of sequences.

    An n-gram ``g`` occurring ``c`` times in a sequence becomes the ``c`` features
    ``(g, 0), ..., (g, c - 1)``, each with value 1. For two sequences the dot product of their
    indicator rows is then ``sum_g min(c_a(g), c_b(g))`` -- the clipped match count used by
    BLEU, chrF and token F1 -- so one sparse product per order scores a whole block.

    ``matrices[n - 1]`` is the CSR ``(n_texts, n_features)`` indicator matrix of order ``n``,
    ``totals[n - 1]`` the number of n-grams of each sequence (``max(len - n + 1, 0)``), and
    ``space`` the feature tables that align independently built banks (cached per pair).
    """

    __slots__ = ("matrices", "totals", "space")

    def __init__(self, matrices: list, totals: list, space: NgramSpace):
        self.matrices = matrices
        self.totals = totals
        self.space = space

    def __len__(self) -> int:
        return self.matrices[0].shape[0] if self.matrices else 0

    @classmethod
    def build(cls, flat: np.ndarray, offsets: np.ndarray, max_order: int) -> "NgramBank":
        """Banks for ``flat[offsets[i]:offsets[i + 1]]`` (non-negative int symbols), all in one go."""
        flat = np.asarray(flat, dtype=np.int64)
        n_texts = len(offsets) - 1
        n_sym = len(flat)
        text_of = np.repeat(np.arange(n_texts, dtype=np.int64), np.diff(offsets))
        end = offsets[1:][text_of]
        pos = np.arange(n_sym, dtype=np.int64)
        base = int(flat.max(initial=0)) + 1
        matrices, totals = [], []
        gram_prefix, gram_last, feat_gram, feat_rank = [], [], [], []
        pos_gid = np.zeros(0, dtype=np.int64)
        for n in range(1, max_order + 1):
            starts = pos[pos + n <= end]
            rows = text_of[starts]
            m = len(starts)
            totals.append(np.bincount(rows, minlength=n_texts).astype(np.int64))
            last = flat[starts + (n - 1)]
            prefix = pos_gid[starts] if n > 1 else np.zeros(m, dtype=np.int64)
            if m == 0:
                empty = np.zeros(0, dtype=np.int64)
                gram_prefix.append(empty), gram_last.append(empty), feat_gram.append(empty), feat_rank.append(empty)
                matrices.append(sp.csr_matrix((n_texts, 0), dtype=np.int64))
                pos_gid = np.zeros(n_sym, dtype=np.int64)
                continue
            # one stable sort groups equal n-grams; inside a group occurrences stay in position
            # order, hence sorted by text
            key = prefix * base + last
            order = np.argsort(key, kind="stable")
            sk = key[order]
            new_gram = np.ones(m, dtype=bool)
            new_gram[1:] = sk[1:] != sk[:-1]
            gid_sorted = np.cumsum(new_gram) - 1
            gid = np.empty(m, dtype=np.int64)
            gid[order] = gid_sorted
            first = order[new_gram]
            gram_prefix.append(prefix[first])
            gram_last.append(last[first])
            n_grams = len(first)
            pos_gid = np.zeros(n_sym, dtype=np.int64)
            pos_gid[starts] = gid
            # occurrence rank of each occurrence among the same n-gram's occurrences in its text
            rows_sorted = rows[order]
            new_group = new_gram.copy()
            new_group[1:] |= rows_sorted[1:] != rows_sorted[:-1]
            idx = np.arange(m, dtype=np.int64)
            rank_sorted = idx - np.maximum.accumulate(np.where(new_group, idx, 0))
            # features of n-gram g: (g, 0..maxcount(g) - 1), numbered consecutively
            max_count = np.zeros(n_grams, dtype=np.int64)
            np.maximum.at(max_count, gid_sorted, rank_sorted + 1)
            feat_start = np.zeros(n_grams, dtype=np.int64)
            np.cumsum(max_count[:-1], out=feat_start[1:])
            n_feat = int(feat_start[-1] + max_count[-1])
            fid = np.empty(m, dtype=np.int64)
            fid[order] = feat_start[gid_sorted] + rank_sorted
            f_gram = np.repeat(np.arange(n_grams, dtype=np.int64), max_count)
            feat_gram.append(f_gram)
            feat_rank.append(np.arange(n_feat, dtype=np.int64) - feat_start[f_gram])
            # rows are non-decreasing in position order: build the CSR arrays directly
            indptr = np.zeros(n_texts + 1, dtype=np.int64)
            np.cumsum(totals[-1], out=indptr[1:])
            matrices.append(sp.csr_matrix((np.ones(m, dtype=np.int64), fid, indptr), shape=(n_texts, n_feat)))
        return cls(matrices, totals, NgramSpace(gram_prefix, gram_last, feat_gram, feat_rank))

    def select(self, index: np.ndarray) -> "NgramBank":
        index = np.asarray(index, dtype=np.int64)
        return NgramBank([m[index] for m in self.matrices], [t[index] for t in self.totals], self.space)

    def _aligned(self, other: "NgramBank") -> list[tuple[sp.csr_matrix, sp.csr_matrix]]:
        if self.space is other.space:
            return list(zip(self.matrices, other.matrices))
        out = []
        for a, b, (ca, cb, n_joint) in zip(self.matrices, other.matrices, self.space.align(other.space)):
            a2 = sp.csr_matrix((a.data, ca[a.indices], a.indptr), shape=(a.shape[0], n_joint))
            b2 = sp.csr_matrix((b.data, cb[b.indices], b.indptr), shape=(b.shape[0], n_joint))
            out.append((a2, b2))
        return out

    def matches(self, other: "NgramBank") -> list[np.ndarray]:
        """Per order, the dense ``(len(self), len(other))`` int64 matrix of clipped matches."""
        return [np.asarray((a @ b.T).toarray(), dtype=np.int64) for a, b in self._aligned(other)]

    def matches_paired(self, other: "NgramBank") -> list[np.ndarray]:
        """Per order, clipped matches of row k with row k."""
        return [np.asarray(a.multiply(b).sum(axis=1), dtype=np.int64).reshape(-1) for a, b in self._aligned(other)]
