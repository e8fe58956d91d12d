"""Smoke tests of the embedded CPU demo (grpo_sim.demo) with quick=True: tiny data and budgets.

One two-seed run with all four arms, two at a time in worker processes, serves most tests (module fixture)."""

from __future__ import annotations

import json
import math
import os

import pytest

from grpo_sim.demo import ARMS, SUMMARY_FIELDS, ArmFailed, demo_settings, run_demo, run_seeds
from grpo_sim.demo.arms import Job, reward_seconds, run_jobs, train_arm

pytestmark = pytest.mark.slow

POLICIES = ("base", *ARMS)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    combined = run_seeds(root / "seeds", SEEDS, quick=True, progress=False, cache_dir=root / "cache", workers=2)
    return root, combined


def _summary(root, seed):
    return json.loads((root / "seeds" / f"seed-{seed}" / "summary.json").read_text())


def test_every_seed_has_every_arm_and_level(seeds_run):
    root, _ = seeds_run
    for seed in SEEDS:
        out = root / "seeds" / f"seed-{seed}"
        assert (out / "summary.png").stat().st_size > 1000
        summary = _summary(root, seed)
        assert summary["settings"]["data"]["seed"] == seed and summary["settings"]["workers"] == 2
        for policy in POLICIES:
            row = summary[policy]
            assert set(SUMMARY_FIELDS) <= set(row), f"{policy} lacks {set(SUMMARY_FIELDS) - set(row)}"
            for key in SUMMARY_FIELDS:
                if key == "num_sets":
                    assert row[key] == demo_settings(quick=True)["data"]["num_eval_sets"]
                    continue
                assert isinstance(row[key], (int, float)) and not math.isnan(row[key]), (policy, key)
                assert -1e-6 <= row[key] <= 1 + 1e-6, (policy, key, row[key])
        # BM25 is fixed: the retriever level is the same for every policy, and below 1 (wordings retrieve differently)
        assert len({summary[p]["consistency_retriever_jaccard"] for p in POLICIES}) == 1
        assert summary["base"]["consistency_retriever_jaccard"] < 1
        for arm in ARMS:
            assert (out / arm / "model.safetensors").is_file() and (out / arm / "tokenizer.json").is_file()
            log = json.loads((out / arm / "train_log.json").read_text())
            assert log["max_steps"] == demo_settings(quick=True)["grpo"]["max_steps"]
            assert summary["train_stats"][arm]["reward_seconds"] > 0
        answers = json.loads((out / "answers.json").read_text())
        assert set(answers) == set(POLICIES)


def test_comparisons_cover_the_new_arms(seeds_run):
    root, _ = seeds_run
    comparisons = _summary(root, 0)["comparisons"]
    for name in (
        "ps_grpo_consistency_only_minus_base",
        "ps_grpo_consistency_only_minus_ps_grpo",
        "ps_grpo_relaxed_minus_ps_grpo",
        "ps_grpo_minus_grpo_accuracy_only",
    ):
        entry = comparisons[name]
        for key in ("accuracy_em", "consistency_e2e_exact", "consistency_generator_exact", "frac_sets_identical_wrong"):
            lo, hi = entry[key]["ci"]
            assert lo <= entry[key]["diff"] + 1e-12 and entry[key]["diff"] <= hi + 1e-12


def test_combined_seed_table(seeds_run):
    root, combined = seeds_run
    assert combined["seeds"] == list(SEEDS)
    on_disk = json.loads((root / "seeds" / "seeds.json").read_text())
    for seed in SEEDS:
        summary = _summary(root, seed)
        entry = on_disk["policies"]["ps_grpo"]["consistency_e2e_exact"]
        assert entry["per_seed"][str(seed)] == summary["ps_grpo"]["consistency_e2e_exact"]
        diff = on_disk["comparisons"]["ps_grpo_minus_base"]["accuracy_em"]["per_seed"][str(seed)]
        assert diff == summary["comparisons"]["ps_grpo_minus_base"]["accuracy_em"]
    values = [_summary(root, s)["base"]["accuracy_em"] for s in SEEDS]
    base = on_disk["policies"]["base"]["accuracy_em"]
    assert base["min"] == min(values) and base["max"] == max(values)
    assert base["mean"] == pytest.approx(sum(values) / len(values))
    markdown = (root / "seeds" / "seeds.md").read_text()
    assert "| PS-GRPO cons.-only |" in markdown and "seed 1" in markdown and "Exact numbers differ" in markdown


