"""``grpo-sim data merge | filter | validate --for-training`` and evaluation over all wordings."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.ops import filter_sets, merge_sets, training_problems
from grpo_sim.data.schema import DataError, Paraphrase, ParaphraseSet, load_psets, write_psets
from grpo_sim.recipe import load_recipe
from grpo_sim.runner import start_problems
from grpo_sim.sampler import SetLayoutError, build_set_layout

from recipe_helpers import config_only_model

runner = CliRunner()


def pset(set_id: str, n: int, answer: str = "x") -> ParaphraseSet:
    return ParaphraseSet(
        set_id=set_id,
        question=f"q {set_id}",
        answers=[answer],
        paraphrases=[Paraphrase(paraphrase_id=i, question=f"q {set_id} wording {i}") for i in range(n)],
    )


def test_merge_resolves_duplicate_ids_as_asked():
    web = [pset("tc_33", 2, "web"), pset("tc_2", 2)]
    wiki = [pset("tc_33", 3, "wiki"), pset("tc_40", 2)]
    with pytest.raises(
        DataError,
        match=r"1 set id\(s\) occur in more than one file \(tc_33 in web-dev.jsonl, "
        r"wikipedia-dev.jsonl\).*--on-duplicate prefix",
    ):
        merge_sets([("web-dev.jsonl", web), ("wikipedia-dev.jsonl", wiki)])
    merged, report = merge_sets([("a/web-dev.jsonl", web), ("b/wikipedia-dev.jsonl.gz", wiki)], "prefix")
    assert [s.set_id for s in merged] == ["web-dev:tc_33", "tc_2", "wikipedia-dev:tc_33", "tc_40"]
    assert merged[2].answers == ["wiki"] and merged[2].metadata["merged_from"] == {
        "file": "b/wikipedia-dev.jsonl.gz",
        "set_id": "tc_33",
    }
    assert report.renamed == {"tc_33": ["web-dev:tc_33", "wikipedia-dev:tc_33"]}
    merged, report = merge_sets([("web.jsonl", web), ("wiki.jsonl", wiki)], "keep-first")
    assert [(s.set_id, s.answers) for s in merged] == [("tc_33", ["web"]), ("tc_2", ["x"]), ("tc_40", ["x"])]
    assert report.dropped == [("tc_33", "wiki.jsonl")]
    with pytest.raises(DataError, match="collides"):
        merge_sets([("d1/same.jsonl", web), ("d2/same.jsonl", wiki)], "prefix")


def test_filter_drops_short_sets_and_equalises_counts():
    sets = [pset("a", 1), pset("b", 2), pset("c", 4), pset("d", 3)]
    kept, report = filter_sets(sets, min_paraphrases=2)
    assert [s.set_id for s in kept] == ["b", "c", "d"] and report.dropped_short == [("a", 1)]
    kept, report = filter_sets(sets, paraphrases_per_set=3)
    assert [(s.set_id, [p.paraphrase_id for p in s.paraphrases]) for s in kept] == [("c", [0, 1, 2]), ("d", [0, 1, 2])]
    assert report.dropped_short == [("a", 1), ("b", 2)] and report.truncated == 1 and report.paraphrases_removed == 1
    with pytest.raises(ValueError, match="say what to filter"):
        filter_sets(sets)


def test_training_problems_lists_every_rejected_set_with_the_trainers_checks():
    sets = [pset(f"single{i}", 1) for i in range(12)] + [pset("ok", 2)]
    problems = training_problems(sets, what="f.jsonl")
    assert len(problems) == 12 and all("has a single paraphrase" in p for p in problems)
    with pytest.raises(SetLayoutError) as trainer:  # the trainer's own check: first 10 shown, all carried
        build_set_layout(
            [s.set_id for s in sets for _ in s.paraphrases],
            [p.paraphrase_id for s in sets for p in s.paraphrases],
            "f.jsonl",
        )
    assert trainer.value.problems == problems and "first 10 of 12 shown" in str(trainer.value)
    uneven = training_problems([pset("a", 3), pset("b", 2), pset("c", 3), pset("d", 2), pset("e", 3)])
    assert "different numbers of paraphrases (2 sets with 2, 3 sets with 3)" in uneven[0]
    assert uneven[1] == "2 set(s) with 2 paraphrases (most have 3): 'b', 'd'"
    short = training_problems([pset("a", 3), pset("b", 2), pset("c", 4)], paraphrases_per_set=3)
    assert short == ["1 set(s) have fewer than data.paraphrases_per_set=3 paraphrases: 'b'"]
    assert training_problems([pset("a", 3), pset("c", 4)], paraphrases_per_set=3) == []


def test_cli_merge_filter_validate(tmp_path):
    write_psets(tmp_path / "web.jsonl", [pset("tc_33", 4), pset("tc_2", 1)])
    write_psets(tmp_path / "wiki.jsonl", [pset("tc_33", 3), pset("tc_40", 4), pset("tc_41", 2)])
    merged = tmp_path / "all.jsonl"
    refused = runner.invoke(
        app, ["data", "merge", str(tmp_path / "web.jsonl"), str(tmp_path / "wiki.jsonl"), "-o", str(merged)]
    )
    assert refused.exit_code == 2 and "tc_33" in refused.output and not merged.exists()
    result = runner.invoke(
        app,
        [
            "data",
            "merge",
            str(tmp_path / "web.jsonl"),
            str(tmp_path / "wiki.jsonl"),
            "-o",
            str(merged),
            "--on-duplicate",
            "prefix",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "duplicate set ids: 1 (tc_33)" in result.output and "renamed tc_33 -> web:tc_33, wiki:tc_33" in result.output
    assert runner.invoke(app, ["data", "validate", str(merged)]).exit_code == 0  # the schema is fine ...
    checked = runner.invoke(app, ["data", "validate", str(merged), "--for-training"])  # ... the trainer is not
    assert checked.exit_code == 2
    assert "'tc_2' has a single paraphrase" in checked.output and "--paraphrases-per-set" in checked.output
    filtered = tmp_path / "f.jsonl"
    result = runner.invoke(app, ["data", "filter", str(merged), "-o", str(filtered), "--paraphrases-per-set", "3"])
    assert result.exit_code == 0, result.output
    assert "dropped 2 set(s) with fewer than 3 paraphrases" in result.output and "1 with 1: tc_2" in result.output
    assert "1 with 2: tc_41" in result.output and "truncated 2 set(s)" in result.output
    assert [len(s.paraphrases) for s in load_psets(filtered)] == [3, 3, 3]
    ok = runner.invoke(app, ["data", "validate", str(filtered), "--for-training", "-n", "3"])
    assert ok.exit_code == 0 and "the trainer accepts it" in ok.output
    empty = runner.invoke(app, ["data", "filter", str(merged), "-o", str(tmp_path / "none.jsonl"), "-n", "9"])
    assert empty.exit_code == 2 and "no set is left" in empty.output and not (tmp_path / "none.jsonl").exists()


def test_evaluation_sets_keep_all_their_wordings(tmp_path):
    """data.paraphrases_per_set shapes the training batches; evaluation scores every wording of data.eval."""
    write_psets(tmp_path / "train.jsonl", [pset(f"t{i}", 3) for i in range(4)])
    write_psets(tmp_path / "eval.jsonl", [pset("e0", 4), pset("e1", 3), pset("e2", 1)])
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": config_only_model(tmp_path / "model")},
                "data": {
                    "train": str(tmp_path / "train.jsonl"),
                    "eval": str(tmp_path / "eval.jsonl"),
                    "paraphrases_per_set": 2,
                    "max_eval_sets": 2,
                },
                "training": {"num_generations": 2, "per_device_train_batch_size": 4, "use_cpu": True, "report_to": []},
            }
        )
    )
    decisions, problems = start_problems(load_recipe(tmp_path / "r.yaml"))
    assert problems == []
    assert [len(s.paraphrases) for s in decisions.train_sets] == [2, 2, 2, 2]
    assert [(s.set_id, len(s.paraphrases)) for s in decisions.eval_sets] == [("e0", 4), ("e1", 3)]
    assert decisions.paraphrases_per_set == 2
