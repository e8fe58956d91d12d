"""Smoke test of the embedded CPU demo (grpo_sim.demo) with quick=True: tiny data and budgets."""

from __future__ import annotations

import json
import math
import time

import pytest

from grpo_sim.demo import (
    ARM_REWARDS,
    DEMO_GRPO_SETTINGS,
    SUMMARY_FIELDS,
    demo_settings,
    grpo_config_kwargs,
    run_demo,
)

pytestmark = pytest.mark.slow

ARMS = ("base", "grpo_accuracy_only", "ps_grpo")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    summary = run_demo(root / "run1", quick=True, seed=0, progress=False, cache_dir=root / "cache")
    first_s = time.perf_counter() - t0
    return root, summary, first_s


def test_outputs_exist_with_keys_and_ranges(demo_run):
    root, summary, _ = demo_run
    out = root / "run1"
    assert (out / "summary.json").is_file()
    assert (out / "summary.png").is_file() and (out / "summary.png").stat().st_size > 1000
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(ARMS) <= set(on_disk) and {"timings", "settings"} <= set(on_disk)
    for arm in ARMS:
        row = on_disk[arm]
        assert set(SUMMARY_FIELDS) <= set(row), f"{arm} lacks {set(SUMMARY_FIELDS) - set(row)}"
        for key in SUMMARY_FIELDS:
            if key == "num_sets":
                assert row[key] == demo_settings(quick=True)["data"]["num_eval_sets"]
                continue
            value = row[key]
            assert isinstance(value, (int, float)) and not math.isnan(value), (arm, key, value)
            assert -1e-6 <= value <= 1 + 1e-6, (arm, key, value)
    # both arms were trained and saved with their weights and tokenizer
    for arm in ("grpo_accuracy_only", "ps_grpo"):
        assert (out / arm / "model.safetensors").is_file()
        assert (out / arm / "tokenizer.json").is_file()
        log = json.loads((out / arm / "train_log.json").read_text())
        assert log["max_steps"] == demo_settings(quick=True)["grpo"]["max_steps"]
    timings = on_disk["timings"]
    assert timings["warm_start_cached"] is False
    assert timings["total_s"] > 0
    assert on_disk == json.loads(json.dumps(summary))


def test_arms_differ_only_in_reward():
    a = grpo_config_kwargs(DEMO_GRPO_SETTINGS, 4, "ps_grpo", "x")
    b = grpo_config_kwargs(DEMO_GRPO_SETTINGS, 4, "accuracy_only", "x")
    diff = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert diff == {"consistency_weight"}
    assert ARM_REWARDS["accuracy_only"]["consistency_weight"] == 0
    assert ARM_REWARDS["ps_grpo"]["consistency_weight"] > 0 and ARM_REWARDS["ps_grpo"]["accuracy_weight"] > 0


def test_warm_start_cache_is_reused(demo_run):
    root, first, _ = demo_run
    cached_dir = first["settings"]["warm_start_dir"]
    weights = next(p for p in (root / "cache").glob("warmstart-*/model.safetensors"))
    mtime = weights.stat().st_mtime_ns
    second = run_demo(root / "run2", quick=True, seed=0, progress=False, cache_dir=root / "cache")
    assert second["timings"]["warm_start_cached"] is True
    assert second["settings"]["warm_start_dir"] == cached_dir
    assert weights.stat().st_mtime_ns == mtime
    assert len(list((root / "cache").glob("warmstart-*"))) == 1
    # same seed, same cached policy: the warm start's evaluation is identical
    for key in SUMMARY_FIELDS:
        assert second["base"][key] == first["base"][key]


