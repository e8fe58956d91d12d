"""Lexical similarities (BLEU, ROUGE-L, exact match, token F1, chrF) as vectorised blocks.

Every metric tokenises each text exactly once in :meth:`encode` and maps tokens to integer ids
in a vocabulary owned by the metric instance (so encodings from separate ``encode`` calls of the
same instance can be compared). Whole blocks are then scored in compiled code:

* clipped n-gram matches ``sum_g min(c_a(g), c_b(g))`` for *all* pairs of a block come from one
  sparse matrix product per n-gram order (:class:`~grpo_sim.similarity.text.NgramBank`);
* longest common subsequences come from :func:`rapidfuzz.process.cdist` with
  :data:`rapidfuzz.distance.LCSseq.similarity` over token-id strings.

The Python-level work is O(total tokens) per ``encode`` call and O(orders) per block; there is
no Python loop over pairs. Encodings are only valid for the metric instance that produced them,
and only next to encodings made close in time: the instance's vocabulary is bounded (see
:class:`~grpo_sim.similarity.text.TokenVocab`), and comparing encodings made too far apart raises.
Blocks between two *separately* encoded batches first align their n-gram tables (a few integer
sorts per order, cached per pair of encodings); blocks between row selections of one encoding
skip that step.

Orientation follows :mod:`grpo_sim.similarity.base`: ``block(a, b)[i, j]`` scores ``a[i]`` as
the hypothesis against ``b[j]`` as the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .base import Similarity
from .registry import register, register_alias
from .text import NgramBank, TokenVocab, check_same_id_space, normalize_answer, offsets_from_lengths

__all__ = [
    "BLEUSimilarity",
    "RougeLSimilarity",
    "ExactMatchSimilarity",
    "TokenF1Similarity",
    "CHRFSimilarity",
    "rouge_tokenize",
]


def _spec(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    changed = [(k, v) for k, v in params.items() if defaults.get(k, object()) != v]
    if not changed:
        return name

    def fmt(v: Any) -> str:
        return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    return name + ":" + ",".join(f"{k}={fmt(v)}" for k, v in changed)


@dataclass
class NgramEncoding:
    """Encoding shared by the n-gram metrics: n-gram banks (orders in sequence) + lengths."""

    banks: list[NgramBank]
    lengths: np.ndarray  # tokens (BLEU, token F1) or non-space characters (chrF) per text
    generation: int | None = None  # of the metric's TokenVocab; None when no vocabulary ids are involved

    def __len__(self) -> int:
        return len(self.lengths)

    def select(self, index: np.ndarray) -> "NgramEncoding":
        index = np.asarray(index, dtype=np.int64)
        return NgramEncoding([b.select(index) for b in self.banks], self.lengths[index], self.generation)

    @property
    def totals(self) -> list[np.ndarray]:
        """n-grams per text, for every order of every bank in sequence."""
        return [t for b in self.banks for t in b.totals]

    def matches(self, other: "NgramEncoding") -> list[np.ndarray]:
        check_same_id_space(self.generation, other.generation)
        return [m for a, b in zip(self.banks, other.banks) for m in a.matches(b)]

    def matches_paired(self, other: "NgramEncoding") -> list[np.ndarray]:
        if len(self) != len(other):
            raise ValueError(f"paired() needs encodings of equal length, got {len(self)} and {len(other)}")
        check_same_id_space(self.generation, other.generation)
        return [m for a, b in zip(self.banks, other.banks) for m in a.matches_paired(b)]


def _pair_lengths(la: np.ndarray, lb: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    if paired:
        if len(la) != len(lb):
            raise ValueError(f"paired() needs encodings of equal length, got {len(la)} and {len(lb)}")
        return la, lb
    return la[:, None], lb[None, :]


def _f1(common: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """``2PR/(P+R)`` with ``P = common/la``, ``R = common/lb``; 0 where ``common == 0``.

    Same floating-point operations, in the same order, as rouge_score / the SQuAD script.
    """
    common = common.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = common / la
        r = common / lb
        f = 2 * p * r / (p + r)
    return np.where((common > 0) & (la > 0) & (lb > 0), f, 0.0)


# --------------------------------------------------------------------------------------------
# BLEU
# --------------------------------------------------------------------------------------------


def _bleu_scores(correct: list[np.ndarray], hyp_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """sacrebleu ``compute_bleu`` (smooth 'exp', effective_order=True), vectorised, in [0, 1]."""
    shape = np.broadcast_shapes(correct[0].shape, np.shape(hyp_len), np.shape(ref_len))
    hl = np.broadcast_to(np.asarray(hyp_len, dtype=np.float64), shape)
    rl = np.broadcast_to(np.asarray(ref_len, dtype=np.float64), shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(hl < rl, np.where(hl > 0, np.exp(1 - rl / hl), 0.0), 1.0)
        smooth = np.ones(shape)
        logsum = np.zeros(shape)
        eff = np.zeros(shape)
        for k, c in enumerate(correct):
            total = np.maximum(hl - k, 0.0)  # hypothesis n-grams of order k + 1
            active = total > 0  # sacrebleu breaks at the first order with no n-grams
            c = np.broadcast_to(c, shape).astype(np.float64)
            missed = active & (c == 0)
            smooth = np.where(missed, smooth * 2, smooth)
            prec = np.where(c == 0, 100.0 / (smooth * total), 100.0 * c / total)
            logsum = logsum + np.where(active, np.log(np.where(active, prec, 1.0)), 0.0)
            eff = eff + active
        score = bp * np.exp(logsum / np.maximum(eff, 1.0))
    # "early stop if there are no matches": no unigram match means no match at all
    # exp(log(100)) / 100 can round to 1 + 2e-16: clip into [0, 1]
    return np.where(np.broadcast_to(correct[0], shape) > 0, np.minimum(score / 100.0, 1.0), 0.0)


# sacrebleu's 13a tokenizer spends most of its time in its first regex, which puts spaces around
# every character of a fixed ASCII class (white space included) through re template expansion.
# str.translate does exactly that substitution in C; the remaining rules are sacrebleu's own regexes.
_13A_PUNCT = {ord(c): f" {c} " for c in "{|}~[\\]^_`" + ' !"#$%&()*+:;<=>?@/'}
_13A_RULES = [
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line: str) -> str:
    """sacrebleu's ``Tokenizer13a`` (mteval-v13a) output, computed faster; parity is tested."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} ".translate(_13A_PUNCT)
    if "." in line or "," in line:  # the rules below cannot match otherwise
        line = _13A_RULES[0][0].sub(_13A_RULES[0][1], line)
        line = _13A_RULES[1][0].sub(_13A_RULES[1][1], line)
    if "-" in line:
        line = _13A_RULES[2][0].sub(_13A_RULES[2][1], line)
    return " ".join(line.split())


