"""PSGRPOTrainer against trl.GRPOTrainer on a tiny local policy (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from trl import GRPOConfig, GRPOTrainer

from grpo_sim.rewards import apply_collapse_penalty, group_similarity_rewards, set_shards, short_completion_mask
from grpo_sim.sampler import SetLayoutError
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer, generation_index

from trainer_helpers import build_policy, common_args, dataset, free_port, policy

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"].split())) for c in completions]


def capture_batches(trainer):
    """Record every generation batch's rows, completions, per-completion rewards and advantages."""
    captured = []
    original = trainer._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        captured.append(
            {
                "advantages": out["advantages"].clone(),
                "completions": list(trainer._logs["completion"])[-len(out["advantages"]) :],
                "rewards": {k: list(v)[-len(out["advantages"]) :] for k, v in trainer._logs["rewards"].items()},
                "rows": [(x["set_id"], x["paraphrase_id"]) for x in inputs],
            }
        )
        return out

    trainer._generate_and_score_completions = capture
    return captured


def run(trainer_cls, args, policy_path, train_dataset=None, reward_funcs=None, **kwargs):
    model, tokenizer = policy(policy_path)
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train_dataset if train_dataset is not None else dataset(),
        processing_class=tokenizer,
        **kwargs,
    )
    captured = capture_batches(trainer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer, captured, losses


def test_equivalent_to_trl_with_ordinary_rewards(policy_path, tmp_path):
    ours_args = PSGRPOConfig(
        **common_args(tmp_path / "ours", shuffle_dataset=False), consistency_weight=0.0, accuracy_weight=0.0
    )
    trl_args = GRPOConfig(**common_args(tmp_path / "trl", shuffle_dataset=False))
    _, ours, ours_loss = run(PSGRPOTrainer, ours_args, policy_path, reward_funcs=[length_reward])
    _, theirs, trl_loss = run(GRPOTrainer, trl_args, policy_path, reward_funcs=[length_reward])
    assert ours[0]["rows"] == theirs[0]["rows"]
    assert ours[0]["completions"] == theirs[0]["completions"]
    torch.testing.assert_close(ours[0]["advantages"], theirs[0]["advantages"], rtol=0, atol=0)
    assert ours_loss == trl_loss


def test_set_reward_in_paraphrase_mode_is_trl_group_normalisation(policy_path, tmp_path):
    args = PSGRPOConfig(
        **common_args(tmp_path, max_steps=2), similarity="token_f1", accuracy_weight=0.5, collapse_penalty=False
    )
    trainer, captured, _ = run(PSGRPOTrainer, args, policy_path)
    for batch in captured:
        texts = [c[0]["content"] for c in batch["completions"]]
        set_ids = [s for s, _ in batch["rows"]]
        para_ids = [p for _, p in batch["rows"]]
        # one TRL group = one paraphrase: g consecutive rows share (set, paraphrase)
        assert all(batch["rows"][k] == batch["rows"][k - k % 2] for k in range(len(batch["rows"])))
        expected = group_similarity_rewards(texts, set_ids, para_ids, "token_f1")
        np.testing.assert_allclose(batch["rewards"]["consistency"], expected, atol=1e-6)
        rewards = torch.tensor(batch["rewards"]["consistency"]) + 0.5 * torch.tensor(batch["rewards"]["accuracy"])
        grouped = rewards.view(-1, 2)
        mean = grouped.mean(1).repeat_interleave(2)
        std = grouped.std(1).repeat_interleave(2)
        torch.testing.assert_close(
            batch["advantages"], torch.nan_to_num((rewards - mean) / (std + 1e-4)), atol=1e-5, rtol=1e-5
        )
    logged = [h for h in trainer.state.log_history if "ps_grpo/agreement" in h]
    assert logged and {
        "ps_grpo/frac_empty",
        "ps_grpo/frac_sets_identical",
        "ps_grpo/frac_reward_zero_std_set",
        "rewards/consistency/mean",
        "rewards/accuracy/mean",
        "completions/mean_length",
    } <= set(logged[0])


def test_set_mode_normalises_over_the_set(policy_path, tmp_path):
    args = PSGRPOConfig(**common_args(tmp_path), similarity="token_f1", advantage_mode="set", collapse_penalty=False)
    trainer, captured, _ = run(PSGRPOTrainer, args, policy_path)
    rewards = torch.tensor(captured[0]["rewards"]["consistency"])
    expected = (rewards - rewards.mean()) / (rewards.std() + 1e-4)  # one set per generation batch here
    torch.testing.assert_close(captured[0]["advantages"], torch.nan_to_num(expected), atol=1e-5, rtol=1e-5)


def test_collapse_penalty_floors_empty_completions(policy_path, tmp_path):
    args = PSGRPOConfig(**common_args(tmp_path, max_completion_length=1), similarity="token_f1")
    _, captured, _ = run(PSGRPOTrainer, args, policy_path)
    texts = [c[0]["content"] for c in captured[0]["completions"]]
    rewards = np.asarray(captured[0]["rewards"]["consistency"])
    empty = np.asarray([len(t.split()) == 0 for t in texts])
    if empty.any() and (~empty).any():
        assert np.all(rewards[empty] <= rewards[~empty].min() + 1e-7)


def test_lora_trains_only_adapters(policy_path, tmp_path):
    from peft import LoraConfig

    args = PSGRPOConfig(**common_args(tmp_path, max_steps=2, learning_rate=5e-2), similarity="token_f1")
    trainer, _, losses = run(
        PSGRPOTrainer, args, policy_path, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    model = trainer.model
    assert hasattr(model, "peft_config")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(losses) == 2


def test_resume_is_bit_identical_including_sampler_position(policy_path, tmp_path):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2, shuffle_dataset=True)
    full_args = PSGRPOConfig(**common_args(tmp_path / "full", **settings), similarity="token_f1", accuracy_weight=1.0)
    full, full_batches, _ = run(PSGRPOTrainer, full_args, policy_path)

    model, tokenizer = policy(policy_path)
    resumed_args = PSGRPOConfig(
        **common_args(tmp_path / "resumed", **settings), similarity="token_f1", accuracy_weight=1.0
    )
    resumed = PSGRPOTrainer(model=model, args=resumed_args, train_dataset=dataset(), processing_class=tokenizer)
    batches = []
    original = resumed._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        batches.append([(x["set_id"], x["paraphrase_id"]) for x in inputs])
        return out

    resumed._generate_and_score_completions = capture
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert batches == [b["rows"] for b in full_batches[2:]]  # the sampler continues where it stopped
    assert len({b["rows"][0][0] for b in full_batches}) > 1  # different sets over the steps
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name

    def rewards(trainer):
        return [(h["step"], h["reward"]) for h in trainer.state.log_history if "reward" in h and h["step"] > 2]

    assert rewards(full) == rewards(resumed)


def test_bad_data_fails_before_training(policy_path, tmp_path):
    rows = dataset().to_list()
    args = PSGRPOConfig(**common_args(tmp_path), similarity="token_f1")
    model, tokenizer = policy(policy_path)

    def make(data):
        return PSGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tokenizer)

    with pytest.raises(SetLayoutError, match="missing column"):
        make([{k: v for k, v in r.items() if k != "set_id"} for r in rows])
    with pytest.raises(SetLayoutError, match="single paraphrase"):
        make(rows + [dict(rows[0], set_id="lonely")])
    with pytest.raises(SetLayoutError, match="duplicate paraphrase_id"):
        make([dict(r, paraphrase_id=0) if r["set_id"] == rows[0]["set_id"] else r for r in rows])
    big = PSGRPOConfig(**common_args(tmp_path, per_device_train_batch_size=4), similarity="token_f1")
    with pytest.raises(SetLayoutError, match="not a multiple of one paraphrase set"):
        PSGRPOTrainer(model=model, args=big, train_dataset=dataset(), processing_class=tokenizer)


