"""Colocate mode with the real engine: the engine starts inside the trainer process (`grpo-sim train`)."""

from __future__ import annotations

from collections import Counter

from conftest import metrics, recipe, train


def test_colocate_training_gives_every_paraphrase_g_engine_completions(tied_policy_path, psets_path, tmp_path):
    """`grpo-sim train` with use_vllm: true, vllm_mode: colocate on a CPU machine: the engine starts in the trainer
    even though numba was imported first (the recorder imports bm25s: without grpo_sim.vllm_sync's guard vLLM's
    module scan fails at start), every paraphrase of every set of every step gets num_generations completions from
    the engine (read back from what the reward scored), and the reload sync keeps a policy with TIED embeddings
    right at a large learning rate: TRL's logged difference between the engine's and the trainer's logprobs of the
    sampled tokens stays < 0.05 (checked by hand: with the tied weight sent under one name, as TRL sends it, the
    engine's output layer stays stale and its logprobs were 12 nats off the trainer's after one changed reload)."""
    spec = recipe(tied_policy_path, psets_path, "colocate", learning_rate=5e-2)
    proc, records, out = train(tmp_path, spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    steps = sorted({r["step"] for r in records})
    assert steps == [0, 1, 2]
    for step in steps:
        counts = Counter((r["set_id"], r["paraphrase_id"]) for r in records if r["step"] == step)
        assert len({s for s, _ in counts}) == 2 and len(counts) == 6 and set(counts.values()) == {2}, counts
    logged = [row for row in metrics(out) if "reward" in row]
    assert len(logged) == 3
    assert all(row["sampling/sampling_logp_difference/mean"] < 0.05 for row in logged), logged
