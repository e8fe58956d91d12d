"""Dense retrieval (packaged MiniLM and a stand-in encoder), index caching, and the
retrieve-per-paraphrase pipeline with retriever consistency."""

import re
import zlib

import numpy as np
import pytest

from grpo_sim.data import (
    BM25Retriever,
    Paraphrase,
    ParaphraseSet,
    Passage,
    read_psets,
    retriever_consistency,
    write_corpus,
    write_psets,
)
from grpo_sim.data.dense import BGE_QUERY_INSTRUCTION, DEFAULT_MODEL_NAME, DenseRetriever, infer_prefixes
from grpo_sim.data.pipeline import load_or_build_retriever, retrieve_file, retrieve_for_sets
from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.io import atomic_directory


class BowEncoder:
    """Deterministic bag-of-words vectors (hashed into 64 dims); records what it encodes."""

    def __init__(self):
        self.calls = []

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                if w in ("query", "passage"):
                    continue
                out[i, zlib.crc32(w.encode()) % 64] += 1.0
        return out

    @property
    def n_encoded(self):
        return sum(len(c) for c in self.calls)


CORPUS = [
    Passage(
        id="eiffel", title="Eiffel Tower", text="The Eiffel Tower is a wrought-iron lattice tower in Paris, France."
    ),
    Passage(
        id="banana", title="Banana", text="A banana is an elongated, edible fruit produced by plants of the genus Musa."
    ),
    Passage(
        id="python", title="Python", text="Python is a high-level programming language created by Guido van Rossum."
    ),
    Passage(
        id="everest",
        title="Mount Everest",
        text="Mount Everest is Earth's highest mountain above sea level, in the Himalayas.",
    ),
    Passage(
        id="moon", title="Moon", text="The Moon is Earth's only natural satellite; Apollo 11 landed there in 1969."
    ),
    Passage(id="piano", title="Piano", text="The piano is a keyboard instrument in which hammers strike strings."),
]


def test_infer_prefixes():
    assert infer_prefixes(None) == ("", "")
    assert infer_prefixes("sentence-transformers/all-MiniLM-L6-v2") == ("", "")
    assert infer_prefixes("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert infer_prefixes("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert infer_prefixes("/models/E5-large") == ("query: ", "passage: ")
    assert infer_prefixes("BAAI/bge-small-en-v1.5") == (BGE_QUERY_INSTRUCTION, "")
    assert infer_prefixes("BAAI/bge-m3") == ("", "")


def test_prefixes_are_applied_and_overridable():
    enc = BowEncoder()
    r = DenseRetriever(CORPUS[:2], model="intfloat/e5-small-v2", encoder=enc)
    assert enc.calls[0][0] == "passage: Eiffel Tower The Eiffel Tower is a wrought-iron lattice tower in Paris, France."
    r.retrieve("Where is the Eiffel Tower?", k=1)
    assert enc.calls[-1] == ["query: Where is the Eiffel Tower?"]
    enc2 = BowEncoder()
    DenseRetriever(CORPUS[:1], model="intfloat/e5-small-v2", encoder=enc2, query_prefix="", passage_prefix="doc: ")
    assert enc2.calls[0][0].startswith("doc: Eiffel")


def test_search_order_and_ties():
    enc = BowEncoder()
    dup = [Passage(id=f"d{i}", text="identical text") for i in range(4)] + [Passage(id="x", text="other words")]
    r = DenseRetriever(dup, encoder=enc)
    np.testing.assert_allclose(np.linalg.norm(r.embeddings, axis=1), 1.0, rtol=1e-6)
    assert [p.id for p in r.retrieve("identical text", k=3)[0]] == ["d0", "d1", "d2"]
    assert [p.id for p in r.retrieve("zzz", k=2)[0]] == ["d0", "d1"]  # all-zero query: corpus order
    assert len(r.retrieve("other", k=50)[0]) == 5
    assert r.retrieve_indices(["other words", "identical"], k=1) == [[4], [0]]
    with pytest.raises(ValueError):
        r.retrieve("x", k=0)
    with pytest.raises(ValueError):
        DenseRetriever([], encoder=enc)


def test_faiss_is_optional():
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="faiss"):
            DenseRetriever(CORPUS, encoder=BowEncoder(), use_faiss=True)
        assert DenseRetriever(CORPUS[:1], encoder=BowEncoder()).use_faiss is False
    else:  # pragma: no cover - only where faiss-cpu is installed
        a = DenseRetriever(CORPUS, encoder=BowEncoder(), use_faiss=True)
        b = DenseRetriever(CORPUS, encoder=BowEncoder(), use_faiss=False)
        assert a.retrieve_indices(["Paris tower"], 2) == b.retrieve_indices(["Paris tower"], 2)