def test_config_validation():
    with pytest.raises(ValueError, match="advantage_mode"):
        PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, advantage_mode="group")
    with pytest.raises(ValueError, match="unknown similarity"):
        PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, similarity="bleu7x")
    with pytest.raises(ValueError, match="kappa"):
        PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, relaxed_kappa=0)
    with pytest.raises(ValueError, match="collapse_warn_empty"):
        PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, collapse_warn_empty=2.0)


def use_fake_vllm(trainer, mode, client, llm=None):
    """TRL's real VLLMGeneration (its generate runs unchanged) around a fake server client / engine."""
    import trl.generation.vllm_generation as vg

    generation = vg.VLLMGeneration.__new__(vg.VLLMGeneration)
    generation.__dict__.update(
        dict(
            mode=mode,
            accelerator=trainer.accelerator,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            min_p=None,
            repetition_penalty=1.0,
            max_completion_length=5,
            enable_sleep_mode=False,
            _llm_weights_sleeping=False,
            logprobs=0,
            structured_outputs_regex=None,
            generation_kwargs={},
            tensor_parallel_size=1,
            vllm_client=client,
            llm=llm,
            model=trainer.model,
        )
    )
    generation.sync_weights = lambda: None
    trainer.use_vllm = True
    trainer.vllm_generation = generation
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1
    return generation