class BLEUSimilarity(Similarity):
    """Sentence BLEU exactly as sacrebleu computes it, divided by 100.

    ``sim(h, r) == sacrebleu.metrics.BLEU(max_ngram_order=n, effective_order=True,
    tokenize=tokenize, lowercase=lowercase).sentence_score(h, [r]).score / 100``:

    * each text is optionally lower-cased, right-stripped and tokenised with sacrebleu's own
      tokenizer object (default ``13a``), then split on white space;
    * clipped n-gram precisions ``p_k = matches_k / hyp_ngrams_k`` for ``k = 1..n``;
    * 'exp' smoothing (NIST/mteval): the ``m``-th order with zero matches gets
      ``p_k = 1 / (2**m * hyp_ngrams_k)``;
    * effective order: orders with no hypothesis n-gram (hypothesis shorter than ``k`` tokens)
      are left out of the geometric mean;
    * brevity penalty ``exp(1 - |r| / |h|)`` when ``|h| < |r|``;
    * score 0 when no unigram matches (sacrebleu's early stop);
    * values are clipped to at most 1.0 (``exp(log(100)) / 100`` may round to ``1 + 2e-16``).

    Edge cases: an empty or whitespace-only hypothesis or reference scores 0 (also when both
    are empty -- sacrebleu's convention); non-ASCII text is tokenised by the 13a rules
    (punctuation split, no lower-casing unless ``lowercase=True``), so e.g. Chinese without spaces
    is one token per white-space-separated run; very long texts are not truncated (encode cost
    is linear in length, block cost linear in the number of distinct n-grams).

    Not symmetric (brevity penalty). ``tokenize=None`` means sacrebleu's ``'none'`` tokenizer
    (the spec string ``"bleu:tokenize=none"`` parses to ``None``).
    """

    symmetric = False

    def __init__(self, n: int = 4, tokenize: str | None = "13a", lowercase: bool = False):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= 4:
            raise ValueError(f"bleu: n must be an integer in 1..4, got {n!r}")
        from sacrebleu.metrics.bleu import BLEU

        self.n = int(n)
        self.tokenize = "none" if tokenize is None else str(tokenize)
        self.lowercase = bool(lowercase)
        try:
            self._tokenizer = tokenize_13a if self.tokenize == "13a" else BLEU(tokenize=self.tokenize).tokenizer
        except KeyError as exc:
            raise ValueError(f"bleu: unknown tokenize={tokenize!r}; sacrebleu knows {sorted(BLEU.TOKENIZERS)}") from exc
        self._vocab = TokenVocab()
        if self.tokenize == "13a" and not self.lowercase:
            self.name = f"bleu{self.n}"
        else:
            self.name = _spec(
                "bleu",
                {"n": self.n, "tokenize": self.tokenize, "lowercase": self.lowercase},
                {"tokenize": "13a", "lowercase": False},
            )

    def tokens(self, text: str) -> list[str]:
        """The tokens sacrebleu's BLEU uses for ``text``."""
        if self.lowercase:
            text = text.lower()
        return self._tokenizer(text.rstrip()).split()

    def encode(self, texts: Sequence[str]) -> NgramEncoding:
        flat, offsets = self._vocab.encode_batch([self.tokens(t) for t in texts])
        return NgramEncoding([NgramBank.build(flat, offsets, self.n)], np.diff(offsets), self._vocab.generation)

    def select(self, encoded: NgramEncoding, index: np.ndarray) -> NgramEncoding:
        return encoded.select(index)

    def size(self, encoded: NgramEncoding) -> int:
        return len(encoded)

    def block(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=False)
        return _bleu_scores(enc_a.matches(enc_b), la, lb)

    def paired(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=True)
        return _bleu_scores(enc_a.matches_paired(enc_b), la, lb)