def test_warm_start_cache_is_reused_and_one_process_gives_the_same_warm_start(seeds_run):
    root, _ = seeds_run
    first = _summary(root, 0)
    weights = next(
        p for p in (root / "cache").glob(f"{os.path.basename(first['settings']['warm_start_dir'])}/model.safetensors")
    )
    mtime = weights.stat().st_mtime_ns
    second = run_demo(
        root / "run2", quick=True, seed=0, progress=False, cache_dir=root / "cache", workers=1, arms=["ps_grpo"]
    )
    assert second["timings"]["warm_start_cached"] is True
    assert second["settings"]["warm_start_dir"] == first["settings"]["warm_start_dir"]
    assert weights.stat().st_mtime_ns == mtime
    assert len(list((root / "cache").glob("warmstart-*"))) == len(SEEDS)
    assert set(second) >= {"base", "ps_grpo"} and "grpo_accuracy_only" not in second
    for key in SUMMARY_FIELDS:  # same seed, same cached policy: the warm start's evaluation is identical
        assert second["base"][key] == first["base"][key]


def test_a_failed_arm_fails_the_run_and_leaves_no_summary(seeds_run, monkeypatch):
    import grpo_sim.demo.run as run

    root, _ = seeds_run
    out = root / "failing"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # an earlier run's

    def broken(**kwargs):
        raise RuntimeError("out of disk")

    monkeypatch.setattr(run, "train_arm", broken)
    with pytest.raises(ArmFailed, match="arm ps_grpo failed: RuntimeError: out of disk"):
        run_demo(out, quick=True, seed=0, progress=False, cache_dir=root / "cache", workers=1, arms=["ps_grpo"])
    assert not (out / "summary.json").exists()


def test_a_failed_worker_job_raises_its_error(tmp_path):
    """Two jobs in two spawn workers: the one that fails names itself and its error."""
    jobs = [
        Job(
            "arm nope",
            train_arm,
            {
                "arm": "nope",
                "policy_dir": "x",
                "output_dir": str(tmp_path / "nope"),
                "settings": demo_settings(quick=True),
            },
        ),
        Job("cwd", os.getcwd),
    ]
    with pytest.raises(ArmFailed, match="arm nope failed: ValueError: unknown demo arm 'nope'"):
        run_jobs(jobs, workers=2)


def test_reward_seconds_sums_the_logged_means_hand_checked():
    # logging every 10 steps of 25: means 0.1 (steps 1-10), 0.2 (11-20), 0.4 (21-25)
    history = [
        {"step": 10, "ps_grpo/reward_seconds": 0.1},
        {"step": 20, "ps_grpo/reward_seconds": 0.2},
        {"step": 25, "ps_grpo/reward_seconds": 0.4},
        {"step": 25, "train_runtime": 9.0},
    ]
    assert reward_seconds(history, logging_steps=10, max_steps=25) == pytest.approx(1.0 + 2.0 + 2.0)
    assert reward_seconds([{"step": 10, "loss": 1.0}], 10, 10) is None


def test_warm_start_is_deterministic_and_noisy_only_on_noisy_wordings(tmp_path):
    import torch
    from safetensors.torch import load_file

    from grpo_sim.demo.warmstart import WarmStartConfig, sft_examples, warm_start
    from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus

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
    c = warm_start(
        train, corpus, texts, tmp_path / "a", WarmStartConfig(**{**config.to_dict(), "seed": 1}), progress=False
    )
    assert c != a


def test_demo_warm_start_settings_are_the_config_defaults():
    from grpo_sim.demo.warmstart import WarmStartConfig

    assert demo_settings(seed=2)["warmstart"] == WarmStartConfig(seed=2).to_dict()


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
        preds = [
            {"set_id": sid, "paraphrase_id": k, "answer": a, "answers": gold[sid]}
            for sid, group in by_set.items()
            for k, a in enumerate(group)
        ]
        per_set[name] = summarize_with_details(None, preds, metrics=("exact_match",), n_boot=0)[1]
    out = paired_comparisons(per_set, n_boot=500, seed=0)
    assert set(out) == {"ps_grpo_minus_base"}  # the other arms are absent, so are their comparisons
    entry = out["ps_grpo_minus_base"]
    assert set(entry) == {"accuracy_em", "consistency_e2e_exact"}  # no generator level, no collapse figure here
    # set 1: EM 2/4 -> 4/4; consistency 4 equal ordered pairs of 12 -> 12 of 12. Set 2 unchanged.
    assert entry["accuracy_em"]["diff"] == pytest.approx((0.5 + 0.0) / 2)
    assert entry["consistency_e2e_exact"]["diff"] == pytest.approx((2 / 3 + 0.0) / 2)
    lo, hi = entry["consistency_e2e_exact"]["ci"]
    assert 0.0 <= lo <= entry["consistency_e2e_exact"]["diff"] <= hi <= 2 / 3 + 1e-12