def test_lost_vllm_server_ends_with_a_checkpoint_and_a_clear_message(policy_path, tmp_path):
    """The server dies before step 3's generation: training stops with RolloutServerLost naming the server and
    checkpoint-2 (the last completed step, saved on the way out), not a requests traceback."""
    from grpo_sim.trainer import RolloutServerLost

    args = PSGRPOConfig(**common_args(tmp_path, per_device_train_batch_size=12, max_steps=4), similarity="token_f1")
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=dataset(), processing_class=tokenizer)

    class DyingClient:
        base_url = "http://rollouts:8000"
        calls = 0

        def generate(self, prompts, n, **kwargs):
            DyingClient.calls += 1
            if DyingClient.calls == 3:
                # TRL's client raises requests' ConnectionError (handled alike; requests is not installed here)
                raise ConnectionRefusedError(111, "Connection refused")
            completions = [[5 + (i % 3), tokenizer.eos_token_id] for i in range(len(prompts)) for _ in range(n)]
            return {
                "prompt_ids": prompts,
                "completion_ids": completions,
                "logprobs": [[[-1.0]] * len(c) for c in completions],
            }

    use_fake_vllm(trainer, "server", DyingClient())
    with pytest.raises(RolloutServerLost) as lost:
        trainer.train()
    message = str(lost.value)
    assert "lost the vLLM rollout server at http://rollouts:8000 during generation" in message
    assert "Connection refused" in message and "checkpoint-2" in message and "--resume auto" in message
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and DyingClient.calls == 3
    saved = load_file(str(tmp_path / "checkpoint-2" / "model.safetensors"))
    for name, value in trainer.model.state_dict().items():
        if name in saved:
            assert torch.equal(saved[name], value), name


