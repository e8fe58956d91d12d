"""Importers: small fixtures written in each dataset's release format, malformed rows, the hub
path (``datasets.load_dataset`` stubbed), and the real samples in ../shared/realdata as they are."""

import gzip
import json

import pytest

from grpo_sim.data import DataError, read_corpus, read_psets, write_psets
from grpo_sim.data.importers import (
    corpus_from_sets,
    export_corpus,
    import_2wikimultihopqa,
    import_dataset,
    import_eli5,
    import_hotpotqa,
    import_musique,
    import_triviaqa,
)

from realdata import REALDATA, needs_realdata


def _dump(path, obj, jsonl=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj, indent=2))
    return path


def _check_common(sets):
    for s in sets:
        assert len(s.paraphrases) == 1 and s.paraphrases[0].paraphrase_id == 0
        assert s.paraphrases[0].question == s.question and s.paraphrases[0].passages == []
        assert s.metadata["source_id"]


# ------------------------------------------------------------------------------------------
# Own fixtures, one per format
# ------------------------------------------------------------------------------------------


def test_triviaqa_fixture_with_evidence(tmp_path):
    data = {
        "Data": [
            {
                "Answer": {
                    "Aliases": ["Oslandia City", "OSLANDIA", "Oslandia (city)"],
                    "MatchedWikiEntityName": "Oslandia",
                    "NormalizedAliases": ["oslandia city", "oslandia", "oslandia city"],
                    "NormalizedValue": "oslandia",
                    "Type": "WikipediaEntity",
                    "Value": "Oslandia",
                },
                "EntityPages": [{"DocSource": "TagMe", "Filename": "Varenko.txt", "Title": "Varenko"}],
                "Question": "Where was Varenko born?",
                "QuestionId": "tc_1",
                "QuestionSource": "http://example.org/",
                "SearchResults": [
                    {
                        "Description": "Varenko ...",
                        "Filename": "1/1_1.txt",
                        "Rank": 0,
                        "Title": "Varenko bio",
                        "Url": "http://example.org/v",
                    },
                    {
                        "Description": "missing doc",
                        "Filename": "1/1_2.txt",
                        "Rank": 1,
                        "Title": "Gone",
                        "Url": "http://example.org/g",
                    },
                ],
            },
            {"EntityPages": [], "Question": "Who founded Zeltek?", "QuestionId": "tc_2", "SearchResults": []},
        ],
        "Domain": "Web",
        "Split": "dev",
        "VerifiedEval": False,
        "Version": 1.0,
    }
    f = _dump(tmp_path / "qa" / "web-dev.json", data)
    ev = tmp_path / "evidence"
    (ev / "wikipedia").mkdir(parents=True)
    (ev / "web" / "1").mkdir(parents=True)
    (ev / "wikipedia" / "Varenko.txt").write_text(" ".join(f"w{i}" for i in range(250)))
    (ev / "web" / "1" / "1_1.txt").write_text("Varenko was born in Oslandia.")

    sets = import_triviaqa(f)
    _check_common(sets)
    a, b = sets
    assert (a.set_id, a.question) == ("tc_1", "Where was Varenko born?")
    assert a.answers == ["Oslandia", "Oslandia City", "Oslandia (city)"]  # value first, case-insensitive dedupe
    assert a.metadata["split"] == "dev" and a.metadata["domain"] == "Web"
    assert a.metadata["answer_type"] == "WikipediaEntity"
    assert a.metadata["passages"] == []  # no evidence_dir: references only
    assert [e["filename"] for e in a.metadata["evidence"]] == ["Varenko.txt", "1/1_1.txt", "1/1_2.txt"]
    assert b.answers == []  # test-style row without Answer

    sets = import_triviaqa(f, evidence_dir=ev)
    ps = sets[0].metadata["passages"]
    assert [p["id"] for p in ps] == [
        "triviaqa:Varenko.txt#0",
        "triviaqa:Varenko.txt#1",
        "triviaqa:Varenko.txt#2",
        "triviaqa:1/1_1.txt#0",
    ]
    assert len(ps[0]["text"].split()) == 100 and len(ps[2]["text"].split()) == 50
    assert ps[3] == {"id": "triviaqa:1/1_1.txt#0", "title": "Varenko bio", "text": "Varenko was born in Oslandia."}
    with pytest.raises(DataError, match="evidence_dir"):
        import_triviaqa(f, evidence_dir=tmp_path / "nope")


