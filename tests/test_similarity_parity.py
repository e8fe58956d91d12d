"""Property tests: every lexical metric's full matrix equals the reference implementation.

References: sacrebleu (BLEU, chrF), rouge_score (ROUGE-L) and a straightforward Counter-based
SQuAD token F1 / exact match written here. Tolerance 1e-9.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_sim.similarity import get_similarity
from grpo_sim.similarity.text import normalize_answer

sacrebleu_metrics = pytest.importorskip("sacrebleu.metrics")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

TOL = 1e-9

WORDS = [
    "the",
    "The",
    "a",
    "an",
    "An",
    "cat",
    "cat",
    "cats",
    "sat",
    "sitting",
    "mat",
    "on",
    "dog",
    "running",
    ",",
    ".",
    "!",
    "?",
    "'s",
    "(hi)",
    "x-y",
    "3.5",
    "1,000",
    "&amp;",
    "don't",
    "A.",
    "e.g.",
    "--",
    "café",
    "naïve",
    "Ünï",
    "日本語",
    "猫",
    "Привет",
    "привет",
    "über",
    "ß",
    "😀",
    "42",
    "İstanbul",
    "\u212a",
    "ﬁ",
]
SEPARATORS = [" ", " ", " ", "  ", "\t", "\n", ", ", ""]

word_lists = st.lists(st.sampled_from(WORDS), min_size=0, max_size=10)


@st.composite
def texts(draw):
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from(["", " ", "   ", "\t\n ", "\n"]))
    words = draw(word_lists)
    out = ""
    for w in words:
        out += w + draw(st.sampled_from(SEPARATORS))
    if draw(st.booleans()):
        out = " " + out
    return out


text_lists = st.lists(texts(), min_size=1, max_size=6)


def check_matrix(spec, hyps, refs, reference):
    m = get_similarity(spec)
    expected = np.array([[reference(h, r) for r in refs] for h in hyps], dtype=np.float64)
    # separate encodings (feature spaces aligned per block)
    got = m.matrix(hyps, refs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    # one shared encoding, blocks via select
    allt = hyps + refs
    enc = m.encode(allt)
    sub = m.block(m.select(enc, np.arange(len(hyps))), m.select(enc, np.arange(len(hyps), len(allt))))
    np.testing.assert_allclose(sub, expected, rtol=0, atol=TOL)
    # paired on the diagonal
    k = min(len(hyps), len(refs))
    np.testing.assert_allclose(m.pairs(hyps[:k], refs[:k]), np.diag(expected[:k, :k]), rtol=0, atol=TOL)


@settings(max_examples=150, deadline=None)
@given(hyps=text_lists, refs=text_lists, n=st.integers(1, 4), lowercase=st.booleans())
def test_bleu_parity(hyps, refs, n, lowercase):
    bleu = sacrebleu_metrics.BLEU(max_ngram_order=n, effective_order=True, lowercase=lowercase)
    check_matrix(
        {"name": "bleu", "n": n, "lowercase": lowercase},
        hyps,
        refs,
        lambda h, r: bleu.sentence_score(h, [r]).score / 100,
    )


@settings(max_examples=150, deadline=None)
@given(
    hyps=text_lists,
    refs=text_lists,
    orders=st.sampled_from([(6, 0), (6, 2), (3, 1), (1, 0), (0, 2)]),
    beta=st.sampled_from([1, 2, 3]),
    lowercase=st.booleans(),
)
def test_chrf_parity(hyps, refs, orders, beta, lowercase):
    co, wo = orders
    chrf = sacrebleu_metrics.CHRF(char_order=co, word_order=wo, beta=beta, lowercase=lowercase)
    spec = {"name": "chrf", "char_order": co, "word_order": wo, "beta": beta, "lowercase": lowercase}
    check_matrix(spec, hyps, refs, lambda h, r: chrf.sentence_score(h, [r]).score / 100)


@settings(max_examples=150, deadline=None)
@given(hyps=text_lists, refs=text_lists, stem=st.booleans())
def test_rouge_l_parity(hyps, refs, stem):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)
    check_matrix(
        {"name": "rouge_l", "use_stemmer": stem},
        hyps,
        refs,
        lambda h, r: scorer.score(target=r, prediction=h)["rougeL"].fmeasure,
    )


def squad_f1(prediction: str, truth: str) -> float:
    """The SQuAD v2 evaluation script's token F1 (empty answers: 1 iff both empty)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred)
    recall = num_same / len(gold)
    return 2 * precision * recall / (precision + recall)


@settings(max_examples=150, deadline=None)
@given(hyps=text_lists, refs=text_lists)
def test_token_f1_parity(hyps, refs):
    check_matrix("token_f1", hyps, refs, squad_f1)


@settings(max_examples=100, deadline=None)
@given(hyps=text_lists, refs=text_lists)
def test_exact_match_parity(hyps, refs):
    check_matrix("exact_match", hyps, refs, lambda h, r: float(normalize_answer(h) == normalize_answer(r)))


@settings(max_examples=100, deadline=None)
@given(text=texts())
def test_rouge_tokenizer_parity(text):
    from rouge_score.tokenizers import DefaultTokenizer

    from grpo_sim.similarity.lexical import RougeLSimilarity

    for stem in (False, True):
        assert RougeLSimilarity(use_stemmer=stem).tokens(text) == DefaultTokenizer(use_stemmer=stem).tokenize(text)


def test_normalize_answer_matches_squad_script():
    import re
    import string

    def official(s):
        def remove_articles(text):
            return re.sub(r"\b(a|an|the)\b", " ", text)

        def white_space_fix(text):
            return " ".join(text.split())

        def remove_punc(text):
            exclude = set(string.punctuation)
            return "".join(ch for ch in text if ch not in exclude)

        return white_space_fix(remove_articles(remove_punc(s.lower())))

    samples = ["The  cat's (hat)!", "an Apple a day", "theatre", "A.B.C", "Ünï «x» the", "", "  \t"]
    for s in samples:
        assert normalize_answer(s) == official(s)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            list("ab 09.,-!\"#$%&'()*+/:;<=>?@[\\]^_`{|}~\n\té") + ["&amp;", "&quot;", "&lt;", "<skipped>", "-\n"]
        ),
        max_size=40,
    ).map("".join)
)
def test_fast_13a_tokenizer_equals_sacrebleu(text):
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    from grpo_sim.similarity.lexical import tokenize_13a

    assert tokenize_13a(text) == Tokenizer13a()(text)