def test_warm_start_is_deterministic_and_noisy_only_on_noisy_wordings(tmp_path):
    import torch
    from safetensors.torch import load_file

    from grpo_sim.data.synthetic import build_demo_dataset, demo_text_corpus
    from grpo_sim.warmstart import WarmStartConfig, sft_examples, warm_start

    train, eval_, corpus = build_demo_dataset(12, 4, seed=0)
    texts = demo_text_corpus(train + eval_, corpus)
    config = WarmStartConfig(**{**demo_settings(quick=True)["warmstart"], "steps": 12})
    a = warm_start(train, corpus, texts, tmp_path / "a", config, progress=False)
    b = warm_start(train, corpus, texts, tmp_path / "b", config, progress=False)
    assert a.name == b.name  # same settings + data -> same cache key
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    meta = json.loads((a / "warmstart.json").read_text())
    assert meta["num_corrupted_labels"] > 0
    noisy = config.noisy_map()
    for e in sft_examples(train, config):
        if e["corrupted"]:
            assert e["noisy_template"] and e["target"] != e["gold"]
        else:
            assert e["target"] == e["gold"]
        rel = next(s for s in train if s.set_id == e["set_id"]).metadata["relation"]
        assert e["noisy_template"] == (e["template"] in noisy[rel])
    # a different seed gives a different key (no stale cache hit)
    assert WarmStartConfig(**config.to_dict()) == config
    c = warm_start(train, corpus, texts, tmp_path / "a", WarmStartConfig(**{**config.to_dict(), "seed": 1}),
                   progress=False)
    assert c != a


def test_paired_comparisons_hand_checked():
    from grpo_sim.demo import paired_comparisons
    from grpo_sim.eval import summarize_with_details

    gold = {"s1": ["Paris"], "s2": ["x"]}
    answers = {
        "base": {"s1": ["paris", "Rome", "rome", "Paris."], "s2": ["x", "x", "x", "x"]},
        "ps_grpo": {"s1": ["Paris"] * 4, "s2": ["x"] * 4},
    }
    per_set = {}
    for name, by_set in answers.items():
        preds = [{"set_id": sid, "paraphrase_id": k, "answer": a, "answers": gold[sid]}
                 for sid, group in by_set.items() for k, a in enumerate(group)]
        per_set[name] = summarize_with_details(None, preds, metrics=("exact_match",), n_boot=0)[1]
    out = paired_comparisons(per_set, n_boot=500, seed=0)
    assert set(out) == {"ps_grpo_minus_base"}  # the accuracy-only arm is absent, so are its comparisons
    entry = out["ps_grpo_minus_base"]
    # set 1: EM 2/4 -> 4/4; consistency 4 equal ordered pairs of 12 -> 12 of 12. Set 2 unchanged.
    assert entry["accuracy_em"]["diff"] == pytest.approx((0.5 + 0.0) / 2)
    assert entry["consistency_e2e_exact"]["diff"] == pytest.approx((2 / 3 + 0.0) / 2)
    lo, hi = entry["consistency_e2e_exact"]["ci"]
    assert 0.0 <= lo <= entry["consistency_e2e_exact"]["diff"] <= hi <= 2 / 3 + 1e-12


def test_summary_has_paired_comparisons(demo_run):
    _, summary, _ = demo_run
    comparisons = summary["comparisons"]
    assert set(comparisons) == {"ps_grpo_minus_base", "grpo_accuracy_only_minus_base",
                                "ps_grpo_minus_grpo_accuracy_only"}
    for entry in comparisons.values():
        for key in ("accuracy_em", "consistency_e2e_exact"):
            lo, hi = entry[key]["ci"]
            assert lo <= entry[key]["diff"] + 1e-12 and entry[key]["diff"] <= hi + 1e-12
    assert summary["settings"]["reward_labels"] == "gold"


def test_warmstart_reward_labels_are_the_noisy_training_labels():
    from grpo_sim.data.synthetic import build_demo_dataset
    from grpo_sim.demo import training_labels
    from grpo_sim.warmstart import WarmStartConfig

    train, _, _ = build_demo_dataset(40, 2, seed=0)
    config = WarmStartConfig(**demo_settings()["warmstart"])
    labels = training_labels(train, config)
    assert len(labels) == sum(len(s.paraphrases) for s in train)
    gold = {s.set_id: s.answers[0] for s in train}
    wrong = [key for key, answer in labels.items() if answer != gold[key[0]]]
    assert 0 < len(wrong) < len(labels)  # some (only) noisy wordings carry a distractor's answer


def test_demo_command_rejects_unknown_reward_labels(tmp_path):
    from typer.testing import CliRunner

    from grpo_sim.cli import app

    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(tmp_path / "d"), "--reward-labels", "noisy"])
    assert result.exit_code == 2
    assert "reward_labels must be one of" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()