HOTPOT_ROWS = [
    {
        "_id": "h1",
        "answer": "Oslandia",
        "question": "Where was the founder of Zeltek born?",
        "supporting_facts": [["Zeltek", 0], ["Varenko", 1]],
        "context": [
            ["Zeltek", ["Zeltek is a company.", " It was founded by Varenko."]],
            ["Varenko", ["Varenko is a person.", " He was born in Oslandia."]],
            ["Brolix", ["Brolix employs Tolmir."]],
        ],
        "type": "bridge",
        "level": "hard",
    },
    {
        "_id": "h2",
        "answer": "yes",
        "question": "Are Zeltek and Brolix both companies?",
        "supporting_facts": [["Zeltek", 0], ["Brolix", 0]],
        "context": [
            ["Zeltek", ["Zeltek is a company.", " It was founded by Varenko."]],
            ["Brolix", ["Brolix employs Tolmir."]],
        ],
        "type": "comparison",
        "level": "easy",
    },
    {"_id": "h3", "question": "Who runs Brolix?", "context": [["Brolix", ["Brolix employs Tolmir."]]]},  # test row
]


def test_hotpotqa_fixture(tmp_path):
    sets = import_hotpotqa(_dump(tmp_path / "hotpot_dev_distractor_v1.json", HOTPOT_ROWS), split="dev")
    _check_common(sets)
    h1, h2, h3 = sets
    assert h1.answers == ["Oslandia"] and h2.answers == ["yes"] and h3.answers == []
    texts = [p["text"] for p in h1.metadata["passages"]]
    assert texts[0] == "Zeltek is a company. It was founded by Varenko."  # leading-space sentences joined
    assert [p["title"] for p in h1.metadata["passages"]] == ["Zeltek", "Varenko", "Brolix"]
    ids = [p["id"] for p in h1.metadata["passages"]]
    assert h1.metadata["supporting_passage_ids"] == ids[:2]
    assert h1.metadata["type"] == "bridge" and h1.metadata["split"] == "dev"
    # the same paragraph in two questions gets the same id -> one corpus entry
    assert h2.metadata["passages"][0]["id"] == ids[0]
    corpus = corpus_from_sets(sets)
    assert len(corpus) == 3 and len({p.id for p in corpus}) == 3


def test_hotpotqa_hub_layout_rows(tmp_path):
    row = {
        "id": "h9",
        "question": "Where was the founder of Zeltek born?",
        "answer": "Oslandia",
        "type": "bridge",
        "level": "hard",
        "supporting_facts": {"title": ["Zeltek", "Varenko"], "sent_id": [0, 1]},
        "context": {
            "title": ["Zeltek", "Varenko"],
            "sentences": [
                ["Zeltek is a company.", " It was founded by Varenko."],
                ["Varenko is a person.", " He was born in Oslandia."],
            ],
        },
    }
    sets = import_hotpotqa(_dump(tmp_path / "h.jsonl", [row, {**row, "id": "h10"}], jsonl=True))
    assert [s.set_id for s in sets] == ["h9", "h10"]
    assert len(sets[0].metadata["supporting_passage_ids"]) == 2