def test_save_load_and_rebuild(tmp_path):
    enc = BowEncoder()
    d = tmp_path / "idx"
    r, built = DenseRetriever.build_or_load(CORPUS, d, model="my-encoder", encoder=enc)
    assert built and enc.n_encoded == len(CORPUS)
    assert sorted(p.name for p in d.iterdir()) == ["embeddings.npy", "meta.json", "passages.jsonl"]
    meta = DenseRetriever.read_meta(d)
    assert meta["model"] == "my-encoder" and meta["num_passages"] == 6 and meta["dim"] == 64 and meta["corpus_hash"]

    r2, built = DenseRetriever.build_or_load(CORPUS, d, model="my-encoder", encoder=enc)
    assert not built and enc.n_encoded == len(CORPUS)  # nothing re-encoded
    np.testing.assert_array_equal(r2.embeddings, r.embeddings)
    loaded = DenseRetriever.load(d, encoder=enc)
    assert loaded.passages == r.passages and loaded.model_name == "my-encoder"
    q = ["highest mountain", "programming language"]
    assert loaded.retrieve_indices(q, 2) == r.retrieve_indices(q, 2)

    changed = CORPUS[:-1] + [Passage(id="piano", title="Piano", text="A piano has 88 keys.")]
    _, built = DenseRetriever.build_or_load(changed, d, model="my-encoder", encoder=enc)
    assert built and DenseRetriever.read_meta(d)["corpus_hash"] != meta["corpus_hash"]
    _, built = DenseRetriever.build_or_load(changed, d, model="other-encoder", encoder=enc)
    assert built and DenseRetriever.read_meta(d)["model"] == "other-encoder"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left behind
    with pytest.raises(FileNotFoundError):
        DenseRetriever.load(tmp_path / "nothing")


def test_packaged_minilm_retrieval(tmp_path):
    r = DenseRetriever(CORPUS)
    assert r.model_name == DEFAULT_MODEL_NAME and r.dim == 384 and (r.query_prefix, r.passage_prefix) == ("", "")
    queries = [
        "Which tower stands in Paris?",
        "What is the tallest mountain on Earth?",
        "Who created the Python language?",
        "When did people first land on the Moon?",
        "Which instrument has hammers hitting strings?",
        "What fruit grows on Musa plants?",
    ]
    top = [ps[0].id for ps in r.retrieve(queries, k=1)]
    assert top == ["eiffel", "everest", "python", "moon", "piano", "banana"]
    r.save(tmp_path / "d")
    r2 = DenseRetriever.load(tmp_path / "d")
    assert r2.model_name == DEFAULT_MODEL_NAME
    assert [ps[0].id for ps in r2.retrieve(queries, k=1)] == top


def test_atomic_directory_keeps_old_on_failure(tmp_path):
    d = tmp_path / "x"
    with atomic_directory(d) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(d) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("crash")
    assert (d / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["x"]
    with atomic_directory(d) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in d.iterdir()) == ["b"]


def _demo():
    train, _, corpus = build_demo_dataset(6, 0, num_paraphrases=4, passages_per_prompt=3, seed=1)
    # strip passages: the pipeline must fill them
    bare = [
        s.model_copy(update={"paraphrases": [p.model_copy(update={"passages": []}) for p in s.paraphrases]})
        for s in train
    ]
    return train, bare, corpus