@pytest.mark.parametrize("mode", ["server", "colocate"])
def test_vllm_layout_reaches_every_paraphrase(policy_path, tmp_path, monkeypatch, mode):
    """A recording fake stands in for vLLM; TRL's own VLLMGeneration.generate runs unchanged."""
    import trl.generation.vllm_generation as vg

    args = PSGRPOConfig(**common_args(tmp_path, per_device_train_batch_size=12), similarity="token_f1")
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=dataset(), processing_class=tokenizer)
    calls = []

    class FakeClient:
        def generate(self, prompts, n, **kwargs):
            calls.append({"prompts": [list(p) for p in prompts], "n": n})
            completions = [[5 + (i % 3), tokenizer.eos_token_id] for i in range(len(prompts)) for _ in range(n)]
            return {
                "prompt_ids": prompts,
                "completion_ids": completions,
                "logprobs": [[[-1.0]] * len(c) for c in completions],
            }

    class FakeOutput:
        def __init__(self, prompt_ids, k):
            self.prompt_token_ids = prompt_ids
            self.outputs = [type("O", (), {"token_ids": [5 + k % 3, tokenizer.eos_token_id], "logprobs": None})()]

    class FakeLLM:
        def generate(self, prompts, sampling_params, use_tqdm):
            calls.append({"prompts": [p["prompt_token_ids"] for p in prompts], "n": sampling_params.n})
            return [FakeOutput(p["prompt_token_ids"], k) for k, p in enumerate(prompts)]

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: type("SP", (), kw)(), raising=False)
    monkeypatch.setattr(
        vg, "extract_logprobs", lambda outputs: ([[[-1.0]] * len(o.outputs[0].token_ids) for o in outputs], None)
    )
    use_fake_vllm(trainer, mode, FakeClient(), FakeLLM())
    seen = []
    original = trainer._calculate_rewards

    def record(inputs, prompts, completions, completion_ids_list):
        seen.extend((x["set_id"], x["paraphrase_id"]) for x in inputs)
        return original(inputs, prompts, completions, completion_ids_list)

    trainer._calculate_rewards = record
    trainer.train()
    # 12 completions = 2 sets x 3 paraphrases x g=2 ; every paraphrase gets exactly g completions
    counts = {}
    for key in seen:
        counts[key] = counts.get(key, 0) + 1
    assert len({s for s, _ in counts}) == 2 and len(counts) == 6 and set(counts.values()) == {2}
    generated = sum(len(c["prompts"]) * c["n"] for c in calls)
    assert generated == 12
    if mode == "server":
        assert calls[0]["n"] == 2 and len(calls[0]["prompts"]) == 6
        assert len({tuple(p) for p in calls[0]["prompts"]}) == 6  # six distinct paraphrase prompts


TWO_PROCESS_SCENARIOS = ("exact", "relaxed", "vllm_server", "failing_similarity")


@pytest.fixture(scope="module")
def two_process_runs(policy_path, tmp_path_factory):
    """torchrun starts 2 gloo processes once and runs every scenario of tests/dist_worker.py in them."""
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(ROOT / "tests" / "dist_worker.py"),
        policy_path,
        str(out),
        *TWO_PROCESS_SCENARIOS,
    ]
    # own session: on a timeout the workers are killed with torchrun instead of lingering
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return {
        name: [json.loads((out / name / f"rank{r}.json").read_text()) for r in range(2)]
        for name in TWO_PROCESS_SCENARIOS
    }


def gathered(batch):
    """What a rank saw of the whole generation batch (its own work counters left out)."""
    return {k: v for k, v in batch.items() if k not in ("encoded", "pairs")}


def single_process_rewards(
    batch, approx, accumulation=1, steps_per_generation=1, num_iterations=1, collapse_penalty=False
):
    """The whole generation batch scored in ONE process, seeded as the trainer documents it."""
    generation = generation_index(
        batch["global_step"], batch["micro_step"], accumulation, steps_per_generation, num_iterations
    )
    rewards = group_similarity_rewards(
        batch["texts"], batch["set_ids"], batch["para_ids"], "token_f1", approx=approx, seed=(0, 0, generation)
    )
    if collapse_penalty:
        rewards = apply_collapse_penalty(rewards, short_completion_mask(batch["texts"]))
    return rewards.astype(np.float32).tolist()  # TRL keeps rewards in float32