register("bleu")(BLEUSimilarity)
for _n in (1, 2, 3, 4):
    register_alias(f"bleu{_n}", "bleu", n=_n)


# --------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------

_NON_ALPHANUM_RE = re.compile(r"[^a-z0-9]+")
_SPACES_RE = re.compile(r"\s+")
_VALID_TOKEN_RE = re.compile(r"^[a-z0-9]+$")


def rouge_tokenize(text: str, stemmer: Any = None) -> list[str]:
    """rouge_score 0.1.2's ``tokenize.tokenize`` (the ``DefaultTokenizer``), reimplemented.

    Lower-case (Python's Unicode ``str.lower``), replace every run of characters outside
    ``[a-z0-9]`` by a space, split, optionally Porter-stem tokens longer than 3 characters, and
    keep only ``[a-z0-9]+`` tokens. Non-ASCII letters are therefore *dropped* (``"日本語"`` has
    no tokens, ``"café"`` becomes ``["caf"]``), except characters whose lower case is ASCII
    (``"\\u212a"`` KELVIN SIGN -> ``"k"``).
    """
    text = _NON_ALPHANUM_RE.sub(" ", text.lower())
    if stemmer is None:
        # after the substitution, whitespace-split tokens are exactly the valid ones
        return text.split()
    tokens = _SPACES_RE.split(text)
    tokens = [stemmer(x) if len(x) > 3 else x for x in tokens]
    return [x for x in tokens if _VALID_TOKEN_RE.match(x)]


@dataclass
class SeqEncoding:
    """Token-id sequences, as ``str`` (one code point per token id) or as int lists."""

    seqs: list
    lengths: np.ndarray
    generation: int | None = None  # of the metric's TokenVocab

    def __len__(self) -> int:
        return len(self.lengths)

    def select(self, index: np.ndarray) -> "SeqEncoding":
        index = np.asarray(index, dtype=np.int64)
        seqs = self.seqs
        return SeqEncoding([seqs[i] for i in index.tolist()], self.lengths[index], self.generation)


_MAX_CODEPOINT = 0x10FFFF - 0x800


