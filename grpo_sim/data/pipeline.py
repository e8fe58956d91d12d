"""Retrieval per paraphrase: run a retriever for every wording of every set, attach the top-k
passages to each paraphrase, and measure retriever consistency.

The index over a corpus (JSONL passages, see :func:`~grpo_sim.data.schema.read_corpus`) is built
once and cached under ``index_dir``: ``index_dir/bm25`` (bm25s files + ``index_meta.json``) or
``index_dir/dense-<model>`` (see :class:`~grpo_sim.data.dense.DenseRetriever`). A cached index is
reused when the corpus hash (and for dense indexes the model and prefixes) match, otherwise it is
rebuilt and the directory replaced atomically.

Retriever consistency of a set is the mean pairwise Jaccard similarity of the passage-id sets
retrieved for its wordings (:func:`~grpo_sim.data.retrieval.retriever_consistency`); the dataset
value is the mean over sets with at least two wordings.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import atomic_directory
from ..progress import progress_bar, spinner
from .retrieval import retriever_consistency
from .schema import ParaphraseSet, Passage, corpus_hash, load_psets, read_corpus, write_psets

__all__ = [
    "load_or_build_retriever",
    "retrieve_file",
    "retrieve_for_sets",
]

_BM25_META = "index_meta.json"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")[:80] or "model"


# ------------------------------------------------------------------------------------------
# Retrievers with an index cache
# ------------------------------------------------------------------------------------------


def _bm25_build_or_load(passages: list[Passage], directory: Path | None, progress: bool) -> tuple[Any, bool]:
    from .retrieval import BM25Retriever

    h = corpus_hash(passages)
    if directory is not None and (directory / _BM25_META).exists():
        try:
            meta = json.loads((directory / _BM25_META).read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
        if meta.get("corpus_hash") == h:
            return BM25Retriever.load(directory), False
    with spinner(f"building BM25 index over {len(passages)} passages", progress):
        r = BM25Retriever(passages)
    if directory is not None:
        with atomic_directory(directory) as tmp:
            r.save(tmp)
            (tmp / _BM25_META).write_text(
                json.dumps({"kind": "bm25", "corpus_hash": h, "num_passages": len(passages), **r.params}, indent=2),
                encoding="utf-8",
            )
    return r, True


def load_or_build_retriever(
    kind: str,
    passages: Sequence[Passage],
    index_dir: str | os.PathLike[str] | None = None,
    model: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    encoder: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """``(retriever, info)`` for ``kind`` ``"bm25"`` or ``"dense"``; ``info`` has ``index``
    (``"built"``, ``"loaded"`` or ``"in-memory"``), ``path`` and ``model``."""
    kind = kind.lower()
    passages = list(passages)
    root = Path(index_dir) if index_dir is not None else None
    if kind == "bm25":
        if model is not None:
            raise ValueError("--model applies to the dense retriever only")
        d = root / "bm25" if root is not None else None
        r, built = _bm25_build_or_load(passages, d, progress)
        info = {"retriever": "bm25", "model": None}
    elif kind == "dense":
        from .dense import DEFAULT_MODEL_NAME, DenseRetriever

        name = DEFAULT_MODEL_NAME if model is None else str(model)
        d = root / f"dense-{_slug(name)}" if root is not None else None
        r, built = DenseRetriever.build_or_load(
            passages, d, model=model, device=device, batch_size=batch_size, encoder=encoder, progress=progress
        )
        info = {"retriever": "dense", "model": name}
    else:
        raise ValueError(f"unknown retriever {kind!r}: use bm25 or dense")
    info["index"] = ("built" if built else "loaded") if d is not None else "in-memory"
    info["path"] = str(d) if d is not None else None
    info["num_passages"] = len(passages)
    return r, info


# ------------------------------------------------------------------------------------------
# Retrieval per paraphrase
# ------------------------------------------------------------------------------------------


def retrieve_for_sets(
    sets: Sequence[ParaphraseSet],
    retriever: Any,
    k: int = 3,
    progress: bool = False,
    batch_size: int = 512,
    info: dict[str, Any] | None = None,
) -> tuple[list[ParaphraseSet], dict[str, Any]]:
    """Attach the top-``k`` passages of ``retriever`` to every paraphrase of every set.

    Returns the new sets (each paraphrase's ``passages`` replaced; ``metadata["retrieval"]``
    records retriever, model, k and the set's consistency) and stats: ``num_sets``,
    ``num_queries``, ``k``, ``consistency`` (mean over sets with >= 2 wordings; ``None`` if
    there are none), ``consistency_min``/``median``, ``sets_scored`` and, when the sets name
    supporting passages (``metadata["supporting_passage_ids"]``), ``supporting_hit_rate``
    (share of wordings whose top-k holds at least one of them).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    t0 = time.perf_counter()
    queries = [p.question for s in sets for p in s.paraphrases]
    indices: list[list[int]] = []
    advance, close = progress_bar(len(queries), f"retrieving top-{k}", progress)
    try:
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            indices.extend(retriever.retrieve_indices(chunk, k))
            advance(len(chunk))
    finally:
        close()
    passages = retriever.passages
    out: list[ParaphraseSet] = []
    cons: list[float] = []
    hits = total_sup = 0
    pos = 0
    info = info or {}
    for s in sets:
        paras = []
        id_lists = []
        for p in s.paraphrases:
            got = [passages[i] for i in indices[pos]]
            pos += 1
            paras.append(p.model_copy(update={"passages": got}))
            id_lists.append([x.id for x in got])
        c = retriever_consistency(id_lists)
        if len(id_lists) >= 2:
            cons.append(c)
        sup = s.metadata.get("supporting_passage_ids") or []
        if sup:
            sup_set = set(sup)
            for ids in id_lists:
                total_sup += 1
                hits += bool(sup_set & set(ids))
        meta = dict(s.metadata)
        meta["retrieval"] = {
            "retriever": info.get("retriever"),
            "model": info.get("model"),
            "k": k,
            "consistency": round(c, 6),
        }
        out.append(s.model_copy(update={"paraphrases": paras, "metadata": meta}))
    stats: dict[str, Any] = {
        "num_sets": len(sets),
        "num_queries": len(queries),
        "k": k,
        "sets_scored": len(cons),
        "consistency": float(np.mean(cons)) if cons else None,
        "consistency_min": float(np.min(cons)) if cons else None,
        "consistency_median": float(np.median(cons)) if cons else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if total_sup:
        stats["supporting_hit_rate"] = hits / total_sup
    return out, stats


def retrieve_file(
    in_path: str | os.PathLike[str],
    corpus_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    retriever: str = "bm25",
    model: str | None = None,
    k: int = 3,
    index_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    encoder: Any = None,
) -> dict[str, Any]:
    """Read sets and corpus (both validated), retrieve per paraphrase, write the sets (atomic).
    Returns the stats of :func:`retrieve_for_sets` plus the index info."""
    sets = load_psets(in_path)
    passages = read_corpus(corpus_path)
    r, info = load_or_build_retriever(
        retriever,
        passages,
        index_dir=index_dir,
        model=model,
        device=device,
        batch_size=batch_size,
        progress=progress,
        encoder=encoder,
    )
    new_sets, stats = retrieve_for_sets(sets, r, k=k, progress=progress, info=info)
    write_psets(out_path, new_sets)
    stats.update({f"index_{key}" if key in ("path",) else key: v for key, v in info.items()})
    return stats