def test_2wiki_fixture_with_aliases(tmp_path):
    rows = [
        {
            "_id": "w1",
            "type": "compositional",
            "question": "Where was the founder of Zeltek born?",
            "context": [
                ["Zeltek", ["Zeltek is a company.", "It was founded by Varenko."]],
                ["Varenko", ["Varenko( born 1950) is a person.", "He was born in Oslandia."]],
            ],
            "entity_ids": "Q1_Q2",
            "supporting_facts": [["Zeltek", 1], ["Varenko", 1]],
            "evidences": [["Zeltek", "founded by", "Varenko"], ["Varenko", "place of birth", "Oslandia"]],
            "answer": "Oslandia",
            "evidences_id": [],
            "answer_id": "Q99",
        },
        {
            "_id": "w2",
            "type": "comparison",
            "question": "Which is older, Zeltek or Brolix?",
            "context": [["Brolix", ["Brolix was founded in 1901."]]],
            "entity_ids": "Q3_Q4",
            "supporting_facts": [["Brolix", 0]],
            "evidences": [],
            "answer": "Brolix",
            "evidences_id": [],
            "answer_id": None,
        },
    ]
    f = _dump(tmp_path / "dev.json", rows)
    sets = import_2wikimultihopqa(f)
    assert sets[0].answers == ["Oslandia"]
    assert sets[0].metadata["passages"][0]["text"] == "Zeltek is a company. It was founded by Varenko."
    # id_aliases.json next to the data file is picked up
    _dump(
        tmp_path / "id_aliases.json",
        [{"Q_id": "Q99", "aliases": ["Oslandia City", "oslandia"], "demonyms": ["Oslandian"]}],
        jsonl=True,
    )
    sets = import_2wikimultihopqa(f)
    assert sets[0].answers == ["Oslandia", "Oslandia City", "Oslandian"]
    assert sets[1].answers == ["Brolix"] and sets[0].metadata["evidences"][0][1] == "founded by"
    assert sets[0].metadata["supporting_passage_ids"] == [p["id"] for p in sets[0].metadata["passages"]]


def test_musique_fixture_jsonl_and_gzip(tmp_path):
    rows = [
        {
            "id": "2hop__1_2",
            "paragraphs": [
                {
                    "idx": 0,
                    "title": "Zeltek",
                    "paragraph_text": "Zeltek was founded by Varenko.",
                    "is_supporting": True,
                },
                {"idx": 1, "title": "Brolix", "paragraph_text": "Brolix employs Tolmir.", "is_supporting": False},
                {
                    "idx": 2,
                    "title": "Varenko",
                    "paragraph_text": "Varenko was born in Oslandia.",
                    "is_supporting": True,
                },
            ],
            "question": "Where was the founder of Zeltek born?",
            "question_decomposition": [
                {"id": 1, "question": "Zeltek >> founded by", "answer": "Varenko", "paragraph_support_idx": 0},
                {"id": 2, "question": "Where was #1 born?", "answer": "Oslandia", "paragraph_support_idx": 2},
            ],
            "answer": "Oslandia",
            "answer_aliases": ["Oslandia City"],
            "answerable": True,
        },
        {
            "id": "2hop__3_4",
            "paragraphs": [],
            "question": "Who employs Varenko?",
            "question_decomposition": [],
            "answer": "Brolix",
            "answer_aliases": [],
            "answerable": False,
        },
    ]
    f = _dump(tmp_path / "musique_full_v1.0_dev.jsonl", rows, jsonl=True)
    sets = import_musique(f)
    _check_common(sets)
    assert sets[0].answers == ["Oslandia", "Oslandia City"]
    assert sets[0].metadata["hops"] == "2hop" and sets[0].metadata["answerable"] is True
    assert len(sets[0].metadata["supporting_passage_ids"]) == 2
    assert sets[0].metadata["question_decomposition"][1]["answer"] == "Oslandia"
    assert [s.set_id for s in import_musique(f, answerable_only=True)] == ["2hop__1_2"]
    gz = tmp_path / "m.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(f.read_text())
    assert import_musique(gz) == sets


