"""The long-form demo (grpo_sim.demo.longform_world / grpo_sim.demo.longform): world, warm-start labels, report, CLI."""

from __future__ import annotations

import json

import pytest

from grpo_sim.demo.longform import (
    ARM_REWARD_TERMS,
    COMPARED_KEYS,
    LONGFORM_GRPO_SETTINGS,
    answer_figures,
    paired_comparisons,
    run_longform_demo,
    target_check,
)
from grpo_sim.demo.longform_arms import arm_config_kwargs
from grpo_sim.demo.longform_world import (
    PHRASINGS,
    WORDING_PHRASING,
    LongformWarmStartConfig,
    build_longform_dataset,
    longform_text_corpus,
    mentions,
    phrase,
    phrasing_of,
    sft_examples,
)
from grpo_sim.rewards import accuracy_rewards


@pytest.fixture(scope="module")
def world():
    return build_longform_dataset(40, 20, seed=3)


def test_every_phrasing_is_a_correct_answer_and_wrong_names_are_not(world):
    train, eval_, _ = world
    for s in train + eval_:
        entity, rel = s.metadata["entity"], s.metadata["relation"]
        assert len(s.answers) == 3 and all(mentions(a, entity) for a in s.answers)
        assert s.answers[0] == PHRASINGS[rel][0].format(o=entity)
        assert [phrasing_of(a, rel) for a in s.answers] == [0, 1, 2]
        assert s.metadata["phrasings"] == [WORDING_PHRASING[rel][t] for t in s.metadata["templates"]]
    s = train[0]
    rel, entity = s.metadata["relation"], s.metadata["entity"]
    # any phrasing scores full accuracy (best token F1 over the gold phrasings); another name does not
    right = [phrase(rel, entity, k) for k in range(3)]
    wrong = phrase(rel, "Zzzqville", 0)
    scores = accuracy_rewards(right + [wrong], [s.answers] * 4)
    assert list(scores[:3]) == [1.0, 1.0, 1.0] and scores[3] < 1.0


def test_hand_checked_phrasing_helpers():
    assert phrase("born_in", "Oslandia", 2) == "Oslandia is where they were born."
    assert phrasing_of("their birthplace is Kesmar.", "born_in") == 1  # whatever the name
    assert phrasing_of("they were born.", "born_in") is None
    assert phrasing_of("they live in Kesmar.", "born_in") is None
    assert mentions("Kesmar is where they live.", "kesmar") and not mentions("Kesmarheim is home.", "Kesmar")
    # each phrasing is the preferred one of exactly two of the six wordings
    for rel, table in WORDING_PHRASING.items():
        assert sorted(table) == [0, 0, 1, 1, 2, 2] and table[0] == 0, rel


def test_held_out_sets_are_disjoint_and_data_is_deterministic(world):
    train, eval_, corpus = world
    assert {s.metadata["entity"] for s in train}.isdisjoint({s.metadata["entity"] for s in eval_})
    assert {s.metadata["subject"] for s in train}.isdisjoint({s.metadata["subject"] for s in eval_})
    again = build_longform_dataset(40, 20, seed=3)
    dump = lambda sets: [s.model_dump(mode="json") for s in sets]  # noqa: E731
    assert dump(train) == dump(again[0]) and dump(eval_) == dump(again[1])
    assert dump(train) != dump(build_longform_dataset(40, 20, seed=4)[0])
    # the tokenizer texts cover every word of every answer
    words = set(" ".join(longform_text_corpus(train + eval_, corpus)).replace(".", " ").split())
    assert all(w in words for s in train + eval_ for a in s.answers for w in a.replace(".", " ").split())


