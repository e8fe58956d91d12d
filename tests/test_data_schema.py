import json

import pytest

from grpo_sim.data import (
    DataError,
    Paraphrase,
    ParaphraseSet,
    Passage,
    build_rag_prompt,
    read_psets,
    to_training_rows,
    write_psets,
)


def _set(set_id="s0", n=2):
    return ParaphraseSet(
        set_id=set_id,
        question="Where was Varenko born?",
        paraphrases=[
            Paraphrase(
                paraphrase_id=i,
                question=q,
                passages=[Passage(id=f"p{i}", title="Varenko", text="Varenko was born in Oslandia.")],
            )
            for i, q in enumerate(["Where was Varenko born?", "What is the birthplace of Varenko?"][:n])
        ],
        answers=["Oslandia"],
        metadata={"relation": "born_in"},
    )


def test_roundtrip(tmp_path):
    sets = [_set("a"), _set("b", n=1)]
    path = write_psets(tmp_path / "sub" / "d.jsonl", sets)
    assert read_psets(path) == sets
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["set_id"] == "a"
    # atomic write leaves no temp files behind
    assert [p.name for p in path.parent.iterdir()] == ["d.jsonl"]


def test_defaults_and_validation():
    s = ParaphraseSet(set_id="x", question="q?", paraphrases=[{"paraphrase_id": 0, "question": "q?"}])
    assert s.answers == [] and s.metadata == {} and s.paraphrases[0].passages == []
    assert ParaphraseSet(
        set_id="x", question="q?", paraphrases=[{"paraphrase_id": 0, "question": "q?"}], answers="Oslo"
    ).answers == ["Oslo"]
    with pytest.raises(ValueError, match="unique"):
        ParaphraseSet(
            set_id="x",
            question="q?",
            paraphrases=[{"paraphrase_id": 0, "question": "a"}, {"paraphrase_id": 0, "question": "b"}],
        )
    with pytest.raises(ValueError, match="non-empty"):
        Paraphrase(paraphrase_id=0, question="  ")
    with pytest.raises(ValueError):
        ParaphraseSet(set_id="x", question="q?", paraphrases=[])


def test_read_collects_all_bad_rows(tmp_path):
    good = _set("ok").model_dump()
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps(
            {
                **good,
                "set_id": "dup-ids",
                "paraphrases": [{"paraphrase_id": 1, "question": "a"}, {"paraphrase_id": 1, "question": "b"}],
            }
        ),
        "",
        json.dumps({**good, "set_id": "empty-q", "question": ""}),
        json.dumps({k: v for k, v in good.items() if k != "paraphrases"} | {"set_id": "nop"}),
        json.dumps(good),  # duplicate set id
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as ei:
        read_psets(path)
    msg = str(ei.value)
    assert str(path) in msg
    lines = {line for line, _, _ in ei.value.problems}
    assert lines == {2, 3, 5, 6, 7}
    assert f"{path}:2" in msg and "JSON" in msg
    assert f"{path}:3" in msg and "unique" in msg
    assert f"{path}:5" in msg and "'question'" in msg
    assert f"{path}:6" in msg and "'paraphrases'" in msg and "add it" in msg
    assert f"{path}:7" in msg and "duplicate set_id" in msg
    assert isinstance(ei.value, ValueError)


def test_read_reports_nested_field(tmp_path):
    bad = _set().model_dump()
    bad["paraphrases"][1]["passages"][0].pop("text")
    path = tmp_path / "n.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"n\.jsonl:1: field 'paraphrases\[1\]\.passages\[0\]\.text'"):
        read_psets(path)


def test_prompts():
    ps = [Passage(id="a", title="Varenko", text="Varenko was born in Oslandia."), Passage(id="b", text="x y.")]
    p = build_rag_prompt("Where was Varenko born?", ps)
    assert p == "[1] Varenko: Varenko was born in Oslandia.\n[2] x y.\nQuestion: Where was Varenko born?\nAnswer:"
    assert build_rag_prompt("Q?", ps, template="closed_book") == "Question: Q?\nAnswer:"
    assert "sentences" in build_rag_prompt("Q?", ps, template="rag_long_answer")
    assert build_rag_prompt("Q?", []) == "Question: Q?\nAnswer:"
    with pytest.raises(ValueError, match="unknown prompt template"):
        build_rag_prompt("Q?", ps, template="nope")


def test_training_rows():
    rows = to_training_rows([_set("a"), _set("b", n=1)])
    assert len(rows) == 3
    r = rows[1]
    assert set(r) == {"prompt", "set_id", "paraphrase_id", "answers", "question", "passage_ids"}
    assert r["prompt"][0]["role"] == "user" and len(r["prompt"]) == 1
    assert r["prompt"][0]["content"].endswith("Question: What is the birthplace of Varenko?\nAnswer:")
    assert (r["set_id"], r["paraphrase_id"], r["answers"], r["passage_ids"]) == ("a", 1, ["Oslandia"], ["p1"])
    closed = to_training_rows([_set()], "closed_book")
    assert closed[0]["prompt"][0]["content"] == "Question: Where was Varenko born?\nAnswer:"
    custom = to_training_rows([_set()], lambda q, ps: f"{len(ps)}|{q}")
    assert custom[0]["prompt"][0]["content"] == "1|Where was Varenko born?"