def test_eli5_fixtures(tmp_path):
    rows = [
        {
            "q_id": "e1",
            "category": "Physics",
            "title": "Why is the sky blue?",
            "title_urls": {"url": []},
            "selftext": "I never got it.",
            "selftext_urls": {"url": []},
            "subreddit": "explainlikeimfive",
            "answers": {
                "a_id": ["a", "b", "c", "d", "e"],
                "text": [
                    "Low score answer.",
                    "Rayleigh scattering of sunlight.",
                    "[deleted]",
                    "Blue light scatters more.",
                    "Tie with the best.",
                ],
                "text_urls": [[], [], [], [], []],
                "score": [1, 12, 50, 7, 12],
            },
        },
    ]
    sets = import_eli5(_dump(tmp_path / "eli5-category-test.json", rows))
    s = sets[0]
    assert s.question == "Why is the sky blue?" and s.metadata["selftext"] == "I never got it."
    assert s.answers == ["Rayleigh scattering of sunlight.", "Tie with the best.", "Blue light scatters more."]
    assert s.metadata["answer_scores"] == [12, 12, 7] and s.metadata["answer_ids"] == ["b", "e", "d"]
    assert s.metadata["passages"] == [] and s.metadata["category"] == "Physics"
    assert import_eli5(tmp_path / "eli5-category-test.json", max_answers=1)[0].answers == [
        "Rayleigh scattering of sunlight."
    ]
    kilt = [
        {
            "id": "k1",
            "input": "Why do cats purr?",
            "meta": {},
            "output": [
                {"answer": "To communicate.", "meta": {"score": 3}},
                {"answer": "Vibrating larynx muscles.", "meta": {"score": 9}},
                {"provenance": [{"wikipedia_id": "123", "title": "Purr"}]},
            ],
        }
    ]
    k = import_eli5(_dump(tmp_path / "eli5-dev-kilt.jsonl", kilt, jsonl=True))[0]
    assert (
        k.answers == ["Vibrating larynx muscles.", "To communicate."] and k.metadata["provenance"][0]["title"] == "Purr"
    )