def test_two_processes_compute_the_single_process_rewards(two_process_runs):
    """Each rank scores only its share of the sets; the gathered rewards equal a one-process computation
    bit for bit, exact and relaxed."""
    for name, approx in (("exact", None), ("relaxed", {"kappa": 1, "samples": 1})):
        records = two_process_runs[name]
        assert [gathered(b) for b in records[0]["global"]] == [gathered(b) for b in records[1]["global"]]
        assert len(records[0]["global"]) == 2
        for batch in records[0]["global"]:
            assert batch["consistency"] == single_process_rewards(batch, approx), name
        spans = [set(b["set_ids"]) for b in records[0]["local"]], [set(b["set_ids"]) for b in records[1]["local"]]
        assert all(a & b for a, b in zip(*spans)), "a set should span both ranks"
    # same policy and seed: the first batch has the same completions, and the relaxed reward really sampled
    exact, relaxed = two_process_runs["exact"][0]["global"][0], two_process_runs["relaxed"][0]["global"][0]
    assert exact["texts"] == relaxed["texts"] and exact["consistency"] != relaxed["consistency"]


def test_each_process_scores_only_its_share_of_the_sets(two_process_runs):
    for name in ("exact", "relaxed", "vllm_server"):
        records = two_process_runs[name]
        for step, batches in enumerate(zip(records[0]["global"], records[1]["global"])):
            set_ids = batches[0]["set_ids"]
            shards = set_shards(set_ids, 2)
            sizes = {s: set_ids.count(s) for s in set_ids}
            assert len(sizes) == 3  # sets k = 0, 1 -> process 0 and k = 2 -> process 1 (k * 2 // 3)
            for rank, batch in enumerate(batches):
                own_sets = {s for s, shard in zip(set_ids, shards) if shard == rank}
                own_rows = sum(sizes[s] for s in own_sets)
                assert batch["encoded"] == own_rows, (name, step, rank)  # each of its texts encoded once
                if name == "relaxed":  # kappa = 1 paraphrase x samples = 1 rollout per completion
                    assert batch["pairs"] == own_rows, (name, step, rank)
                else:  # one n*g x n*g block per own set
                    assert batch["pairs"] == sum(sizes[s] ** 2 for s in own_sets), (name, step, rank)
            assert sum(b["encoded"] for b in batches) == len(set_ids)  # no set scored twice


def test_vllm_server_mode_on_two_processes_reaches_every_paraphrase_with_set_advantages(two_process_runs):
    """TRL's own VLLMGeneration.generate (server mode, client on rank 0 only) with gradient accumulation 2,
    num_iterations 2 and a set spanning both ranks: every paraphrase gets exactly g completions of its own
    prompt, and the set-level advantages are the hand-computed ones from the gathered rewards."""
    records = two_process_runs["vllm_server"]
    settings = records[0]["settings"]
    g = settings["num_generations"]
    assert g == 2 and settings["steps_per_generation"] == 2 and settings["generation_batch_size"] == 24
    assert records[1]["client_calls"] == []  # only the main process talks to the server
    calls = records[0]["client_calls"]
    assert len(calls) == 2  # 4 optimizer steps, one generation batch every 2 x 2 micro-steps
    assert [(b["global_step"], b["micro_step"]) for b in records[0]["global"]] == [(0, 0), (2, 4)]
    for k, call in enumerate(calls):
        assert call["n"] == g and len(call["prompts"]) == 12  # 3 sets x 4 paraphrases, each prompt once
        assert len({tuple(p) for p in call["prompts"]}) == 12
        generated = sorted(
            (tuple(p), tuple(call["completions"][j * g + m])) for j, p in enumerate(call["prompts"]) for m in range(g)
        )
        rows = records[0]["rows"][k] + records[1]["rows"][k]  # rank order == gathered order
        assert len(rows) == 24
        # every completion reached exactly one row, and that row asked the prompt it was generated for
        assert sorted((tuple(r["prompt_ids"]), tuple(r["completion_ids"])) for r in rows) == generated
        per_paraphrase = {}
        for r in rows:
            per_paraphrase.setdefault((r["set_id"], r["paraphrase_id"]), set()).add(tuple(r["prompt_ids"]))
        counts = {key: sum((r["set_id"], r["paraphrase_id"]) == key for r in rows) for key in per_paraphrase}
        assert len(counts) == 12 and set(counts.values()) == {g}
        assert all(len(prompts) == 1 for prompts in per_paraphrase.values())
        assert {r["set_id"] for r in records[0]["rows"][k]} & {r["set_id"] for r in records[1]["rows"][k]}
        # the gathered rewards: the consistency column is the one-process exact reward ...
        batch = records[0]["global"][k]
        assert gathered(batch) == gathered(records[1]["global"][k])
        assert batch["consistency"] == single_process_rewards(batch, None, 2, 2, 2, collapse_penalty=True)
        assert [(r["set_id"], r["paraphrase_id"]) for r in rows] == list(zip(batch["set_ids"], batch["para_ids"]))
        # ... and advantage_mode='set' normalises over each set's n*g completions (scale_rewards='group')
        combined = np.asarray(batch["combined"], dtype=np.float64)
        expected = np.empty_like(combined)
        for set_id in set(batch["set_ids"]):
            members = np.asarray([s == set_id for s in batch["set_ids"]])
            values = combined[members]
            expected[members] = (values - values.mean()) / (values.std(ddof=1) + 1e-4)
        np.testing.assert_allclose([r["advantage"] for r in rows], expected, rtol=1e-5, atol=1e-5)
    assert records[0]["global"][0]["consistency"] != records[0]["global"][1]["consistency"]


