"""The per-GPU memory model (grpo_sim.memory): parameter counts against models built from the shipped configs on
torch's meta device, model states against DeepSpeed's own estimators, hand-checked terms, and the launch checks."""

from __future__ import annotations

import json

import pytest

from grpo_sim.memory import (
    GiB,
    Launch,
    ModelShape,
    bytes_per_param,
    estimate_memory,
    memory_problems,
    model_shape,
    parse_memory,
    shipped_config_path,
    shipped_models,
)

QWEN3B = "Qwen/Qwen2.5-3B-Instruct"
LLAMA8B = "meta-llama/Llama-3.1-8B-Instruct"


def meta_model(name: str):
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    values = json.loads(shipped_config_path(name).read_text())
    config = CONFIG_MAPPING[values["model_type"]](**{k: v for k, v in values.items() if not k.startswith("_")})
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("name", [QWEN3B, LLAMA8B])
def test_param_count_equals_a_model_built_from_the_shipped_config(name):
    model, shape = meta_model(name), model_shape(name)
    assert shape.params == sum(p.numel() for p in model.parameters())  # tied weights counted once
    # DeepSpeed's largest layer (deepspeed.runtime.zero.stage3.model_to_params): one module's own parameters
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    assert shape.largest_layer_params == largest
    block = model.model.layers[0]
    assert shape.block_params == sum(p.numel() for p in block.parameters())


def test_shipped_configs_are_the_published_sizes():
    assert shipped_models() == [QWEN3B, LLAMA8B]
    assert model_shape(QWEN3B).params == 3_085_938_688  # "3.09B" on the model card
    assert model_shape(LLAMA8B).params == 8_030_261_248  # "8.03B"
    assert model_shape(LLAMA8B).max_context == 131072 and model_shape(QWEN3B).max_context == 32768