def test_malformed_rows_are_all_reported(tmp_path):
    rows = [
        HOTPOT_ROWS[0],
        {**HOTPOT_ROWS[0], "_id": "bad-ctx", "context": [["Zeltek"]]},
        {"_id": "no-q", "answer": "x", "context": []},
        "not an object",
        {**HOTPOT_ROWS[0], "_id": "bad-answer", "answer": ["a", "b"]},
    ]
    f = _dump(tmp_path / "hotpot.json", rows)
    with pytest.raises(DataError) as ei:
        import_hotpotqa(f)
    msg = str(ei.value)
    assert {r for r, _, _ in ei.value.problems} == {2, 3, 4, 5}
    assert f"{f}: row 2: field 'context[0]'" in msg and "'bad-ctx'" in msg
    assert f"{f}: row 3: field 'question': field is missing" in msg
    assert f"{f}: row 4: field '<row>'" in msg
    assert f"{f}: row 5: field 'answer': expected str" in msg

    bad_trivia = _dump(tmp_path / "t.json", {"Data": [{"QuestionId": "tc_9", "Question": "Q?", "Answer": "Oslo"}]})
    with pytest.raises(DataError, match=r"row 1: field 'Answer'.*'tc_9'"):
        import_triviaqa(bad_trivia)
    with pytest.raises(DataError, match="'Data'"):
        import_triviaqa(_dump(tmp_path / "t2.json", {"rows": []}))
    eli = _dump(tmp_path / "e.json", [{"q_id": "e", "title": "Q?", "answers": {"text": ["a", "b"], "score": [1]}}])
    with pytest.raises(DataError, match=r"row 1: field 'answers.score'"):
        import_eli5(eli)
    mus = tmp_path / "m.jsonl"
    mus.write_text(
        json.dumps({"id": "x", "question": "Q?", "answer": "A", "paragraphs": [{"title": "t"}]}) + "\n{oops\n"
    )
    with pytest.raises(DataError) as ei:
        import_musique(mus)
    assert f"{mus}: line 2: field '<json>'" in str(
        ei.value
    ) and f"{mus}: line 1: field 'paragraphs[0].paragraph_text'" in str(ei.value)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"_id": "a", "question": "q?"}, {"_id": ')
    with pytest.raises(DataError, match="not valid JSON"):
        import_hotpotqa(broken)


def test_dispatcher(tmp_path, monkeypatch):
    f = _dump(tmp_path / "h.json", HOTPOT_ROWS)
    assert [s.set_id for s in import_dataset("HotpotQA", f, limit=2)] == ["h1", "h2"]
    assert import_dataset("hotpot_qa", str(f), split="dev")[0].metadata["split"] == "dev"
    with pytest.raises(DataError, match="unknown dataset 'squad'"):
        import_dataset("squad", f)
    with pytest.raises(DataError, match="file not found"):
        import_dataset("hotpotqa", tmp_path / "missing.json")
    with pytest.raises(DataError, match="file not found"):
        import_dataset("hotpotqa", "./missing.json")
    # duplicate ids get a suffix instead of failing validation later
    dup = import_dataset("hotpotqa", _dump(tmp_path / "d.json", [HOTPOT_ROWS[0], HOTPOT_ROWS[0]]))
    assert [s.set_id for s in dup] == ["h1", "h1~2"] and dup[1].metadata["duplicate_of_id"] == "h1"

    # hub names go through datasets.load_dataset (stubbed: no network here)
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        return [
            {
                "id": "hub1",
                "question": "Q1?",
                "answer": "A1",
                "type": "bridge",
                "level": "easy",
                "supporting_facts": {"title": ["T"], "sent_id": [0]},
                "context": {"title": ["T"], "sentences": [["Sentence one.", " Two."]]},
            }
        ] * 3

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    sets = import_dataset("hotpotqa", "hotpotqa/hotpot_qa", split="validation", limit=2)
    assert calls == [("hotpotqa/hotpot_qa", "distractor", "validation", True)]
    assert [s.set_id for s in sets] == ["hub1", "hub1~2"]
    assert sets[0].metadata["passages"][0]["text"] == "Sentence one. Two." and sets[0].metadata["hf_dataset"]


def test_export_corpus_and_roundtrip(tmp_path):
    sets = import_hotpotqa(_dump(tmp_path / "h.json", HOTPOT_ROWS))
    n = export_corpus(sets, tmp_path / "corpus.jsonl")
    assert n == 3 and [p.id for p in read_corpus(tmp_path / "corpus.jsonl")] == [p.id for p in corpus_from_sets(sets)]
    write_psets(tmp_path / "sets.jsonl", sets)
    assert read_psets(tmp_path / "sets.jsonl") == sets


# ------------------------------------------------------------------------------------------
# The real samples, read in place
# ------------------------------------------------------------------------------------------

REAL = [
    # (dataset, file, rows, passages per row)
    ("triviaqa", "triviaqa_rc_web_dev.sample.json", 2, 0),
    ("triviaqa", "triviaqa_rc_web_train.sample.json", 3, 0),
    ("triviaqa", "triviaqa_rc_wikipedia_dev.sample.json", 2, 0),
    ("triviaqa", "triviaqa_official_sample.json", 1, 0),
    ("hotpotqa", "hotpotqa_dev_distractor.sample.json", 5, 10),
    ("2wikimultihopqa", "2wikimultihop_dev.sample.json", 5, 10),
    ("musique", "musique_ans_train.sample.jsonl", 5, 20),
    ("eli5", "eli5_category_test.sample.json", 5, 0),
]


@needs_realdata
@pytest.mark.parametrize("name,fname,rows,per_row", REAL, ids=[r[1] for r in REAL])
def test_real_samples_import(name, fname, rows, per_row, tmp_path):
    sets = import_dataset(name, REALDATA / fname)
    assert len(sets) == rows
    _check_common(sets)
    assert all(s.answers for s in sets)
    assert all(len(s.metadata["passages"]) == per_row for s in sets)
    assert all(s.metadata["source"] == name for s in sets)
    write_psets(tmp_path / "out.jsonl", sets)
    assert read_psets(tmp_path / "out.jsonl") == sets  # passes the same validation as the trainer's
    if per_row:
        corpus = corpus_from_sets(sets)
        assert 0 < len(corpus) <= rows * per_row
        for s in sets:
            ids = {p["id"] for p in s.metadata["passages"]}
            assert set(s.metadata["supporting_passage_ids"]) <= ids and s.metadata["supporting_passage_ids"]


@needs_realdata
def test_real_sample_details():
    t = {s.set_id: s for s in import_dataset("triviaqa", REALDATA / "triviaqa_rc_web_train.sample.json")}
    assert t["tc_1"].question == "Which American-born Sinclair won the Nobel Prize for Literature in 1930?"
    assert t["tc_1"].answers[0] == "Sinclair Lewis" and "Harry Sinclair Lewis" in t["tc_1"].answers
    assert t["tc_1"].metadata["split"] == "train" and t["tc_1"].metadata["answer_type"] == "WikipediaEntity"
    assert "york" in t["tc_3"].metadata["normalized_aliases"]
    off = import_dataset("triviaqa", REALDATA / "triviaqa_official_sample.json")[0]
    assert off.set_id == "tc_33" and off.answers[0] == "Sunset Boulevard" and "split" not in off.metadata
    assert off.metadata["evidence"][0]["filename"] == "Andrew_Lloyd_Webber.txt"

    h = import_dataset("hotpotqa", REALDATA / "hotpotqa_dev_distractor.sample.json")
    assert h[0].set_id == "5a8b57f25542995d1e6f1371" and h[0].answers == ["yes"]
    assert h[0].metadata["type"] == "comparison" and h[0].metadata["level"] == "hard"
    ed = next(p for p in h[0].metadata["passages"] if p["title"] == "Ed Wood")
    assert ed["text"].startswith("Edward Davis Wood Jr. (October 10, 1924")
    assert "  " not in h[0].metadata["passages"][0]["text"]
    titles = {p["id"]: p["title"] for p in h[0].metadata["passages"]}
    assert sorted(titles[i] for i in h[0].metadata["supporting_passage_ids"]) == ["Ed Wood", "Scott Derrickson"]

    w = import_dataset("2wiki", REALDATA / "2wikimultihop_dev.sample.json")
    assert w[0].question == "When did Lothair Ii's mother die?" and w[0].answers == ["20 March 851"]
    assert w[0].metadata["type"] == "compositional" and "answer_id" not in w[0].metadata
    assert w[2].metadata["answer_id"] == "Q39178" and w[2].answers == ["Port of Spain"]
    assert w[0].metadata["passages"][0]["text"].startswith("Teutberga( died 11 November 875) was a queen")

    m = {s.set_id: s for s in import_dataset("musique", REALDATA / "musique_ans_train.sample.jsonl")}
    assert m["2hop__150763_14904"].answers == ["G. Stanley Hall", "Stanley Hall"]
    assert m["3hop2__130734_798404_834843"].answers == [
        "U.S.",
        "America",
        "U.S",
        "the United States",
        "United States",
        "US",
    ]
    assert len(m["2hop__150763_14904"].metadata["supporting_passage_ids"]) == 2
    assert m["4hop1__709382_146811_31223_91015"].metadata["hops"] == "4hop1"

    e = {s.set_id: s for s in import_dataset("eli5", REALDATA / "eli5_category_test.sample.json")}
    assert list(e) == ["5lcm18", "5lcp4z", "5lexas", "5lgxos", "5lja1d"]
    s = e["5lcp4z"]
    assert s.question == "Why are electrical lines slack between poles?"
    assert s.metadata["answer_scores"] == [9, 6, 4] and len(s.answers) == 3
    assert e["5lcm18"].answers[0].startswith("The XBox is emulating NES hardware")  # the score-13 answer
    assert e["5lcm18"].metadata["category"] == "Engineering" and "Xbox One" in e["5lcm18"].metadata["selftext"]


@needs_realdata
def test_real_samples_corpus_export(tmp_path):
    sets = import_dataset("hotpotqa", REALDATA / "hotpotqa_dev_distractor.sample.json") + import_dataset(
        "musique", REALDATA / "musique_ans_train.sample.jsonl"
    )
    n = export_corpus(sets, tmp_path / "c.jsonl")
    corpus = read_corpus(tmp_path / "c.jsonl")
    assert n == len(corpus) and len({p.id for p in corpus}) == n
    assert n < 5 * 10 + 5 * 20  # MuSiQue rows share paragraphs: stored once
