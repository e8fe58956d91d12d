"""Data-pipeline throughput: BM25 retrieval over a 100k-passage synthetic corpus, dense encoding
with the packaged all-MiniLM-L6-v2, and exact dense search over 100k vectors.

* Corpus: 100,000 passages of 40-80 words drawn from a 30,000-word Zipf(1.1) vocabulary
  (common English words at the head, made-up 2-4 syllable words in the tail, so MiniLM's
  word-piece counts resemble real text; seeded, built in memory, not timed). Queries: 8 words,
  6 taken from a random passage and 2 from the vocabulary, so most queries have a clear best
  passage, like real questions.
* BM25: :class:`grpo_sim.data.BM25Retriever` (bm25s, numpy backend): index build seconds, then
  top-10 queries/s for single-threaded ``retrieve_indices`` over all queries.
* Dense encoding: sentences/s of ``SentenceTransformer.encode`` (batch 64) on the packaged
  MiniLM, for passages (~60 words) and for queries (8 words), with ``torch`` set to
  ``DENSE_THREADS`` (2) threads, i.e. the 2 cores of the reference machine, and with 1 thread
  (``*_1thread``, half as many texts) for reference; the thread count is restored after.
  Mean word pieces per text and the 1-minute load average are reported with the numbers.
* Dense search: top-10 queries/s of :meth:`DenseRetriever.search` (numpy, exact inner product)
  over 100k random unit vectors of dimension 384 (MiniLM's), queries encoded beforehand.
"""

from __future__ import annotations

import os
import time

import numpy as np

N_PASSAGES = 100_000
VOCAB = 30_000
DENSE_THREADS = 2


_COMMON = (
    "the of and to in a is was for on that with as by he at from his it an were are which this be or has had "
    "first one their its new after who they have her she two been other when there all during into school time "
    "may years more most only over city some world would where later up such used many can state about national "
    "out known university united then made these also film several part under three team including series while "
    "between world war second both since music family season american early called well began album member "
    "government people following high now located north south east west river year people work became game "
    "home life number party general group county area town population built district public record company "
    "book line best four played won house church college held final born died career league club show band "
    "station war army water land history island village held side great name village local major park london"
).split()
_SYL = [
    "ka",
    "lo",
    "mir",
    "ten",
    "vas",
    "ri",
    "do",
    "shan",
    "pel",
    "tor",
    "gu",
    "nex",
    "ba",
    "sel",
    "vin",
    "ar",
    "mo",
    "lis",
    "fen",
    "qua",
    "dri",
    "zo",
    "cal",
    "um",
]


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Common English words for the head, pronounceable made-up words (2-4 syllables) for the tail."""
    head = list(dict.fromkeys(_COMMON))
    tail: list[str] = []
    seen = set(head)
    while len(head) + len(tail) < VOCAB:
        w = "".join(rng.choice(_SYL, size=int(rng.integers(2, 5))))
        if w not in seen:
            seen.add(w)
            tail.append(w)
    return np.array(head + tail)


def make_corpus(n: int = N_PASSAGES, seed: int = 0):
    from grpo_sim.data import Passage

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
    p = ranks**-1.1
    p /= p.sum()
    words = _vocabulary(rng)
    lengths = rng.integers(40, 81, size=n)
    flat = words[rng.choice(VOCAB, size=int(lengths.sum()), p=p)]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    passages = [Passage(id=f"p{i}", title="", text=" ".join(flat[bounds[i] : bounds[i + 1]])) for i in range(n)]
    return passages, words, p, rng


def make_queries(passages, words, p, rng, n: int) -> list[str]:
    out = []
    for j in rng.integers(0, len(passages), size=n):
        toks = passages[j].text.split()
        picked = list(rng.choice(toks, size=min(6, len(toks)), replace=False))
        picked += list(words[rng.choice(len(words), size=2, p=p)])
        out.append(" ".join(picked))
    return out


def bench_bm25(passages, queries, k: int = 10) -> dict:
    from grpo_sim.data import BM25Retriever

    t0 = time.perf_counter()
    r = BM25Retriever(passages)
    build = time.perf_counter() - t0
    r.retrieve_indices(queries[:20], k)  # warm-up
    t0 = time.perf_counter()
    r.retrieve_indices(queries, k)
    dt = time.perf_counter() - t0
    return {
        "bm25_passages": len(passages),
        "bm25_build_s": build,
        "bm25_queries": len(queries),
        "bm25_k": k,
        "bm25_qps": len(queries) / dt,
    }


def bench_dense_encoding(passage_texts, query_texts) -> dict:
    import torch

    from grpo_sim.similarity.embedding import load_model

    prev = torch.get_num_threads()
    t0 = time.perf_counter()
    model = load_model(None, "cpu")
    res: dict = {"dense_model": "packaged all-MiniLM-L6-v2", "dense_load_s": time.perf_counter() - t0}
    tok = model.tokenizer
    res["dense_passage_wordpieces"] = float(np.mean([len(x) for x in tok(passage_texts[:64])["input_ids"]]))
    res["dense_query_wordpieces"] = float(np.mean([len(x) for x in tok(query_texts[:64])["input_ids"]]))
    model.encode(passage_texts[:16], batch_size=64, show_progress_bar=False)  # warm-up
    try:
        for threads in (DENSE_THREADS, 1):
            torch.set_num_threads(threads)
            sfx = "" if threads == DENSE_THREADS else f"_{threads}thread"
            for name, texts in (("passages", passage_texts), ("queries", query_texts)):
                if threads != DENSE_THREADS:
                    texts = texts[: max(64, len(texts) // 2)]
                t0 = time.perf_counter()
                model.encode(texts, batch_size=64, show_progress_bar=False)
                res[f"dense_{name}{sfx}_per_s"] = len(texts) / (time.perf_counter() - t0)
            res[f"dense_texts{sfx}"] = len(texts)
    finally:
        torch.set_num_threads(prev)
    res["dense_threads"] = DENSE_THREADS
    return res


def bench_dense_search(passages, n_queries: int, k: int = 10, dim: int = 384, seed: int = 0) -> dict:
    from grpo_sim.data.dense import DenseRetriever

    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((len(passages), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    r = DenseRetriever(passages, encoder=object(), use_faiss=False, _embeddings=emb)
    q = emb[rng.integers(0, len(passages), size=n_queries)] + 0.1 * rng.standard_normal((n_queries, dim)).astype(
        np.float32
    )
    r.search(q[:8], k)
    t0 = time.perf_counter()
    r.search(q, k)
    dt = time.perf_counter() - t0
    return {
        "dense_search_passages": len(passages),
        "dense_search_queries": n_queries,
        "dense_search_qps": n_queries / dt,
    }


def run(quick: bool = False) -> dict:
    """All data benchmarks; ``quick`` uses fewer queries and sentences (the corpus stays 100k)."""
    t0 = time.perf_counter()
    passages, words, p, rng = make_corpus()
    corpus_s = time.perf_counter() - t0
    queries = make_queries(passages, words, p, rng, 300 if quick else 2000)
    res: dict = {"corpus_build_s": corpus_s}
    try:
        res["load_avg_1min"] = os.getloadavg()[0]  # other work on the machine skews the numbers
    except OSError:  # pragma: no cover
        pass
    res.update(bench_bm25(passages, queries))
    n_enc = 128 if quick else 512
    res.update(bench_dense_encoding([x.text for x in passages[:n_enc]], queries[:n_enc]))
    res.update(bench_dense_search(passages, 256 if quick else 1024))
    return res


if __name__ == "__main__":  # python -m benchmarks.bench_data [--quick]
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
