"""``grpo-sim data ...`` through typer's CliRunner on an app that mounts the data app, plus the
schema helpers the commands use (Hugging Face form, corpus files, validation reports)."""

import json

import pytest
import typer
from typer.testing import CliRunner

from grpo_sim.data import (
    DataError,
    load_psets,
    psets_from_hf,
    psets_to_hf,
    read_corpus,
    read_psets,
    validate_file,
    write_corpus,
    write_psets,
)
from grpo_sim.data.cli import app as data_app
from grpo_sim.demo.world import build_demo_dataset

from realdata import REALDATA, needs_realdata

root = typer.Typer()
root.add_typer(data_app, name="data")


@root.callback()
def _root():
    """test root"""


def run(*args):
    return CliRunner().invoke(root, ["data", *map(str, args)])


def _demo(tmp_path, n_sets=4, n_par=1):
    train, _, corpus = build_demo_dataset(n_sets, 0, num_paraphrases=n_par, seed=3)
    bare = [
        s.model_copy(update={"paraphrases": [p.model_copy(update={"passages": []}) for p in s.paraphrases]})
        for s in train
    ]
    write_psets(tmp_path / "sets.jsonl", bare)
    write_corpus(tmp_path / "corpus.jsonl", corpus)
    return bare, corpus


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("validate", "import", "paraphrase", "retrieve", "corpus"):
        assert cmd in r.output


def test_validate_ok_and_every_bad_row(tmp_path):
    _demo(tmp_path)
    r = run("validate", tmp_path / "sets.jsonl")
    assert r.exit_code == 0, r.output
    assert "OK - 4 sets, 4 paraphrases" in r.stdout

    good = json.loads((tmp_path / "sets.jsonl").read_text().splitlines()[0])
    rows = [
        json.dumps(good),
        "{broken",
        json.dumps({**good, "set_id": "b", "paraphrases": []}),
        json.dumps({**good, "set_id": "c", "answers": [1, 2]}),
        json.dumps(
            {**good, "set_id": "d", "paraphrases": [{"paraphrase_id": 0, "question": "q", "passages": [{"id": "p"}]}]}
        ),
        json.dumps({**good, "extra": 1, "set_id": "e"}),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows) + "\n")
    r = run("validate", bad)
    assert r.exit_code == 2
    err = r.stderr
    assert "Traceback" not in r.output
    for line, field in [
        (2, "<json>"),
        (3, "paraphrases"),
        (4, "answers[0]"),
        (4, "answers[1]"),
        (5, "paraphrases[0].passages[0].text"),
        (6, "extra"),
    ]:
        assert f"{bad}:{line}: field '{field}'" in err, (line, field, err)
    assert "add one" in err and "remove it or move it into 'metadata'" in err
    assert validate_file(bad)[0][0] == 2

    r = run("validate", tmp_path / "missing.jsonl")
    assert r.exit_code == 2 and "file not found" in r.stderr


def test_hf_dataset_form(tmp_path):
    bare, _ = _demo(tmp_path, n_par=3)
    sets = read_psets(tmp_path / "sets.jsonl")
    ds = psets_to_hf(sets)
    assert ds.num_rows == 4 and set(ds.column_names) == {"set_id", "question", "paraphrases", "answers", "metadata"}
    assert psets_from_hf(ds) == sets
    ds.save_to_disk(str(tmp_path / "hf"))
    assert load_psets(tmp_path / "hf") == sets
    r = run("validate", tmp_path / "hf")
    assert r.exit_code == 0 and "OK - 4 sets, 12 paraphrases" in r.stdout
    rows = [dict(x) for x in ds]
    rows[1]["metadata"] = "{not json"
    rows[2]["question"] = ""
    rows[3]["set_id"] = rows[0]["set_id"]
    with pytest.raises(DataError) as ei:
        psets_from_hf(rows, source="mem")
    assert [(p[0], p[1]) for p in ei.value.problems] == [(2, "metadata"), (3, "question"), (4, "set_id")]