def test_warm_start_labels_follow_the_wording_with_the_given_fidelity(world):
    train, _, _ = world
    always = sft_examples(train, LongformWarmStartConfig(phrasing_fidelity=1.0))
    never = sft_examples(train, LongformWarmStartConfig(phrasing_fidelity=0.0))
    assert all(e["phrasing"] == e["preferred"] for e in always)
    assert all(e["phrasing"] != e["preferred"] for e in never)
    usual = sft_examples(train, LongformWarmStartConfig(phrasing_fidelity=0.75, seed=1))
    share = sum(e["phrasing"] == e["preferred"] for e in usual) / len(usual)
    assert 0.6 < share < 0.9
    gold = {s.set_id: s for s in train}
    for e in usual:  # every label is right; only the wording varies
        assert e["target"] in gold[e["set_id"]].answers
    assert usual == sft_examples(train, LongformWarmStartConfig(phrasing_fidelity=0.75, seed=1))
    with pytest.raises(ValueError, match="phrasing_fidelity"):
        LongformWarmStartConfig(phrasing_fidelity=1.5)


def test_answer_figures_hand_checked(world):
    s = world[0][0]
    rel, entity = s.metadata["relation"], s.metadata["entity"]
    answers = [phrase(rel, entity, 0), phrase(rel, entity, 0), phrase(rel, entity, 1), phrase(rel, "Zzzqville", 0)]
    row = answer_figures([s], [answers])[0]
    assert row["accuracy_entity"] == 0.75
    # ordered pairs with the same phrasing: (0,1) (0,3) (1,3) both ways = 6 of 12
    assert row["phrasing_agreement"] == 0.5
    assert row["identical_wrong"] == 0.0
    assert answer_figures([s], [[phrase(rel, "Zzzqville", 0)] * 4])[0]["identical_wrong"] == 1.0
    assert answer_figures([s], [[answers[0]] * 4])[0] == {
        "accuracy_entity": 1.0,
        "phrasing_agreement": 1.0,
        "identical_wrong": 0.0,
    }


def test_arms_differ_only_in_reward_terms():
    kw = {arm: arm_config_kwargs(LONGFORM_GRPO_SETTINGS, arm, 4, "/tmp/x") for arm in ARM_REWARD_TERMS}
    acc, ps = kw["grpo_accuracy_only"], kw["ps_grpo"]
    assert {k: v for k, v in acc.items() if k != "reward_terms"} == {k: v for k, v in ps.items() if k != "reward_terms"}
    assert acc["per_device_train_batch_size"] == 4 * 4 * 4
    assert acc["reward_terms"] == [t for t in ps["reward_terms"] if t["type"] == "reference"]
    assert [t for t in ps["reward_terms"] if t["type"] == "consistency"][0]["similarity"] == "bleu2"


def test_target_check_hand_checked():
    a = [{"set_id": str(k), "consistency_e2e_bleu2": 0.8, "accuracy_f1": 0.9} for k in range(10)]
    b = [{"set_id": str(k), "consistency_e2e_bleu2": 0.5, "accuracy_f1": 0.9} for k in range(10)]
    rows = {
        name: [{**r, **{key: r.get(key, 0.0) for key in COMPARED_KEYS}} for r in part]
        for name, part in (("ps_grpo", a), ("grpo_accuracy_only", b), ("base", b))
    }
    comparisons = paired_comparisons(rows, n_boot=200)
    assert comparisons["ps_grpo_minus_grpo_accuracy_only"]["consistency_e2e_bleu2"]["diff"] == pytest.approx(0.3)
    assert target_check(comparisons)["met"] is True
    worse = {**rows, "ps_grpo": [{**r, "accuracy_f1": 0.85} for r in rows["ps_grpo"]]}
    check = target_check(paired_comparisons(worse, n_boot=200))
    assert check["consistency_bleu2_interval_above_0"] and not check["accuracy_f1_not_lower"] and not check["met"]