def test_similarity_failing_on_one_process_fails_every_process_alike(two_process_runs):
    """Only process 1 scores the last set; its error must reach process 0 too instead of leaving it waiting."""
    errors = [record["error"] for record in two_process_runs["failing_similarity"]]
    assert errors[0] == errors[1]
    assert "consistency reward (token_f1) failed on process 1" in errors[0] and "NaN" in errors[0]


def test_generation_index_counts_generation_batches_from_checkpointed_state():
    # gradient accumulation 2, steps_per_generation 2, num_iterations 2: a batch every 4 micro-steps,
    # i.e. every 2 optimizer steps. TRL generates at micro-steps 0 and 4 (global_step 0 and 2).
    assert generation_index(0, 0, 2, 2, 2) == 0
    assert generation_index(2, 4, 2, 2, 2) == 1
    assert generation_index(2, 0, 2, 2, 2) == 1  # resumed at checkpoint-2: TRL's _step restarted at 0
    assert generation_index(4, 8, 2, 2, 2) == generation_index(4, 0, 2, 2, 2) == 2
    # steps_per_generation 1 < accumulation 2: two batches inside one optimizer step share global_step
    assert [generation_index(gs, micro, 2, 1, 1) for gs, micro in [(0, 0), (0, 1), (1, 2), (1, 3)]] == [0, 1, 2, 3]
    # one batch per step, every step (TRL's defaults): the index is global_step
    assert [generation_index(gs, gs, 1, 1, 1) for gs in range(4)] == [0, 1, 2, 3]