def _ids_to_strings(flat: np.ndarray, offsets: np.ndarray) -> list:
    """One string per sequence, token id -> one code point (surrogate range skipped)."""
    if len(flat) and int(flat.max()) > _MAX_CODEPOINT:  # > 1.1M distinct tokens: int lists
        return [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    cps = (flat + np.where(flat >= 0xD800, 0x800, 0)).astype("<u4")
    big = cps.tobytes().decode("utf-32-le")
    return [big[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


class RougeLSimilarity(Similarity):
    """ROUGE-L F-measure exactly as ``rouge_score`` 0.1.2 computes it.

    ``sim(h, r) == RougeScorer(["rougeL"], use_stemmer=use_stemmer).score(target=r,
    prediction=h)["rougeL"].fmeasure``: with ``L = LCS(tokens(h), tokens(r))`` (longest common
    token subsequence), ``P = L / |h|``, ``R = L / |r|``, ``F = 2PR / (P + R)`` (0 if ``L == 0``).

    Tokenisation is :func:`rouge_tokenize` (a faithful copy of rouge_score's default tokenizer,
    so rouge-score itself is not needed at run time): ASCII ``[a-z0-9]`` words only, optional
    Porter stemming (``use_stemmer=True`` needs ``nltk``).

    Edge cases: if either side has no tokens the score is 0 -- this includes empty strings,
    whitespace/punctuation-only strings and **text written entirely in non-ASCII scripts**
    (Chinese, Cyrillic, Greek... have no ``[a-z0-9]`` characters, so e.g. two identical Chinese
    sentences score 0; accented letters are dropped from inside words). Very long texts are not
    truncated; the LCS is computed by rapidfuzz's bit-parallel algorithm in
    ``O(|h| * |r| / 64)`` word operations per pair.

    Symmetric (swapping h and r swaps P and R).
    """

    symmetric = True

    def __init__(self, use_stemmer: bool = False):
        self.use_stemmer = bool(use_stemmer)
        self._stem = None
        if self.use_stemmer:
            try:
                from nltk.stem import porter
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "rouge_l with use_stemmer=True needs nltk (pip install nltk) for the Porter "
                    "stemmer that rouge_score uses; use_stemmer=False needs nothing extra"
                ) from exc
            stemmer = porter.PorterStemmer()
            cache: dict[str, str] = {}

            def stem(word: str) -> str:
                out = cache.get(word)
                if out is None:
                    if len(cache) >= TokenVocab.DEFAULT_MAX_SIZE:  # a cache: bounded like the vocabularies
                        cache.clear()
                    out = cache[word] = stemmer.stem(word)
                return out

            self._stem = stem
        self._vocab = TokenVocab()
        self.name = _spec("rouge_l", {"use_stemmer": self.use_stemmer}, {"use_stemmer": False})

    def tokens(self, text: str) -> list[str]:
        return rouge_tokenize(text, self._stem)

    def encode(self, texts: Sequence[str]) -> SeqEncoding:
        flat, offsets = self._vocab.encode_batch([self.tokens(t) for t in texts])
        return SeqEncoding(_ids_to_strings(flat, offsets), np.diff(offsets), self._vocab.generation)

    def select(self, encoded: SeqEncoding, index: np.ndarray) -> SeqEncoding:
        return encoded.select(index)

    def size(self, encoded: SeqEncoding) -> int:
        return len(encoded)

    @staticmethod
    def _lcs(a: list, b: list, paired: bool) -> np.ndarray:
        from rapidfuzz.distance import LCSseq
        from rapidfuzz.process import cdist, cpdist

        if paired:
            if not len(a):
                return np.zeros(0, dtype=np.int64)
            return np.asarray(cpdist(a, b, scorer=LCSseq.similarity, dtype=np.int64), dtype=np.int64)
        if not len(a) or not len(b):
            return np.zeros((len(a), len(b)), dtype=np.int64)
        return np.asarray(cdist(a, b, scorer=LCSseq.similarity, dtype=np.int64), dtype=np.int64)

    def block(self, enc_a: SeqEncoding, enc_b: SeqEncoding) -> np.ndarray:
        check_same_id_space(enc_a.generation, enc_b.generation)
        lcs = self._lcs(enc_a.seqs, enc_b.seqs, paired=False)
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=False)
        return _f1(lcs, la, lb)

    def paired(self, enc_a: SeqEncoding, enc_b: SeqEncoding) -> np.ndarray:
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=True)
        check_same_id_space(enc_a.generation, enc_b.generation)
        return _f1(self._lcs(enc_a.seqs, enc_b.seqs, paired=True), la, lb)


register("rouge_l")(RougeLSimilarity)


# --------------------------------------------------------------------------------------------
# SQuAD exact match and token F1
# --------------------------------------------------------------------------------------------


