"""PSGRPOTrainer against trl.GRPOTrainer on a tiny local policy (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from grpo_sim.rewards import group_similarity_rewards
from grpo_sim.sampler import SetLayoutError
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

from trainer_helpers import build_policy, common_args, dataset, free_port, policy

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"].split())) for c in completions]


def run(trainer_cls, args, policy_path, train_dataset=None, reward_funcs=None, **kwargs):
    model, tokenizer = policy(policy_path)
    trainer = trainer_cls(model=model, reward_funcs=reward_funcs, args=args,
                          train_dataset=train_dataset if train_dataset is not None else dataset(),
                          processing_class=tokenizer, **kwargs)
    captured = []
    original = trainer._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        captured.append({
            "advantages": out["advantages"].clone(),
            "completions": list(trainer._logs["completion"])[-len(out["advantages"]):],
            "rewards": {k: list(v)[-len(out["advantages"]):] for k, v in trainer._logs["rewards"].items()},
            "rows": [(x["set_id"], x["paraphrase_id"]) for x in inputs],
        })
        return out

    trainer._generate_and_score_completions = capture
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return trainer, captured, losses


def test_equivalent_to_trl_with_ordinary_rewards(policy_path, tmp_path):
    ours_args = PSGRPOConfig(**common_args(tmp_path / "ours", shuffle_dataset=False),
                             consistency_weight=0.0, accuracy_weight=0.0)
    trl_args = GRPOConfig(**common_args(tmp_path / "trl", shuffle_dataset=False))
    _, ours, ours_loss = run(PSGRPOTrainer, ours_args, policy_path, reward_funcs=[length_reward])
    _, theirs, trl_loss = run(GRPOTrainer, trl_args, policy_path, reward_funcs=[length_reward])
    assert ours[0]["rows"] == theirs[0]["rows"]
    assert ours[0]["completions"] == theirs[0]["completions"]
    torch.testing.assert_close(ours[0]["advantages"], theirs[0]["advantages"], rtol=0, atol=0)
    assert ours_loss == trl_loss


def test_set_reward_in_paraphrase_mode_is_trl_group_normalisation(policy_path, tmp_path):
    args = PSGRPOConfig(**common_args(tmp_path, max_steps=2), similarity="token_f1", accuracy_weight=0.5,
                        collapse_penalty=False)
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
        torch.testing.assert_close(batch["advantages"], torch.nan_to_num((rewards - mean) / (std + 1e-4)),
                                   atol=1e-5, rtol=1e-5)
    logged = [h for h in trainer.state.log_history if "ps_grpo/agreement" in h]
    assert logged and {"ps_grpo/frac_empty", "ps_grpo/frac_sets_identical", "ps_grpo/frac_reward_zero_std_set",
                       "rewards/consistency/mean", "rewards/accuracy/mean", "completions/mean_length"} <= set(logged[0])


def test_set_mode_normalises_over_the_set(policy_path, tmp_path):
    args = PSGRPOConfig(**common_args(tmp_path), similarity="token_f1", advantage_mode="set",
                        collapse_penalty=False)
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
    trainer, _, losses = run(PSGRPOTrainer, args, policy_path,
                             peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model = trainer.model
    assert hasattr(model, "peft_config")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(losses) == 2


def test_resume_is_bit_identical_including_sampler_position(policy_path, tmp_path):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2, shuffle_dataset=True)
    full_args = PSGRPOConfig(**common_args(tmp_path / "full", **settings), similarity="token_f1",
                             accuracy_weight=1.0)
    full, full_batches, _ = run(PSGRPOTrainer, full_args, policy_path)

    model, tokenizer = policy(policy_path)
    resumed_args = PSGRPOConfig(**common_args(tmp_path / "resumed", **settings), similarity="token_f1",
                                accuracy_weight=1.0)
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
            return {"prompt_ids": prompts, "completion_ids": completions,
                    "logprobs": [[[-1.0]] * len(c) for c in completions]}

    class FakeOutput:
        def __init__(self, prompt_ids, k):
            self.prompt_token_ids = prompt_ids
            self.outputs = [type("O", (), {"token_ids": [5 + k % 3, tokenizer.eos_token_id],
                                           "logprobs": None})()]

    class FakeLLM:
        def generate(self, prompts, sampling_params, use_tqdm):
            calls.append({"prompts": [p["prompt_token_ids"] for p in prompts], "n": sampling_params.n})
            return [FakeOutput(p["prompt_token_ids"], k) for k, p in enumerate(prompts)]

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: type("SP", (), kw)(), raising=False)
    monkeypatch.setattr(vg, "extract_logprobs", lambda outputs: (
        [[[-1.0]] * len(o.outputs[0].token_ids) for o in outputs], None))
    generation = vg.VLLMGeneration.__new__(vg.VLLMGeneration)
    generation.__dict__.update(dict(
        mode=mode, accelerator=trainer.accelerator, temperature=1.0, top_p=1.0, top_k=0, min_p=None,
        repetition_penalty=1.0, max_completion_length=5, enable_sleep_mode=False, _llm_weights_sleeping=False,
        logprobs=0, structured_outputs_regex=None, generation_kwargs={}, tensor_parallel_size=1,
        vllm_client=FakeClient(), llm=FakeLLM(), model=trainer.model,
    ))
    generation.sync_weights = lambda: None
    trainer.use_vllm = True
    trainer.vllm_generation = generation
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1
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


def test_two_processes_compute_the_single_process_rewards(policy_path, tmp_path):
    """torchrun starts 2 gloo processes; each set spans both ranks."""
    out = tmp_path / "dist"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(ROOT / "tests" / "dist_worker.py"), policy_path, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0]["global"] == records[1]["global"]  # identical on every process
    for batch in records[0]["global"]:
        expected = group_similarity_rewards(batch["texts"], batch["set_ids"], batch["para_ids"], "token_f1")
        np.testing.assert_allclose(batch["consistency"], expected, atol=1e-6)
    spans = [set(b["set_ids"]) for b in records[0]["local"]], [set(b["set_ids"]) for b in records[1]["local"]]
    assert any(a & b for a, b in zip(*spans)), "a set should span both ranks"


def test_collapse_warning_names_the_numbers(caplog):
    from collections import defaultdict
    from types import SimpleNamespace

    args = PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, accuracy_weight=0.0)
    fake = SimpleNamespace(args=args, state=SimpleNamespace(global_step=50), _initial_entropy=None,
                           _last_warning_step=-100, _metrics={"train": defaultdict(list, entropy=[2.0])})
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
    fake = SimpleNamespace(args=args, state=SimpleNamespace(global_step=50), _initial_entropy=None,
                           _last_warning_step=-100, _metrics={"train": defaultdict(list)})
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