def test_warmstart_reward_labels_are_the_noisy_training_labels():
    from grpo_sim.demo import training_labels
    from grpo_sim.demo.warmstart import WarmStartConfig
    from grpo_sim.demo.world import build_demo_dataset

    train, _, _ = build_demo_dataset(40, 2, seed=0)
    config = WarmStartConfig(**demo_settings()["warmstart"])
    labels = training_labels(train, config)
    assert len(labels) == sum(len(s.paraphrases) for s in train)
    gold = {s.set_id: s.answers[0] for s in train}
    wrong = [key for key, answer in labels.items() if answer != gold[key[0]]]
    assert 0 < len(wrong) < len(labels)  # some (only) noisy wordings carry a distractor's answer


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reward-labels", "noisy"], "reward_labels must be one of"),
        (["--seeds", "0,x"], "--seeds takes integers separated by commas"),
    ],
)
def test_demo_command_rejects_bad_options(tmp_path, args, message):
    from typer.testing import CliRunner

    from grpo_sim.cli import app

    result = CliRunner().invoke(app, ["demo", "--quick", "-o", str(tmp_path / "d"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


class ScriptedPool:
    """A JobPool stand-in that records what starts: two workers; seed 0's warm start takes longer than the rest."""

    started: list[str] = []

    def __init__(self, workers, num_threads):
        ScriptedPool.started = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def submit(self, job):
        import threading
        from concurrent.futures import Future
        from pathlib import Path

        self.started.append(job.label)
        future: Future = Future()
        result = Path(f"ws-{job.label}") if job.label.startswith("warm") else job.label
        delay = 0.3 if job.label == "warm start (seed 0)" else 0.01
        threading.Timer(delay, future.set_result, (result,)).start()
        return future


def test_cached_warm_starts_take_no_worker_and_arms_start_in_seed_order(seeds_run, tmp_path, monkeypatch):
    import grpo_sim.demo.run as run

    root, _ = seeds_run  # its cache holds the quick warm starts of seeds 0 and 1, not 2
    monkeypatch.setattr(run, "JobPool", ScriptedPool)
    monkeypatch.setattr(run, "_evaluate_seed", lambda out, s, *args: {"seed": s})
    run.run_seeds(
        tmp_path, [0, 1, 2], quick=True, progress=False, cache_dir=root / "cache", workers=2, arms=["ps_grpo"]
    )
    assert ScriptedPool.started[:2] == ["arm ps_grpo seed 0", "arm ps_grpo seed 1"]
    assert ScriptedPool.started[2:] == ["warm start (seed 2)", "arm ps_grpo seed 2"]


def test_jobs_start_in_seed_order_even_when_a_later_warm_start_finishes_first(tmp_path, monkeypatch):
    """Seed 1's warm start finishes before seed 0's: seed 0's arms still start before seed 1's."""
    import grpo_sim.demo.run as run

    monkeypatch.setattr(run, "JobPool", ScriptedPool)
    monkeypatch.setattr(run, "_evaluate_seed", lambda out, s, *args: {"seed": s})
    summaries = run.run_seeds(
        tmp_path, [0, 1], quick=True, progress=False, workers=2, arms=["ps_grpo", "ps_grpo_relaxed"]
    )
    arms = [label for label in ScriptedPool.started if label.startswith("arm")]
    assert arms == [
        "arm ps_grpo seed 0",
        "arm ps_grpo_relaxed seed 0",
        "arm ps_grpo seed 1",
        "arm ps_grpo_relaxed seed 1",
    ]
    assert summaries["seeds"] == [0, 1]


def test_demo_command_reports_a_failed_arm_and_exits_1(seeds_run, monkeypatch):
    from typer.testing import CliRunner

    import grpo_sim.demo.run as run
    from grpo_sim.cli import app

    root, _ = seeds_run

    def broken(**kwargs):
        raise RuntimeError("out of disk")

    monkeypatch.setattr(run, "train_arm", broken)
    result = CliRunner().invoke(
        app, ["demo", "--quick", "-o", str(root / "cli-failing"), "--cache-dir", str(root / "cache"), "--jobs", "1"]
    )
    assert result.exit_code == 1
    assert "arm grpo_accuracy_only failed: RuntimeError: out of disk" in result.output
    assert not (root / "cli-failing" / "summary.json").exists()
