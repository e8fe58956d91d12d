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