class ExactMatchSimilarity(Similarity):
    """SQuAD exact match: 1.0 if ``normalize_answer(h) == normalize_answer(r)`` else 0.0.

    :func:`~grpo_sim.similarity.text.normalize_answer` lower-cases, removes ASCII punctuation
    and the articles a/an/the, and collapses white space. Edge cases: two empty or
    whitespace/punctuation/article-only strings both normalise to ``""`` and match (1.0);
    non-ASCII text is compared as is after Unicode lower-casing (``"Ünï"`` == ``"ünï"``, but no
    accent folding); no length limit (cost: one normalisation per text, then an id comparison).
    """

    symmetric = True
    name = "exact_match"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # the normalised strings themselves (an object array): an id per distinct answer would grow a
        # vocabulary by one entry per distinct completion ever scored
        out = np.empty(len(texts), dtype=object)
        out[:] = [normalize_answer(t) for t in texts]
        return out

    def select(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index, dtype=np.int64)]

    def block(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        return (enc_a[:, None] == enc_b[None, :]).astype(np.float64)

    def paired(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        if len(enc_a) != len(enc_b):
            raise ValueError(f"paired() needs encodings of equal length, got {len(enc_a)} and {len(enc_b)}")
        return (enc_a == enc_b).astype(np.float64)


register("exact_match")(ExactMatchSimilarity)


class TokenF1Similarity(Similarity):
    """SQuAD token F1 on normalised tokens.

    Tokens are ``normalize_answer(text).split()``; ``common`` is the multiset overlap
    ``sum_w min(c_h(w), c_r(w))``; ``P = common / |h|``, ``R = common / |r|``,
    ``F1 = 2PR / (P + R)`` and 0 when ``common == 0``.

    Edge rule (SQuAD v2 convention): if either side has no tokens (empty, whitespace-only, or
    only punctuation/articles), F1 is 1.0 when *both* are token-free and 0.0 otherwise.
    Non-ASCII words are ordinary tokens (Unicode lower-casing; ASCII punctuation only is
    removed, so ``"日本語。"`` stays one token). No truncation; cost is one sparse product per
    block over the distinct words.
    """

    symmetric = True
    name = "token_f1"

    def __init__(self) -> None:
        self._vocab = TokenVocab()

    def encode(self, texts: Sequence[str]) -> NgramEncoding:
        flat, offsets = self._vocab.encode_batch([normalize_answer(t).split() for t in texts])
        return NgramEncoding([NgramBank.build(flat, offsets, 1)], np.diff(offsets), self._vocab.generation)

    def select(self, encoded: NgramEncoding, index: np.ndarray) -> NgramEncoding:
        return encoded.select(index)

    def size(self, encoded: NgramEncoding) -> int:
        return len(encoded)

    @staticmethod
    def _score(common: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
        f1 = _f1(common, la, lb)
        empty_a, empty_b = la == 0, lb == 0
        return np.where(empty_a | empty_b, (empty_a & empty_b).astype(np.float64), f1)

    def block(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=False)
        return self._score(enc_a.matches(enc_b)[0], la, lb)

    def paired(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        la, lb = _pair_lengths(enc_a.lengths, enc_b.lengths, paired=True)
        return self._score(enc_a.matches_paired(enc_b)[0], la, lb)


register("token_f1")(TokenF1Similarity)


# --------------------------------------------------------------------------------------------
# chrF
# --------------------------------------------------------------------------------------------

_CHRF_PUNCTS = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _chrf_words(sent: str) -> list[str]:
    """sacrebleu ``CHRF._remove_punctuation``: split one leading *or* trailing punctuation mark."""
    out: list[str] = []
    for w in sent.split():
        if len(w) == 1:
            out.append(w)
        elif w[-1] in _CHRF_PUNCTS:
            out += [w[:-1], w[-1]]
        elif w[0] in _CHRF_PUNCTS:
            out += [w[0], w[1:]]
        else:
            out.append(w)
    return out


def _chrf_scores(stats: list[tuple[np.ndarray, np.ndarray, np.ndarray]], beta: int) -> np.ndarray:
    """sacrebleu ``CHRF._compute_f_score`` with ``eps_smoothing=False``, vectorised, in [0, 1]."""
    factor = beta**2
    shape = np.broadcast_shapes(*(np.shape(x) for s in stats for x in s))
    avg_prec = np.zeros(shape)
    avg_rec = np.zeros(shape)
    eff = np.zeros(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for n_hyp, n_ref, match in stats:
            active = np.broadcast_to((n_hyp > 0) & (n_ref > 0), shape)
            match = match.astype(np.float64)
            avg_prec = avg_prec + np.where(active, match / n_hyp, 0.0)
            avg_rec = avg_rec + np.where(active, match / n_ref, 0.0)
            eff = eff + active
        avg_prec = np.where(eff > 0, avg_prec / eff, 0.0)
        avg_rec = np.where(eff > 0, avg_rec / eff, 0.0)
        score = (1 + factor) * avg_prec * avg_rec
        score = score / (factor * avg_prec + avg_rec)
    return np.where(avg_prec + avg_rec != 0, np.clip(score, 0.0, 1.0), 0.0)


class CHRFSimilarity(Similarity):
    """chrF / chrF++ exactly as sacrebleu computes it (``eps_smoothing=False``), divided by 100.

    ``sim(h, r) == sacrebleu.metrics.CHRF(char_order, word_order, beta, lowercase=lowercase)
    .sentence_score(h, [r]).score / 100``: character n-grams of orders ``1..char_order`` on the
    text with all white space removed, plus (chrF++, ``word_order > 0``) word n-grams of orders
    ``1..word_order`` on white-space words with one leading or trailing ASCII punctuation mark
    split off. For each order with at least one n-gram on *both* sides, clipped precision and
    recall are computed; they are averaged over those orders ("effective order") and combined
    as ``F_beta = (1 + beta^2) P R / (beta^2 P + R)``.

    Edge cases: if no order has n-grams on both sides (an empty or whitespace-only text on
    either side) the score is 0, also for two empty strings. Short texts only use the orders
    they have (a 3-character text uses orders 1..3). Non-ASCII text works on Unicode code
    points (no normalisation: composed and decomposed accents differ). No truncation; cost is
    linear in characters x ``char_order`` per encode plus one sparse product per order.

    Not symmetric (beta weighs recall).
    """

    symmetric = False

    def __init__(self, char_order: int = 6, word_order: int = 0, beta: int = 2, lowercase: bool = False):
        if int(char_order) < 0 or int(word_order) < 0 or int(char_order) + int(word_order) < 1:
            raise ValueError(
                f"chrf: need char_order >= 0, word_order >= 0 and at least one order, got "
                f"char_order={char_order}, word_order={word_order}"
            )
        self.char_order = int(char_order)
        self.word_order = int(word_order)
        self.beta = beta
        self.lowercase = bool(lowercase)
        self._words = TokenVocab()
        self.name = _spec(
            "chrf",
            {"char_order": self.char_order, "word_order": self.word_order, "beta": beta, "lowercase": self.lowercase},
            {"char_order": 6, "word_order": 0, "beta": 2, "lowercase": False},
        )

    def encode(self, texts: Sequence[str]) -> NgramEncoding:
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        stripped = ["".join(t.split()) for t in texts]
        char_lengths = np.fromiter((len(s) for s in stripped), dtype=np.int64, count=len(stripped))
        char_offsets = offsets_from_lengths(char_lengths)
        chars = np.frombuffer("".join(stripped).encode("utf-32-le", "surrogatepass"), dtype="<u4")
        chars = chars.astype(np.int64)
        banks = []
        if self.char_order:
            banks.append(NgramBank.build(chars, char_offsets, self.char_order))
        generation = None
        if self.word_order:
            flat, offsets = self._words.encode_batch([_chrf_words(t) for t in texts])
            banks.append(NgramBank.build(flat, offsets, self.word_order))
            generation = self._words.generation
        return NgramEncoding(banks, char_lengths, generation)

    def select(self, encoded: NgramEncoding, index: np.ndarray) -> NgramEncoding:
        return encoded.select(index)

    def size(self, encoded: NgramEncoding) -> int:
        return len(encoded)

    def block(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        stats = [(ta[:, None], tb[None, :], m) for ta, tb, m in zip(enc_a.totals, enc_b.totals, enc_a.matches(enc_b))]
        return _chrf_scores(stats, self.beta)

    def paired(self, enc_a: NgramEncoding, enc_b: NgramEncoding) -> np.ndarray:
        stats = list(zip(enc_a.totals, enc_b.totals, enc_a.matches_paired(enc_b)))
        return _chrf_scores(stats, self.beta)


register("chrf")(CHRFSimilarity)