def test_corpus_reader_reports_every_bad_line(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n{"id": "", "text": "z"}\n{"title": "t"}\nnope\n')
    with pytest.raises(DataError) as ei:
        read_corpus(f)
    assert {p[0] for p in ei.value.problems} == {2, 3, 4, 5}
    assert "duplicate passage id 'a'" in str(ei.value) and "passage corpus" in str(ei.value)
    f.write_text("\n")
    with pytest.raises(DataError, match="no passages"):
        read_corpus(f)


@needs_realdata
@pytest.mark.parametrize(
    "name,fname,corpus",
    [
        ("triviaqa", "triviaqa_rc_web_train.sample.json", False),
        ("hotpotqa", "hotpotqa_dev_distractor.sample.json", True),
        ("2wikimultihopqa", "2wikimultihop_dev.sample.json", True),
        ("musique", "musique_ans_train.sample.jsonl", True),
        ("eli5", "eli5_category_test.sample.json", False),
    ],
)
def test_import_real_samples(name, fname, corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    args = ["import", name, REALDATA / fname, "--out", out, "--limit", 2]
    if corpus:
        args += ["--corpus-out", tmp_path / "corpus.jsonl"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert f"imported 2 {name} questions" in r.stdout
    assert run("validate", out).exit_code == 0
    assert len(read_psets(out)) == 2
    if corpus:
        assert len(read_corpus(tmp_path / "corpus.jsonl")) > 0


@needs_realdata
def test_real_pipeline_end_to_end(tmp_path):
    """import -> template paraphrases -> BM25 retrieval over the dataset's own paragraphs."""
    sets_f, corpus_f = tmp_path / "h.jsonl", tmp_path / "corpus.jsonl"
    r = run(
        "import",
        "hotpotqa",
        REALDATA / "hotpotqa_dev_distractor.sample.json",
        "--out",
        sets_f,
        "--corpus-out",
        corpus_f,
    )
    assert r.exit_code == 0, r.output and "wrote 50 distinct passages" in r.stdout
    r = run("paraphrase", sets_f, "--out", tmp_path / "p.jsonl", "--backend", "template", "--n", "3", "--no-progress")
    assert r.exit_code == 0, r.output
    r = run(
        "retrieve",
        tmp_path / "p.jsonl",
        "--corpus",
        corpus_f,
        "--out",
        tmp_path / "r.jsonl",
        "--k",
        "3",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "retriever consistency" in r.stdout and "supporting passage" in r.stdout
    sets = read_psets(tmp_path / "r.jsonl")
    assert all(len(p.passages) == 3 for s in sets for p in s.paraphrases)
    assert all(len(s.paraphrases) >= 3 for s in sets)


def test_import_errors(tmp_path):
    r = run("import", "squad", tmp_path / "x.json", "--out", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "unknown dataset 'squad'" in r.stderr and "hotpotqa" in r.stderr
    r = run("import", "musique", tmp_path / "x.jsonl", "--out", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "file not found" in r.stderr
    bad = tmp_path / "h.json"
    bad.write_text(json.dumps([{"_id": "a", "answer": "x", "context": []}, {"_id": "b", "question": 3}]))
    r = run("import", "hotpotqa", bad, "--out", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{bad}: row 1: field 'question'" in r.stderr and f"{bad}: row 2: field 'question'" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
    r = run("import", "hotpotqa", bad, "--out", tmp_path / "o.jsonl", "--evidence-dir", tmp_path)
    assert r.exit_code == 2 and "triviaqa only" in r.stderr


def test_paraphrase_template_and_option_errors(tmp_path):
    _demo(tmp_path, n_sets=3)
    out = tmp_path / "p.jsonl"
    r = run("paraphrase", tmp_path / "sets.jsonl", "--out", out, "--backend", "template", "--n", "4", "--no-progress")
    assert r.exit_code == 0, r.output
    sets = read_psets(out)
    assert [len(s.paraphrases) for s in sets] == [5, 5, 5]
    assert "kept 12" in r.stdout and "requests 0" in r.stdout
    assert not list(tmp_path.glob("*.cache.jsonl"))  # template backend: no cache unless asked

    r = run("paraphrase", tmp_path / "sets.jsonl", "--out", out, "--backend", "openai", "--model", "m")
    assert r.exit_code == 2 and "--url" in r.stderr
    r = run("paraphrase", tmp_path / "sets.jsonl", "--out", out, "--backend", "gpt")
    assert r.exit_code == 2 and "unknown --backend" in r.stderr
    tpl = tmp_path / "t.txt"
    tpl.write_text("no placeholder here")
    r = run("paraphrase", tmp_path / "sets.jsonl", "--out", out, "--backend", "template", "--template-file", tpl)
    assert r.exit_code == 2 and "{question}" in r.stderr
    r = run("paraphrase", tmp_path / "missing.jsonl", "--out", out, "--backend", "template")
    assert r.exit_code == 2 and "file not found" in r.stderr
    try:
        import vllm  # noqa: F401
    except ImportError:
        r = run(
            "paraphrase", tmp_path / "sets.jsonl", "--out", out, "--backend", "vllm", "--model", "m", "--no-progress"
        )
        assert r.exit_code == 2 and "pip install" in r.stderr and "Traceback" not in r.output


def test_retrieve_and_corpus_commands(tmp_path):
    _demo(tmp_path, n_sets=4, n_par=3)
    args = [
        "retrieve",
        tmp_path / "sets.jsonl",
        "--corpus",
        tmp_path / "corpus.jsonl",
        "--out",
        tmp_path / "r.jsonl",
        "--k",
        "2",
        "--index-dir",
        tmp_path / "idx",
        "--no-progress",
    ]
    r1, r2 = run(*args), run(*args)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert "(built " in r1.stdout and "(loaded " in r2.stdout
    assert "retriever consistency (mean pairwise Jaccard of top-2 ids across paraphrases): " in r1.stdout
    assert "over 4 sets" in r1.stdout
    assert all(len(p.passages) == 2 for s in read_psets(tmp_path / "r.jsonl") for p in s.paraphrases)

    r = run(
        "retrieve",
        tmp_path / "sets.jsonl",
        "--corpus",
        tmp_path / "corpus.jsonl",
        "--out",
        tmp_path / "x.jsonl",
        "--model",
        "intfloat/e5-base-v2",
    )
    assert r.exit_code == 2 and "--retriever dense" in r.stderr
    r = run(
        "retrieve",
        tmp_path / "sets.jsonl",
        "--corpus",
        tmp_path / "corpus.jsonl",
        "--out",
        tmp_path / "x.jsonl",
        "--retriever",
        "tfidf",
    )
    assert r.exit_code == 2 and "unknown --retriever" in r.stderr
    bad = tmp_path / "bad_corpus.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    r = run("retrieve", tmp_path / "sets.jsonl", "--corpus", bad, "--out", tmp_path / "x.jsonl")
    assert r.exit_code == 2 and f"{bad}:2: field 'id'" in r.stderr and "Traceback" not in r.output
    r = run(
        "retrieve",
        tmp_path / "sets.jsonl",
        "--corpus",
        tmp_path / "corpus.jsonl",
        "--out",
        tmp_path / "x.jsonl",
        "--k",
        "0",
    )
    assert r.exit_code == 2

    # corpus export from imported-style sets
    sets = read_psets(tmp_path / "sets.jsonl")
    sets[0].metadata["passages"] = [{"id": "p1", "title": "T", "text": "text one"}]
    sets[1].metadata["passages"] = [{"id": "p1", "title": "T", "text": "text one"}, {"id": "p2", "text": "two"}]
    write_psets(tmp_path / "withp.jsonl", sets)
    r = run("corpus", tmp_path / "withp.jsonl", "--out", tmp_path / "c2.jsonl")
    assert r.exit_code == 0 and "wrote 2 distinct passages" in r.stdout
    assert [p.id for p in read_corpus(tmp_path / "c2.jsonl")] == ["p1", "p2"]
    r = run("corpus", tmp_path / "sets.jsonl", "--out", tmp_path / "c3.jsonl")
    assert r.exit_code == 2 and "metadata.passages" in r.stderr
