"""BM25 retrieval over :class:`~grpo_sim.data.schema.Passage` lists (via ``bm25s``) and
retrieval-consistency measures across paraphrases.

Ties are broken by corpus order, so results are deterministic for a given corpus.
"""

from __future__ import annotations

import json
import os
from itertools import permutations
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .schema import Passage

_CONFIG_NAME = "retriever.json"
_PASSAGES_NAME = "passages.jsonl"


def _passage_text(p: Passage) -> str:
    return f"{p.title} {p.text}" if p.title else p.text


def _import_bm25s():
    """``import bm25s``, undoing its import-time ``logger.setLevel(DEBUG)``, which prints a DEBUG
    line at every index build (and an INFO line per empty query) under any logging set-up. Its
    messages are per-call chatter, so WARNING; a level set on the "bm25s" logger after the import
    is left alone."""
    import logging
    import sys

    first = "bm25s" not in sys.modules
    import bm25s

    logger = logging.getLogger("bm25s")
    if first and logger.level == logging.DEBUG:
        logger.setLevel(logging.WARNING)
    return bm25s


class BM25Retriever:
    """Lexical BM25 retriever over a fixed list of passages.

    ``stopwords``: ``None`` (default, keep every word), a language name understood by
    ``bm25s.tokenize`` (e.g. ``"en"``) or an explicit list. Text is lowercased; titles are
    indexed together with the passage text.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        stopwords: str | list[str] | None = None,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        _model=None,
    ):
        bm25s = _import_bm25s()

        self.passages: list[Passage] = [p if isinstance(p, Passage) else Passage.model_validate(p) for p in passages]
        if not self.passages:
            raise ValueError("BM25Retriever needs at least one passage")
        self.stopwords = stopwords
        self.params = {"k1": k1, "b": b, "method": method}
        if _model is not None:
            self.model = _model
        else:
            self.model = bm25s.BM25(k1=k1, b=b, method=method)
            corpus_tokens = bm25s.tokenize(
                [_passage_text(p) for p in self.passages], stopwords=stopwords, show_progress=False
            )
            self.model.index(corpus_tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.passages)

    def _tokenize_queries(self, queries: Sequence[str]) -> list[list[str]]:
        bm25s = _import_bm25s()

        return bm25s.tokenize(list(queries), stopwords=self.stopwords, return_ids=False, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for one query (float32 array of len(corpus))."""
        toks = self._tokenize_queries([query])[0]
        if not toks:
            return np.zeros(len(self.passages), dtype=np.float32)
        return np.asarray(self.model.get_scores(toks))

    def retrieve_indices(self, queries: Sequence[str] | str, k: int) -> list[list[int]]:
        """Corpus indices of the top-``k`` passages per query (highest score first)."""
        if isinstance(queries, str):
            queries = [queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n = len(self.passages)
        k = min(k, n)
        out: list[list[int]] = []
        all_toks = self._tokenize_queries(queries)
        for toks in all_toks:
            scores = (
                np.asarray(self.model.get_scores(toks), dtype=np.float64) if toks else np.zeros(n, dtype=np.float64)
            )
            neg = -scores
            if k < n:
                kth = np.partition(neg, k - 1)[k - 1]
                cand = np.nonzero(neg <= kth)[0]
            else:
                cand = np.arange(n)
            order = cand[np.lexsort((cand, neg[cand]))][:k]
            out.append([int(i) for i in order])
        return out

    def retrieve(self, queries: Sequence[str] | str, k: int = 3) -> list[list[Passage]]:
        """Top-``k`` passages per query; a single string is treated as a list of one query."""
        return [[self.passages[i] for i in idx] for idx in self.retrieve_indices(queries, k)]

    # Persistence --------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the BM25 index, the passages and the settings to ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.model.save(str(d), show_progress=False)
        with (d / _PASSAGES_NAME).open("w", encoding="utf-8") as fh:
            for p in self.passages:
                fh.write(json.dumps(p.model_dump(mode="json"), ensure_ascii=False) + "\n")
        cfg = {"stopwords": self.stopwords, **self.params, "num_passages": len(self.passages)}
        (d / _CONFIG_NAME).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "BM25Retriever":
        bm25s = _import_bm25s()

        d = Path(directory)
        cfg_path = d / _CONFIG_NAME
        if not cfg_path.exists():
            raise FileNotFoundError(f"{d}: no {_CONFIG_NAME}; not a directory written by BM25Retriever.save()")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        with (d / _PASSAGES_NAME).open("r", encoding="utf-8") as fh:
            passages = [Passage.model_validate_json(line) for line in fh if line.strip()]
        model = bm25s.BM25.load(str(d), show_progress=False)
        return cls(
            passages,
            stopwords=cfg.get("stopwords"),
            k1=cfg.get("k1", 1.5),
            b=cfg.get("b", 0.75),
            method=cfg.get("method", "lucene"),
            _model=model,
        )


def jaccard(a_ids: Iterable[str], b_ids: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two id collections (order ignored); 1.0 when both are empty."""
    a, b = set(a_ids), set(b_ids)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def retriever_consistency(id_lists: Sequence[Iterable[str]]) -> float:
    """Mean Jaccard similarity over ordered pairs ``i != j`` of retrieved-id lists
    (one list per paraphrase); 1.0 when fewer than two lists are given."""
    sets = [set(x) for x in id_lists]
    if len(sets) < 2:
        return 1.0
    vals = [jaccard(a, b) for a, b in permutations(sets, 2)]
    return float(np.mean(vals))


__all__ = ["BM25Retriever", "jaccard", "retriever_consistency"]
