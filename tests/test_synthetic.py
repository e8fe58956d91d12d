import pytest

from grpo_sim.data import retriever_consistency, to_training_rows
from grpo_sim.demo.world import MAX_PARAPHRASES, build_demo_dataset, demo_text_corpus, gold_ranks


@pytest.fixture(scope="module")
def demo():
    return build_demo_dataset(60, 20, num_paraphrases=4, passages_per_prompt=3, seed=0)


def _dump(ds):
    train, eval_, corpus = ds
    return "\n".join([s.model_dump_json() for s in train + eval_] + [p.model_dump_json() for p in corpus])


def test_deterministic(demo):
    assert _dump(build_demo_dataset(60, 20, seed=0)) == _dump(demo)
    assert _dump(build_demo_dataset(60, 20, seed=1)) != _dump(demo)


def test_shapes(demo):
    train, eval_, corpus = demo
    assert len(train) == 60 and len(eval_) == 20
    ids = [p.id for p in corpus]
    assert len(set(ids)) == len(ids)
    for s in train + eval_:
        assert [p.paraphrase_id for p in s.paraphrases] == [0, 1, 2, 3]
        assert s.paraphrases[0].question == s.question
        assert len({p.question for p in s.paraphrases}) == 4  # different templates
        assert len(s.metadata["templates"]) == 4 and s.metadata["templates"][0] == 0
        assert all(len(p.passages) == 3 for p in s.paraphrases)
        assert len(s.answers) == 1 and len(s.answers[0].split()) == 1
        assert s.metadata["subject"] in s.question
    rels = {s.metadata["relation"] for s in train}
    assert 3 <= len(rels) <= 5


def test_gold_passage_holds_answer(demo):
    train, eval_, corpus = demo
    by_id = {p.id: p for p in corpus}
    for s in train + eval_:
        gold = by_id[s.metadata["gold_passage_id"]]
        assert s.answers[0] in gold.text and s.metadata["subject"] in gold.text


def test_retrieval_varies_across_paraphrases(demo):
    train, eval_, _ = demo
    sets = train + eval_
    ranks = [r for s in sets for r in gold_ranks(s)]
    recall = sum(r is not None for r in ranks) / len(ranks)
    assert 0.8 <= recall < 1.0  # usually, not always, retrieved
    assert sum(r == 0 for r in ranks) / len(ranks) < 0.9  # not always first
    varying_rank = sum(len(set(gold_ranks(s))) > 1 for s in sets)
    assert varying_rank >= len(sets) // 4
    cons = [retriever_consistency([[p.id for p in x.passages] for x in s.paraphrases]) for s in sets]
    assert any(c < 1.0 for c in cons) and any(c == 1.0 for c in cons)


def test_train_eval_disjoint(demo):
    train, eval_, _ = demo
    assert not {s.metadata["subject"] for s in train} & {s.metadata["subject"] for s in eval_}
    assert not {s.answers[0] for s in train} & {s.answers[0] for s in eval_}
    assert len({s.metadata["subject"] for s in train}) == len(train)


def test_answers_are_single_tokens(demo):
    from grpo_sim.models import build_word_tokenizer

    train, eval_, corpus = demo
    tok = build_word_tokenizer(demo_text_corpus(train + eval_, corpus))
    for s in train + eval_:
        ids = tok.encode(s.answers[0], add_special_tokens=False)
        assert len(ids) == 1 and ids[0] != tok.unk_token_id
        assert tok.decode(ids) == s.answers[0]
    for row in to_training_rows(train[:5]):
        text = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert tok.unk_token_id not in tok.encode(text, add_special_tokens=False)


def test_arguments():
    tr, ev, corpus = build_demo_dataset(3, 0, num_paraphrases=1, passages_per_prompt=1, seed=3)
    assert len(tr) == 3 and ev == [] and all(len(s.paraphrases) == 1 for s in tr)
    with pytest.raises(ValueError):
        build_demo_dataset(2, 2, num_paraphrases=MAX_PARAPHRASES + 1)