def test_retrieve_for_sets_matches_bm25_and_consistency():
    train, bare, corpus = _demo()
    r = BM25Retriever(corpus)
    out, stats = retrieve_for_sets(bare, r, k=3, info={"retriever": "bm25"})
    assert out == [s.model_copy(update={"metadata": o.metadata}) for s, o in zip(train, out)]  # same passages
    per_set = [retriever_consistency([[p.id for p in para.passages] for para in s.paraphrases]) for s in out]
    assert stats["consistency"] == pytest.approx(np.mean(per_set))
    assert stats["num_sets"] == 6 and stats["num_queries"] == 24 and stats["sets_scored"] == 6
    assert out[0].metadata["retrieval"]["k"] == 3 and out[0].metadata["retrieval"]["retriever"] == "bm25"
    assert out[0].metadata["retrieval"]["consistency"] == pytest.approx(per_set[0], abs=1e-6)
    # single-wording sets are not scored
    single = [
        ParaphraseSet(
            set_id="one",
            question="Where was X born?",
            paraphrases=[Paraphrase(paraphrase_id=0, question="Where was X born?")],
        )
    ]
    _, st = retrieve_for_sets(single, r, k=2)
    assert st["consistency"] is None and st["sets_scored"] == 0


def test_supporting_hit_rate():
    corpus = [Passage(id="a", text="alpha beta"), Passage(id="b", text="gamma delta"), Passage(id="c", text="eps")]
    s = ParaphraseSet(
        set_id="s",
        question="alpha",
        paraphrases=[{"paraphrase_id": 0, "question": "alpha"}, {"paraphrase_id": 1, "question": "gamma"}],
        metadata={"supporting_passage_ids": ["a"]},
    )
    _, stats = retrieve_for_sets([s], BM25Retriever(corpus), k=1)
    assert stats["supporting_hit_rate"] == 0.5 and stats["consistency"] == 0.0


def test_retrieve_file_caches_indexes(tmp_path):
    _, bare, corpus = _demo()
    write_psets(tmp_path / "sets.jsonl", bare)
    write_corpus(tmp_path / "corpus.jsonl", corpus)
    kw = dict(index_dir=tmp_path / "idx", k=2)
    st1 = retrieve_file(tmp_path / "sets.jsonl", tmp_path / "corpus.jsonl", tmp_path / "o1.jsonl", **kw)
    st2 = retrieve_file(tmp_path / "sets.jsonl", tmp_path / "corpus.jsonl", tmp_path / "o2.jsonl", **kw)
    assert (st1["index"], st2["index"]) == ("built", "loaded")
    assert (tmp_path / "o1.jsonl").read_text() == (tmp_path / "o2.jsonl").read_text()
    assert all(len(p.passages) == 2 for s in read_psets(tmp_path / "o2.jsonl") for p in s.paraphrases)
    write_corpus(tmp_path / "corpus.jsonl", corpus[:-1])
    st3 = retrieve_file(tmp_path / "sets.jsonl", tmp_path / "corpus.jsonl", tmp_path / "o3.jsonl", **kw)
    assert st3["index"] == "built" and st3["num_passages"] == len(corpus) - 1

    enc = BowEncoder()
    d1 = retrieve_file(
        tmp_path / "sets.jsonl",
        tmp_path / "corpus.jsonl",
        tmp_path / "d1.jsonl",
        retriever="dense",
        model="bow",
        encoder=enc,
        **kw,
    )
    n_after_build = enc.n_encoded
    d2 = retrieve_file(
        tmp_path / "sets.jsonl",
        tmp_path / "corpus.jsonl",
        tmp_path / "d2.jsonl",
        retriever="dense",
        model="bow",
        encoder=enc,
        **kw,
    )
    assert (d1["index"], d2["index"]) == ("built", "loaded")
    assert enc.n_encoded - n_after_build == d2["num_queries"]  # only the queries were encoded
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["bm25", "dense-bow"]
    assert d1["retriever"] == "dense" and d1["model"] == "bow" and 0 <= d1["consistency"] <= 1

    with pytest.raises(ValueError, match="dense"):
        load_or_build_retriever("bm25", corpus, model="x")
    with pytest.raises(ValueError, match="unknown retriever"):
        load_or_build_retriever("tfidf", corpus)