@pytest.mark.slow
def test_quick_run_writes_summary_with_expected_keys(tmp_path):
    summary = run_longform_demo(tmp_path / "run", quick=True, progress=False, cache_dir=tmp_path / "cache")
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for policy in ("base", "grpo_accuracy_only", "ps_grpo"):
        row = on_disk[policy]
        for key in (
            "accuracy_f1",
            "accuracy_rouge_l",
            "accuracy_entity",
            "consistency_e2e_bleu2",
            "consistency_e2e_embedding",
            "phrasing_agreement",
            "frac_empty",
            "frac_sets_identical_wrong",
        ):
            assert 0.0 <= row[key] <= 1.0, (policy, key)
    assert set(on_disk["comparisons"]) == {
        "ps_grpo_minus_base",
        "grpo_accuracy_only_minus_base",
        "ps_grpo_minus_grpo_accuracy_only",
    }
    assert set(on_disk["comparisons"]["ps_grpo_minus_base"]) == set(COMPARED_KEYS)
    assert set(on_disk["target"]) >= {"met", "consistency_bleu2_interval_above_0", "accuracy_f1_not_lower"}
    assert on_disk["settings"]["task"] == "longform" and on_disk["timings"]["total_s"] > 0
    answers = json.loads((tmp_path / "run" / "answers.json").read_text())
    assert set(answers) == {"base", "grpo_accuracy_only", "ps_grpo"} and len(answers["base"]) == 6
    assert (tmp_path / "run" / "summary.png").stat().st_size > 1000
    for arm in ARM_REWARD_TERMS:
        assert (tmp_path / "run" / arm / "train_log.json").is_file()
    # the warm start is cached: a second run trains no new one
    again = run_longform_demo(tmp_path / "run2", quick=True, progress=False, cache_dir=tmp_path / "cache")
    assert again["timings"]["warm_start_cached"] is True
    assert again["base"] == summary["base"]


def test_demo_command_dispatches_on_task(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import grpo_sim.demo
    import grpo_sim.demo.longform
    from grpo_sim.cli import app

    calls = []
    monkeypatch.setattr(grpo_sim.demo.longform, "run_longform_demo", lambda out, **kw: calls.append(("long", out, kw)))
    monkeypatch.setattr(grpo_sim.demo, "run_demo", lambda out, **kw: calls.append(("short", out, kw)))
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--task", "longform", "--quick", "--seed", "2"]).exit_code == 0
    assert calls[-1][0] == "long" and str(calls[-1][1]) == "runs/demo-longform"
    assert calls[-1][2]["seed"] == 2 and calls[-1][2]["quick"] is True
    assert runner.invoke(app, ["demo", "--task", "longform", "-o", str(tmp_path / "x")]).exit_code == 0
    assert calls[-1][1] == tmp_path / "x"
    assert runner.invoke(app, ["demo", "--quick"]).exit_code == 0
    assert calls[-1][0] == "short" and str(calls[-1][1]) == "runs/demo"
    bad = runner.invoke(app, ["demo", "--task", "essay"])
    assert bad.exit_code == 2 and "--task must be one of short, longform" in bad.output
    assert "Traceback" not in bad.output and len(calls) == 3


@pytest.mark.slow
def test_quick_seeds_write_a_combined_table_with_the_target_per_seed(tmp_path):
    from grpo_sim.demo.longform import run_longform_seeds

    combined = run_longform_seeds(tmp_path / "seeds", [0, 1], quick=True, progress=False, cache_dir=tmp_path / "cache")
    for seed in (0, 1):
        assert (tmp_path / "seeds" / f"seed-{seed}" / "summary.json").is_file()
    on_disk = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert on_disk["seeds"] == [0, 1] and set(on_disk["target"]) == {"0", "1"}
    bleu = on_disk["comparisons"]["ps_grpo_minus_grpo_accuracy_only"]["consistency_e2e_bleu2"]
    per_seed = [bleu["per_seed"][str(s)]["diff"] for s in (0, 1)]
    assert bleu["mean"] == pytest.approx(sum(per_seed) / 2)
    assert set(combined["policies"]) == {"base", "grpo_accuracy_only", "ps_grpo"}
    markdown = (tmp_path / "seeds" / "seeds.md").read_text()
    assert "long-form" in markdown and "seed 0" in markdown and "Target" in markdown
    assert "ps_grpo - grpo_accuracy_only" in markdown
