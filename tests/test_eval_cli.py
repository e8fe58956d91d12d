"""`grpo-sim eval` end to end through typer's CliRunner: outputs, baseline comparison, replay, bad input."""

import json

import pytest
import typer
from test_eval_metrics import PREDS, SETS
from typer.testing import CliRunner

from grpo_sim.data import write_psets
from grpo_sim.eval.cli import eval_command, parse_metrics

from trainer_helpers import build_policy, demo_rows

REQUIRED = (
    "accuracy_em",
    "accuracy_f1",
    "consistency_e2e_bleu2",
    "consistency_e2e_rouge_l",
    "consistency_e2e_exact",
    "consistency_e2e_embedding",
    "consistency_generator_bleu2",
    "consistency_retriever_jaccard",
)


def _app():
    app = typer.Typer()
    app.command("eval")(eval_command)

    @app.command("version")
    def version():  # a second command, so "eval" is a subcommand as in the real CLI
        print("0")

    return app


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    policy = build_policy(root / "policy", num_sets=6, num_paraphrases=3)
    train, _, _, _ = demo_rows(6, 3)
    data = root / "data.jsonl"
    write_psets(data, train[:3])
    return root, policy, data


def _run(*args):
    result = CliRunner().invoke(_app(), ["eval", *map(str, args)])
    return result


def test_eval_then_compare_with_baseline_and_replay(setup):
    root, policy, data = setup
    out = root / "base_eval"
    r = _run(policy, data, "-o", out, "--max-new-tokens", 3, "--n-boot", 100, "--batch-size", 4)
    assert r.exit_code == 0, r.output
    assert "consistency" in r.output and "wrote" in r.output
    for name in (
        "predictions.jsonl",
        "per_set.jsonl",
        "summary.json",
        "report.md",
        "plot_summary_bars.png",
        "plot_consistency_hist.png",
        "plot_accuracy_by_position.png",
    ):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads((out / "summary.json").read_text())
    m = summary["models"]["model"]
    assert m["num_sets"] == 3
    assert all(summary[k] == v for k, v in m.items())  # the model's numbers are also at the top level
    for key in REQUIRED:
        assert 0.0 <= m[key] <= 1.0 and len(m[f"{key}_ci"]) == 2, key
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 18 and {p["level"] for p in preds} == {"e2e", "generator"}
    assert set(preds[0]) >= {"set_id", "paraphrase_id", "prompt", "passage_ids", "answer"}
    assert len((out / "per_set.jsonl").read_text().splitlines()) == 3
    # the same model against its own earlier results: zero paired differences
    out2 = root / "after_eval"
    r = _run(
        policy,
        data,
        "-o",
        out2,
        "--max-new-tokens",
        3,
        "--n-boot",
        100,
        "--baseline",
        out,
        "--metrics",
        "bleu2,exact_match",
        "--levels",
        "e2e",
    )
    assert r.exit_code == 0, r.output
    s2 = json.loads((out2 / "summary.json").read_text())
    assert set(s2["models"]) == {"model", "baseline"} and s2["config"]["baseline"]["source"] == "replayed"
    diffs = s2["comparison"]["differences"]
    assert diffs["consistency_e2e_bleu2"]["diff"] == 0.0 and diffs["consistency_e2e_bleu2"]["ci"] == [0.0, 0.0]
    assert "consistency_generator_bleu2" not in s2["models"]["model"]
    report = (out2 / "report.md").read_text()
    assert "| metric | model | baseline | difference |" in report and "plot_summary_bars.png" in report
    # replay: the earlier predictions, no model
    out3 = root / "replayed"
    r = _run(
        "--replay",
        out / "predictions.jsonl",
        data,
        "-o",
        out3,
        "--metrics",
        "bleu2,exact_match",
        "--n-boot",
        100,
        "--no-plots",
        "-q",
    )
    assert r.exit_code == 0, r.output
    s3 = json.loads((out3 / "summary.json").read_text())["models"]["model"]
    assert s3["consistency_e2e_bleu2"] == m["consistency_e2e_bleu2"]
    assert s3["consistency_generator_exact"] == m["consistency_generator_exact"]
    assert not list(out3.glob("*.png"))