def test_lora_params_equal_peft_on_a_small_model():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    values = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = get_peft_model(
        Qwen2ForCausalLM(Qwen2Config(**values)),
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    shape = ModelShape.from_config({**values, "model_type": "qwen2"})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shape.lora_params(4, "all-linear") == trainable
    assert shape.params == sum(p.numel() for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("name", [QWEN3B, LLAMA8B])
@pytest.mark.parametrize("gpus", [1, 4, 7, 8, 16])
def test_zero_model_states_equal_deepspeed_estimators(name, gpus):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    shape = model_shape(name)
    zero2 = estimate_memory(Launch(shape, strategy="zero2", num_gpus=gpus)).model_states
    _, ds2 = estimate_zero2_model_states_mem_needs(shape.params, num_gpus_per_node=gpus, cpu_offload=False)
    assert abs(zero2 - ds2) <= 4  # per-term int() rounding
    zero3 = estimate_memory(Launch(shape, strategy="zero3", num_gpus=gpus)).model_states
    _, ds3, _ = estimate_zero3_model_states_mem_needs(
        shape.params, shape.largest_layer_params, num_gpus_per_node=gpus, cpu_offload=False
    )
    assert abs(zero3 - ds3) <= 4


def test_bytes_per_param_by_hand():
    assert bytes_per_param("ddp", 8) == 20  # fp32 weights 4 + grads 4 + DDP buckets 4 + AdamW 8
    assert bytes_per_param("single", 1) == 16  # no buckets on one GPU
    assert bytes_per_param("ddp", 8, masters_fp32=False) == 12  # bf16 2 + 2 + 2 + AdamW 4 + Kahan 2
    assert bytes_per_param("zero2", 8) == 2 + 18 / 8
    assert bytes_per_param("zero3", 8) == 18 / 8  # 2 + 4 + 4 + 8, sharded
    assert bytes_per_param("fsdp", 8) == 16 / 8


def test_issue_arithmetic_of_the_ddp_embedding_recipe():
    """Issue #24: Qwen2.5-3B under DDP with fp32 masters is ~57.5 GiB of model states, the bf16 reference 5.75 GiB,
    vLLM's 0.3 x 79 GiB = 23.7 GiB: over an 80 GB H100 before activations."""
    shape = model_shape(QWEN3B)
    launch = Launch(shape, strategy="ddp", num_gpus=8, beta=0.04, vllm="colocate", gpu_memory=int(79 * GiB))
    launch = Launch(**{**launch.__dict__, "vllm_gpu_memory_utilization": 0.3})
    est = estimate_memory(launch)
    assert est.model_states / GiB == pytest.approx(20 * 3_085_938_688 / GiB)  # 57.48
    assert round(est.model_states / GiB, 1) == 57.5
    assert est.term("reference model (beta > 0)") / GiB == pytest.approx(5.75, abs=0.01)
    assert est.term("vLLM reservation (colocate)") / GiB == pytest.approx(23.7)
    assert est.fits() is False
    problems, _ = memory_problems(est)
    assert len(problems) == 1 and "ZeRO-2" in problems[0] and "vLLM reservation" in problems[0]


def test_activation_and_logit_terms_by_hand():
    shape = ModelShape(
        "toy", hidden=8, layers=2, heads=2, kv_heads=1, intermediate=16, vocab=10, max_context=64, tied=True
    )
    # per token and layer: 22 H + 8 I + 4 kv_dim = 176 + 128 + 16 = 320 bytes
    assert shape.activation_bytes_per_token_layer() == 320
    full = estimate_memory(Launch(shape, batch=2, prompt_tokens=3, completion_tokens=5))
    assert full.term("activations") == 2 * 8 * 320 * 2  # 16 tokens x 320 B x 2 layers
    assert full.term("logits (completion tokens)") == 2 * 6 * 10 * 10  # B x (C + 1) x V x (2 + 8)
    ckpt = estimate_memory(Launch(shape, batch=2, prompt_tokens=3, completion_tokens=5, gradient_checkpointing=True))
    assert ckpt.term("activations") == 16 * 2 * 8 * 2 + 16 * 320  # layer inputs (2H B each) + one layer
    # KV cache per token: K and V x 2 layers x kv_dim 4 x 2 bytes
    assert shape.kv_bytes_per_token() == 32


def test_lora_uses_the_base_as_reference_and_zero3_shards_it():
    shape = model_shape(QWEN3B)
    lora = estimate_memory(Launch(shape, lora_r=16, beta=0.04, strategy="single"))
    assert lora.term("reference model (beta > 0)") == 0
    assert lora.term("weights") == 2 * shape.params
    z3 = estimate_memory(Launch(shape, strategy="zero3", num_gpus=8, beta=0.04))
    assert z3.term("reference model (beta > 0)") == 2 * shape.params // 8
    z2 = estimate_memory(Launch(shape, strategy="zero2", num_gpus=8, beta=0.04))
    assert z2.term("reference model (beta > 0)") == 2 * shape.params


def test_vllm_colocate_without_max_model_len_cannot_start_for_llama():
    """Issue #24 item 2: unset vllm_max_model_length = 131,072 tokens for Llama-3.1-8B, ~16 GiB of KV cache for one
    request, against what is left of 0.3 x 79 GiB after ~15 GiB of weights."""
    shape = model_shape(LLAMA8B)
    base = dict(
        strategy="zero3", num_gpus=8, vllm="colocate", gpu_memory=int(79 * GiB), vllm_gpu_memory_utilization=0.3
    )
    est = estimate_memory(Launch(shape, **base))
    assert est.kv_one_sequence / GiB == pytest.approx(16.0)
    problems, _ = memory_problems(est)
    assert any("cannot hold one sequence of max_model_len 131072" in p for p in problems)
    sized = estimate_memory(Launch(shape, **base, vllm_max_model_length=2048))
    assert not any("max_model_len" in p for p in memory_problems(sized)[0])


def test_kv_cache_smaller_than_a_generation_batch_is_a_warning():
    shape = model_shape(QWEN3B)
    est = estimate_memory(
        Launch(
            shape,
            strategy="zero2",
            num_gpus=8,
            vllm="colocate",
            vllm_gpu_memory_utilization=0.3,
            gpu_memory=int(40 * GiB),
            vllm_max_model_length=1088,
            prompt_tokens=1024,
            completion_tokens=64,
            vllm_sequences=512,
        )
    )
    problems, warnings = memory_problems(est)
    assert problems == []
    assert est.kv_cache / GiB == pytest.approx(0.3 * 40 - 2 * 3_085_938_688 / GiB - 1.5)  # 4.75 GiB
    assert est.kv_generation == 512 * 1088 * 36864  # 19.1 GiB
    assert any("several waves" in w for w in warnings)


@pytest.mark.parametrize(
    ("text", "size"),
    [("80GiB", 80 * GiB), ("80GB", 80 * 10**9), ("24g", 24 * GiB), ("81920MiB", 80 * GiB), (1024, 1024)],
)
def test_parse_memory(text, size):
    assert parse_memory(text) == size


def test_parse_memory_refuses_nonsense():
    with pytest.raises(ValueError, match="80GiB"):
        parse_memory("eighty")


def test_gpu_memory_check_dry_run_on_cpu(tmp_path):
    """scripts/gpu_check.sh --memory --dry-run: the measurement's code path on CPU (a tiny Qwen2 of the same family)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "gpu_memory_check.py"), "--dry-run", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] and result["params"] == 107072 and "reference model (beta > 0)" in result["terms_gib"]


def test_a_hub_model_in_the_local_cache_is_sized_from_its_config(tmp_path):
    """train on a GPU sizes a hub model it has downloaded already (the cache's config.json), without a download."""
    from grpo_sim.plan_memory import cached_model_shape

    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    values = json.loads(shipped_config_path(QWEN3B).read_text())
    (snapshot / "config.json").write_text(json.dumps(values))
    shape = cached_model_shape("org/tiny", cache_dir=str(tmp_path))
    assert shape is not None and shape.params == model_shape(QWEN3B).params
    assert cached_model_shape("org/absent", cache_dir=str(tmp_path)) is None


def test_activation_bytes_equal_what_a_real_qwen2_saves_for_backward():
    """The tensors a bf16 Qwen2 (SDPA) keeps for backward, counted with saved-tensor hooks (each storage once,
    parameters left out), against layers x tokens x activation_bytes_per_token_layer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    values = dict(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**values, attn_implementation="sdpa")).to(torch.bfloat16).train()
    shape = ModelShape.from_config({**values, "model_type": "qwen2"})
    batch, length = 4, 128
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(0, 1000, (batch, length)), logits_to_keep=1)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = sum(n for ptr, n in saved.items() if ptr not in params)
    estimate = batch * length * shape.layers * shape.activation_bytes_per_token_layer()
    assert measured == pytest.approx(estimate, rel=0.05)