def test_resume_with_relaxed_reward_and_gradient_accumulation_is_bit_identical(policy_path, tmp_path):
    """The relaxed reward's sampling must not depend on TRL's micro-step counter, which restarts at 0."""
    settings = dict(
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        shuffle_dataset=True,
        per_device_train_batch_size=6,
        gradient_accumulation_steps=2,
    )
    reward = dict(similarity="token_f1", relaxed_kappa=1, relaxed_samples=1)  # kappa 1 < n - 1 = 2

    full_args = PSGRPOConfig(**common_args(tmp_path / "full", **settings), **reward)
    full, full_batches, _ = run(PSGRPOTrainer, full_args, policy_path)
    model, tokenizer = policy(policy_path)
    resumed_args = PSGRPOConfig(**common_args(tmp_path / "resumed", **settings), **reward)
    resumed = PSGRPOTrainer(model=model, args=resumed_args, train_dataset=dataset(), processing_class=tokenizer)
    batches = capture_batches(resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))

    assert len(full_batches) == 4 and len(batches) == 2  # one generation batch (2 sets) per optimizer step
    for ours, theirs in zip(batches, full_batches[2:]):
        assert ours["rows"] == theirs["rows"] and ours["completions"] == theirs["completions"]
        assert ours["rewards"] == theirs["rewards"]
        assert torch.equal(ours["advantages"], theirs["advantages"])
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name
    # the relaxed reward really sampled: it is not the exact reward of the same completions
    batch = full_batches[2]
    texts = [c[0]["content"] for c in batch["completions"]]
    exact = group_similarity_rewards(texts, [s for s, _ in batch["rows"]], [p for _, p in batch["rows"]], "token_f1")
    assert not np.allclose(batch["rewards"]["consistency"], exact)


def test_collapse_warning_names_the_numbers(caplog):
    from collections import defaultdict
    from types import SimpleNamespace

    args = PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, accuracy_weight=0.0)
    fake = SimpleNamespace(
        args=args,
        state=SimpleNamespace(global_step=50),
        _initial_entropy=None,
        _last_warning_step=-100,
        _metrics={"train": defaultdict(list, entropy=[2.0])},
    )
    calm = {"frac_empty": 0.0, "frac_sets_identical": 0.1, "mean_words": 3.0}
    PSGRPOTrainer._warn_on_collapse(fake, calm)
    assert not caplog.records and fake._initial_entropy == 2.0
    fake._metrics["train"]["entropy"].append(0.1)
    PSGRPOTrainer._warn_on_collapse(fake, {"frac_empty": 0.5, "frac_sets_identical": 0.95, "mean_words": 0.5})
    message = caplog.records[-1].getMessage()
    assert "50% of completions are empty" in message and "95% of sets" in message
    assert "entropy fell to 0.100 from 2.000" in message and "add an accuracy reward" in message
    caplog.clear()
    fake.state.global_step = 55  # rate-limited: at most one warning per 10 steps
    PSGRPOTrainer._warn_on_collapse(fake, {"frac_empty": 0.5, "frac_sets_identical": 0.95, "mean_words": 0.5})
    assert not caplog.records


def test_consistent_distinct_answers_are_not_called_collapse(caplog):
    """Every set answered identically but with different answers for different questions is the goal
    of consistency training; the same answer for every question is collapse."""
    from collections import defaultdict
    from types import SimpleNamespace

    from grpo_sim.rewards import set_statistics

    args = PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, collapse_warn_entropy_ratio=0.0)
    fake = SimpleNamespace(
        args=args,
        state=SimpleNamespace(global_step=50),
        _initial_entropy=None,
        _last_warning_step=-100,
        _metrics={"train": defaultdict(list)},
    )
    sets, paras = [s for s in "abcd" for _ in range(4)], [p for _ in range(4) for p in range(4)]
    good = set_statistics(["paris"] * 4 + ["rome"] * 4 + ["oslo"] * 4 + ["lima"] * 4, sets, paras)
    assert good["frac_sets_identical"] == 1.0 and good["frac_modal_answer"] == 0.25 and good["num_sets"] == 4
    PSGRPOTrainer._warn_on_collapse(fake, good)
    assert not caplog.records
    constant = set_statistics(["paris"] * 16, sets, paras)
    assert constant["frac_modal_answer"] == 1.0 and constant["modal_answer"] == "paris"
    PSGRPOTrainer._warn_on_collapse(fake, constant)
    message = caplog.records[-1].getMessage()
    assert "100% of sets give every paraphrase the identical answer" in message
    assert "100% of all completions answer 'paris'" in message