def test_replay_hand_checked_file(tmp_path):
    data = tmp_path / "data.jsonl"
    write_psets(data, SETS)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in PREDS))
    r = _run(
        "--replay",
        preds,
        data,
        "-o",
        tmp_path / "out",
        "--metrics",
        "bleu2,rouge_l,exact_match",
        "--n-boot",
        50,
        "--no-plots",
    )
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "out" / "summary.json").read_text())["models"]["model"]
    assert s["consistency_e2e_rouge_l"] == pytest.approx((1.6 / 6 + 1) / 2)
    assert s["consistency_retriever_jaccard"] == pytest.approx((1 / 6 + 1) / 2)
    assert s["accuracy_em"] == pytest.approx(2 / 3)
    # baseline given as an earlier summary.json only (no per-set rows): difference without interval
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "summary.json").write_text(
        json.dumps({"models": {"model": {"name": "old", "accuracy_em": 0.5, "accuracy_em_ci": [0.4, 0.6]}}})
    )
    r = _run(
        "--replay",
        preds,
        data,
        "-o",
        tmp_path / "out2",
        "--metrics",
        "exact_match",
        "--n-boot",
        50,
        "--no-plots",
        "--baseline",
        lone / "summary.json",
    )
    assert r.exit_code == 0, r.output
    comp = json.loads((tmp_path / "out2" / "summary.json").read_text())["comparison"]
    assert comp["differences"]["accuracy_em"]["diff"] == pytest.approx(2 / 3 - 0.5)
    assert comp["differences"]["accuracy_em"]["ci"] is None and "without intervals" in comp["note"]


def _error_line(r):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(setup, tmp_path):
    root, policy, data = setup
    line = _error_line(_run(tmp_path / "missing_model", data, "-o", tmp_path / "o"))
    assert "missing_model" in line and "does not exist" in line
    line = _error_line(_run(policy, tmp_path / "nope.jsonl", "-o", tmp_path / "o"))
    assert "nope.jsonl" in line
    # a data row without its question
    bad = tmp_path / "bad.jsonl"
    row = json.loads(data.read_text().splitlines()[0])
    del row["question"]
    bad.write_text(json.dumps(row) + "\n")
    line = _error_line(_run(policy, bad, "-o", tmp_path / "o"))
    assert "bad.jsonl:1" in line and "question" in line
    # a set with one paraphrase is no error: it is scored for accuracy, not consistency (docs/own-data.md; #22)
    solo = tmp_path / "solo.jsonl"
    row = json.loads(data.read_text().splitlines()[0])
    row["paraphrases"] = row["paraphrases"][:1]
    solo.write_text(json.dumps(row) + "\n")
    r = _run(policy, solo, "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert f"1 of 1 sets have a single wording (e.g. '{row['set_id']}')" in " ".join(r.output.split())
    # predictions without an answer column
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"set_id": "A", "paraphrase_id": 0}) + "\n")
    line = _error_line(_run("--replay", preds, "-o", tmp_path / "o"))
    assert "p.jsonl: line 1" in line and "'answer'" in line
    line = _error_line(_run(policy, data, "--metrics", "bleu2,nosuchmetric", "-o", tmp_path / "o"))
    assert "nosuchmetric" in line
    line = _error_line(_run(policy, data, "--levels", "e2e,everything", "-o", tmp_path / "o"))
    assert "everything" in line
    line = _error_line(_run(policy))
    assert "DATA" in line
    line = _error_line(_run("--replay", preds, data, "--judge-url", "http://127.0.0.1:9"))
    assert "--judge-model" in line


def test_judge_from_cli(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "data.jsonl"
    write_psets(data, SETS)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in PREDS))
    r = _run(
        "--replay",
        preds,
        data,
        "-o",
        tmp_path / "out",
        "--metrics",
        "exact_match",
        "--n-boot",
        0,
        "--judge-url",
        f"http://127.0.0.1:{port}",
        "--judge-model",
        "m",
        "--judge-retries",
        0,
    )
    line = _error_line(r)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in line and "unreachable" in line
    # a reachable (fake) endpoint: judge numbers in the summary, replies cached in the output dir
    from test_eval_judge import FakeServer

    with FakeServer() as srv:
        r = _run(
            "--replay",
            preds,
            data,
            "-o",
            tmp_path / "out",
            "--metrics",
            "exact_match",
            "--n-boot",
            20,
            "--no-plots",
            "--judge-url",
            srv.url,
            "--judge-model",
            "fake",
        )
        assert r.exit_code == 0, r.output
        assert len(srv.requests) == 8
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["models"]["model"]["consistency_e2e_judge"] == pytest.approx(2 / 3)
    assert s["config"]["judge"]["model"] == "fake" and (tmp_path / "out" / "judge_cache.json").is_file()


def test_parse_metrics():
    assert parse_metrics("bleu2, rouge_l,exact_match") == ["bleu2", "rouge_l", "exact_match"]
    assert parse_metrics("bleu2,embedding:model=/m,device=cpu,rouge_l") == [
        "bleu2",
        "embedding:model=/m,device=cpu",
        "rouge_l",
    ]
    assert parse_metrics("b=bleu2;e=embedding:model=/m,device=cpu") == ["b=bleu2", "e=embedding:model=/m,device=cpu"]
    with pytest.raises(ValueError):
        parse_metrics(" , ")
