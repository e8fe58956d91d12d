"""Similarity metrics: registry, hand-checked values, shapes, edge cases, embedding models."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from grpo_sim.similarity import CallableSimilarity, Similarity, available, get_similarity, pairwise
from grpo_sim.similarity.text import normalize_answer

LEXICAL = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "exact_match", "token_f1", "chrf"]
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_available_names():
    names = set(available())
    assert {
        "bleu",
        "bleu1",
        "bleu2",
        "bleu3",
        "bleu4",
        "rouge_l",
        "exact_match",
        "token_f1",
        "chrf",
        "embedding",
        "bmas",
    } <= names


def test_parameterised_and_mapping_specs():
    m = get_similarity("bleu:n=3")
    assert isinstance(m, Similarity) and m.n == 3 and m.name == "bleu3"
    assert get_similarity("bleu").n == 4
    assert get_similarity("bleu2").n == 2
    assert get_similarity({"name": "bleu", "n": 1}).n == 1
    c = get_similarity("chrf:word_order=2,beta=1")
    assert (c.char_order, c.word_order, c.beta) == (6, 2, 1)
    assert get_similarity("rouge_l:use_stemmer=true").use_stemmer is True
    # names rebuild the metric
    for spec in [
        "bleu:n=3",
        "bleu:n=2,lowercase=true",
        "chrf:word_order=2",
        "rouge_l:use_stemmer=true",
        "token_f1",
        "exact_match",
        "embedding:batch_size=8",
        "bmas",
    ]:
        m = get_similarity(spec)
        assert get_similarity(m.name).name == m.name


def test_dotted_path_user_function(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    m = get_similarity("tests.helpers_sim:my_sim")
    assert isinstance(m, CallableSimilarity)
    out = m.matrix(["ab", "abc"], ["xy", "xyz", "q"])
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 1, 0]])


def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as err:
        get_similarity("bleuu")
    msg = str(err.value)
    assert "unknown similarity 'bleuu'" in msg
    for name in ["bleu2", "rouge_l", "token_f1", "chrf", "embedding", "bmas"]:
        assert name in msg


def test_bad_parameters():
    with pytest.raises(ValueError):
        get_similarity("bleu:n=7")
    with pytest.raises(ValueError):
        get_similarity("bleu:tokenize=nosuch")
    with pytest.raises(ValueError):
        get_similarity("token_f1:foo=1")


# --------------------------------------------------------------------------------------------
# hand-checked values
# --------------------------------------------------------------------------------------------


def sim(spec: str, hyp: str, ref: str) -> float:
    return float(pairwise(spec, [hyp], [ref])[0, 0])


def test_normalize_answer():
    assert normalize_answer("  The  Cat, (an) apple!  ") == "cat apple"
    assert normalize_answer("theatre a-ha") == "theatre aha"
    assert normalize_answer("Ünï «x»") == "ünï «x»"


def test_token_f1_by_hand():
    # normalised: "cat sat" vs "cat sat down": overlap 2, P = 2/2, R = 2/3, F1 = 2PR/(P+R) = 0.8
    assert sim("token_f1", "the cat sat", "cat sat down") == pytest.approx(0.8, abs=1e-12)
    # multiset overlap: "a a b" -> [b] (article removed) ; "x x y" vs "x y y": overlap 2 of 3 each
    assert sim("token_f1", "x x y", "x y y") == pytest.approx(2 / 3, abs=1e-12)
    assert sim("token_f1", "cat", "dog") == 0.0


def test_exact_match_by_hand():
    assert sim("exact_match", "The Cat.", "cat") == 1.0
    assert sim("exact_match", "cats", "cat") == 0.0


def test_bleu_by_hand():
    # all n-grams match, hypothesis 3 tokens vs 4: BP = exp(1 - 4/3)
    assert sim("bleu1", "the cat sat", "the cat sat down") == pytest.approx(math.exp(-1 / 3), abs=1e-12)
    assert sim("bleu2", "the cat sat", "the cat sat down") == pytest.approx(math.exp(-1 / 3), abs=1e-12)
    # p1 = 3/4, p2 = 2/3, no BP (hyp longer)
    assert sim("bleu2", "the cat sat on", "the cat sat") == pytest.approx(math.sqrt(0.5), abs=1e-12)
    # exp smoothing: p1 = 3/4, p2 = 1/3, p3 = 1/(2*2), p4 = 1/(4*1) -> (1/64)^(1/4)
    assert sim("bleu4", "a b c d", "a b x d") == pytest.approx((1 / 64) ** 0.25, abs=1e-12)
    # effective order: 2-token hypothesis only uses orders 1, 2
    assert sim("bleu4", "a b", "a b") == pytest.approx(1.0, abs=1e-12)
    assert sim("bleu4", "a b", "c d") == 0.0
    # 13a tokenisation splits punctuation: "cat." -> "cat ."
    assert sim("bleu1", "cat.", "cat .") == pytest.approx(1.0, abs=1e-12)
    # asymmetric (brevity penalty)
    assert not get_similarity("bleu2").symmetric


def test_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat lay on a mat") = "the cat on mat" = 4; P = R = 4/6
    assert sim("rouge_l", "the cat sat on the mat", "the cat lay on a mat") == pytest.approx(2 / 3, abs=1e-12)
    # P = 2/2, R = 2/4 -> F = 2/3
    assert sim("rouge_l", "a b", "a x b y") == pytest.approx(2 / 3, abs=1e-12)
    # rouge tokeniser lower-cases and drops punctuation
    assert sim("rouge_l", "The CAT!", "the cat") == pytest.approx(1.0, abs=1e-12)
    # stemming
    assert sim("rouge_l", "running dogs", "run dog") == 0.0
    assert sim("rouge_l:use_stemmer=true", "running dogs", "run dog") == pytest.approx(1.0, abs=1e-12)


def test_chrf_by_hand():
    # orders 1..3 have n-grams on both sides: P = R per order = 2/3, 1/2, 0 -> mean 7/18
    assert sim("chrf", "abc", "abd") == pytest.approx(7 / 18, abs=1e-12)
    # white space is removed before extracting character n-grams
    assert sim("chrf", "a b c", "abc") == pytest.approx(1.0, abs=1e-12)
    assert sim("chrf", "abc", "xyz") == 0.0


# --------------------------------------------------------------------------------------------
# shapes, orientation, select / paired consistency
# --------------------------------------------------------------------------------------------

TEXTS_A = ["the cat sat on the mat", "a dog barked", "", "cat sat"]
TEXTS_B = ["the cat sat", "dogs bark loudly", "the mat"]


@pytest.mark.parametrize("spec", LEXICAL)
def test_shapes_and_consistency(spec):
    m = get_similarity(spec)
    ab = m.matrix(TEXTS_A, TEXTS_B)
    aa = m.matrix(TEXTS_A)
    assert ab.shape == (4, 3) and ab.dtype == np.float64
    assert aa.shape == (4, 4)
    assert ((ab >= 0) & (ab <= 1)).all() and ((aa >= 0) & (aa <= 1)).all()
    # a vs None equals a vs a encoded separately
    np.testing.assert_array_equal(aa, m.matrix(TEXTS_A, list(TEXTS_A)))
    # non-empty texts are identical to themselves
    for i, t in enumerate(TEXTS_A):
        if t:
            assert aa[i, i] == pytest.approx(1.0, abs=1e-12)
    # select / paired agree with the block
    enc_a, enc_b = m.encode(TEXTS_A), m.encode(TEXTS_B)
    assert m.size(enc_a) == 4
    idx = np.array([3, 0, 0])
    np.testing.assert_array_equal(m.block(m.select(enc_a, idx), enc_b), ab[idx])
    np.testing.assert_array_equal(m.paired(m.select(enc_a, np.array([0, 1, 3])), enc_b), ab[[0, 1, 3], [0, 1, 2]])
    np.testing.assert_array_equal(m.pairs(TEXTS_A[:3], TEXTS_B), ab[[0, 1, 2], [0, 1, 2]])
    # empty lists
    assert m.matrix([], TEXTS_B).shape == (0, 3)
    assert m.matrix(TEXTS_A, []).shape == (4, 0)
    if m.symmetric:
        np.testing.assert_allclose(aa, aa.T, rtol=0, atol=1e-15)


def test_orientation_hypothesis_rows():
    # BLEU: row = hypothesis. Short hypothesis vs long reference gets the brevity penalty.
    m = get_similarity("bleu1")
    out = m.matrix(["a b"], ["a b c d"])[0, 0]
    rev = m.matrix(["a b c d"], ["a b"])[0, 0]
    assert out == pytest.approx(math.exp(1 - 4 / 2), abs=1e-12)
    assert rev == pytest.approx(0.5, abs=1e-12)


# --------------------------------------------------------------------------------------------
# edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", LEXICAL)
def test_empty_and_whitespace(spec):
    m = get_similarity(spec)
    texts = ["", "   ", "\t\n", "word"]
    out = m.matrix(texts)
    assert np.isfinite(out).all()
    # any empty vs a real word: 0
    assert (out[:3, 3] == 0).all() and (out[3, :3] == 0).all()
    empty_vs_empty = out[:3, :3]
    if spec in ("exact_match", "token_f1"):
        assert (empty_vs_empty == 1.0).all()  # both normalise to no tokens: match (SQuAD v2)
    else:
        assert (empty_vs_empty == 0.0).all()  # sacrebleu / rouge_score give 0 for empty pairs


def test_non_ascii():
    zh, ru = "我们 喜欢 猫", "Привет мир"
    for spec in ["bleu2", "chrf", "token_f1", "exact_match"]:
        assert sim(spec, zh, zh) == pytest.approx(1.0, abs=1e-12), spec
        assert sim(spec, ru, ru) == pytest.approx(1.0, abs=1e-12), spec
    # rouge_score's tokenizer keeps only [a-z0-9]: non-ASCII scripts have no tokens
    assert sim("rouge_l", zh, zh) == 0.0
    assert sim("rouge_l", ru, ru) == 0.0
    assert sim("rouge_l", "café au lait", "caf au lait") == pytest.approx(1.0, abs=1e-12)
    # token F1 works on Unicode words
    assert sim("token_f1", "Привет мир", "привет друг") == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("spec", LEXICAL)
def test_long_text(spec):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    long_a = " ".join(rng.choice(words, size=2000))
    long_b = " ".join(rng.choice(words, size=2000))
    m = get_similarity(spec)
    t0 = time.perf_counter()
    out = m.matrix([long_a, long_b, "w1 w2"], [long_a, long_b])
    assert time.perf_counter() - t0 < 5.0
    assert out[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert 0.0 <= out[0, 1] < 1.0
    assert np.isfinite(out).all()


def test_bleu_tokenize_and_lowercase():
    assert sim("bleu:n=1,lowercase=true", "The Cat", "the cat") == pytest.approx(1.0, abs=1e-12)
    assert sim("bleu:n=1", "The Cat", "the cat") == 0.0
    # 'none' tokenizer: punctuation stays attached
    assert sim("bleu:n=1,tokenize=none", "cat.", "cat .") == 0.0


# --------------------------------------------------------------------------------------------
# embedding metrics (packaged MiniLM, offline)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedding():
    return get_similarity("embedding:device=cpu")


@pytest.fixture(scope="module")
def bmas():
    return get_similarity("bmas:device=cpu")


def test_embedding_loads_offline_and_caches(embedding):
    from grpo_sim.similarity.embedding import default_model_path

    assert Path(default_model_path()).is_dir()
    model = embedding.model
    assert get_similarity("embedding:device=cpu").model is model  # module-level cache
    assert get_similarity("bmas:device=cpu").model is model


def test_embedding_values_and_shape(embedding):
    a = ["A man is playing a guitar.", "The stock market fell sharply.", "A man is playing a guitar.", ""]
    b = ["A person plays the guitar.", "A man is playing a guitar."]
    out = embedding.matrix(a, b)
    assert out.shape == (4, 2) and out.dtype == np.float64
    assert ((out >= 0) & (out <= 1)).all()
    assert out[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert out[2, 1] == pytest.approx(1.0, abs=1e-9)
    assert out[0, 0] > out[1, 0]  # related beats unrelated
    aa = embedding.matrix(a)
    assert aa.shape == (4, 4)
    np.testing.assert_allclose(np.diag(aa), 1.0, atol=1e-9)
    np.testing.assert_allclose(aa, aa.T, atol=1e-12)
    np.testing.assert_allclose(embedding.pairs(a[:2], b), out[[0, 1], [0, 1]], atol=1e-12)


def test_embedding_deduplicates(embedding, monkeypatch):
    model = embedding.model
    calls = []
    original = model.encode

    def spy(texts, *args, **kwargs):
        calls.append(list(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    texts = ["x y", "hello", "x y", "hello", "x y", "z"]
    enc = embedding.encode(texts)
    assert calls == [["x y", "hello", "z"]]
    assert enc.shape[0] == 6
    np.testing.assert_array_equal(enc[0], enc[2])


def test_bmas(bmas):
    a = ["A man is playing a guitar.", "The stock market fell sharply.", "", "A man is playing a guitar."]
    b = ["A person plays the guitar.", "A man is playing a guitar.", ""]
    out = bmas.matrix(a, b)
    assert out.shape == (4, 3)
    assert ((out >= 0) & (out <= 1)).all()
    assert out[0, 1] == pytest.approx(1.0, abs=1e-5)
    assert out[0, 0] > out[1, 0]
    assert out[2, 2] == 1.0 and out[2, 0] == 0.0 and out[0, 2] == 0.0
    np.testing.assert_array_equal(out[0], out[3])
    aa = bmas.matrix(a)
    np.testing.assert_allclose(aa, aa.T, atol=1e-6)
    np.testing.assert_allclose(bmas.pairs(a[:3], b), out[[0, 1, 2], [0, 1, 2]], atol=1e-12)
    enc = bmas.encode(a)
    np.testing.assert_allclose(bmas.block(bmas.select(enc, np.array([1, 0])), bmas.encode(b)), out[[1, 0]], atol=1e-12)


def test_bmas_chunking_matches(bmas, monkeypatch):
    texts = ["one two three four", "five six", "seven eight nine ten eleven", "two four six"]
    full = bmas.matrix(texts)
    monkeypatch.setattr(bmas, "max_block_elements", 1)  # one hypothesis text per chunk
    np.testing.assert_allclose(bmas.matrix(texts), full, atol=1e-6)


def test_rouge_l_int_list_fallback(monkeypatch):
    # more distinct tokens than Unicode code points: LCS runs on int lists instead of strings
    from grpo_sim.similarity import lexical

    texts = ["the cat sat on the mat", "the cat lay on a mat", "", "mat cat"]
    expected = get_similarity("rouge_l").matrix(texts)
    monkeypatch.setattr(lexical, "_MAX_CODEPOINT", 2)
    m = get_similarity("rouge_l")
    assert isinstance(m.encode(texts).seqs[0], list)
    np.testing.assert_array_equal(m.matrix(texts), expected)
    np.testing.assert_array_equal(m.pairs(texts, texts[::-1]), expected[[0, 1, 2, 3], [3, 2, 1, 0]])


def test_cross_encoding_alignment_is_cached_and_correct():
    m = get_similarity("chrf:word_order=2")
    a, b = m.encode(TEXTS_A), m.encode(TEXTS_B)
    first = m.block(a, b)
    for idx in (np.array([2, 0]), np.array([1, 1, 3])):
        np.testing.assert_array_equal(m.block(m.select(a, idx), b), first[idx])
    np.testing.assert_array_equal(m.block(b, a), m.matrix(TEXTS_B, TEXTS_A))
