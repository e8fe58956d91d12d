import pytest

from grpo_sim.data import BM25Retriever, Passage, jaccard, retriever_consistency

CORPUS = [
    Passage(id="a", title="Varenko", text="Varenko was born in Oslandia."),
    Passage(id="b", title="Varenko", text="Varenko works for Zeltek."),
    Passage(id="c", title="Tolmir", text="Tolmir was born in Kesmar."),
    Passage(id="d", title="Tolmir", text="Brolix employs Tolmir."),
    Passage(id="e", text="The weather in Oslandia is mild."),
]


def test_retrieve_ranks():
    r = BM25Retriever(CORPUS)
    res = r.retrieve(["Where was Varenko born?", "Who employs Tolmir?"], k=2)
    assert res[0][0].id == "a" and {p.id for p in res[0]} <= {"a", "b", "c"}
    assert [p.id for p in res[1]][0] == "d"
    assert len(r.retrieve("Varenko", k=10)[0]) == len(CORPUS)  # k clamped, single query ok
    # unknown words: deterministic corpus-order tie-break
    assert [p.id for p in r.retrieve(["zzz qqq"], k=3)[0]] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        r.retrieve(["x"], k=0)


def test_stopwords_off_by_default():
    r = BM25Retriever(CORPUS)
    assert r.stopwords is None
    # "in" and "the" are stopwords in English but are indexed here
    assert r.scores("the")[4] > 0


def test_save_load(tmp_path):
    r = BM25Retriever(CORPUS)
    r.save(tmp_path / "idx")
    r2 = BM25Retriever.load(tmp_path / "idx")
    qs = ["Where was Varenko born?", "Oslandia weather", "Tolmir"]
    assert [[p.id for p in x] for x in r2.retrieve(qs, 3)] == [[p.id for p in x] for x in r.retrieve(qs, 3)]
    assert r2.passages == r.passages


def test_jaccard_and_consistency():
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert jaccard([], []) == 1.0
    assert jaccard(["a", "b"], ["b", "a"]) == 1.0
    assert retriever_consistency([["a", "b"], ["b", "a"]]) == 1.0
    assert retriever_consistency([["a"]]) == 1.0
    # ordered pairs: (0,1)=1/3, (0,2)=0, (1,2)=1/3 each twice -> mean 2/9
    assert retriever_consistency([["a", "b"], ["b", "c"], ["c", "d"]]) == pytest.approx(2 / 9)
