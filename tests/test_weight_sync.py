"""The weight-sync seam (grpo_sim.weight_sync): what is sent to vLLM, and that sending it never touches the base.

The LoRA drift test runs 200 syncs in bf16 with real peft, the adapter changing between syncs as training changes
it: the seam leaves the base bit-identical and sends W + scale * B @ A (checked against a merged copy). The same
measurement on TRL's path (merge_adapter() / read / unmerge_adapter(), grpo_sim's code before the seam) shows the
drift, so the check is one that TRL's path fails.
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from grpo_sim.models.tiny import build_tiny_qwen2, build_word_tokenizer
from grpo_sim.weight_sync import WEIGHTS_FILE, save_for_reload, weights_to_send

TEXTS = ["the quick brown fox jumps over the lazy dog", "a question and its answer", "who wrote the book"]


def _base(dtype=torch.bfloat16, tie=False):
    tokenizer = build_word_tokenizer(TEXTS)
    model = build_tiny_qwen2(tokenizer, hidden_size=64, num_layers=2, num_heads=2, tie_word_embeddings=tie, seed=1)
    return model.to(dtype)


def _lora(model, modules_to_save=None):
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "up_proj"],
        modules_to_save=modules_to_save,
        init_lora_weights=False,  # B != 0: the delta is not zero from the start
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _train_adapter(model, step: int) -> None:
    """What an optimizer step does to the adapter (and only the adapter)."""
    generator = torch.Generator().manual_seed(step)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(1e-3 * torch.randn(param.shape, generator=generator).to(param.dtype))


def _base_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" not in name}


def _trl_merge_unmerge_pairs(model):
    """TRL 1.16's VLLMGeneration._iter_named_params for a peft model (no ZeRO-3/FSDP): merge in place, read,
    unmerge in place."""
    model.merge_adapter()
    for name, param in model.named_parameters():
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if model.prefix in name or "original_module" in name:
            continue
        yield name.replace("modules_to_save.default.", ""), param.data
    model.unmerge_adapter()


def _max_base_drift(model, sync, syncs: int) -> float:
    loaded = _base_weights(model)
    for step in range(syncs):
        for _name, _tensor in sync(model):
            pass
        _train_adapter(model, step)
    now = _base_weights(model)
    return max((now[k].float() - loaded[k].float()).abs().max().item() for k in loaded)


def test_lora_sync_leaves_the_bf16_base_bit_identical_over_200_syncs():
    model = _lora(_base())
    assert _max_base_drift(model, lambda m: weights_to_send(m, torch.bfloat16), 200) == 0.0


def test_trls_merge_unmerge_path_drifts_the_bf16_base():
    """The measurement above fails on TRL's path: merge/unmerge in bf16 does not round-trip."""
    model = _lora(_base())
    assert _max_base_drift(model, _trl_merge_unmerge_pairs, 200) > 0.0


def test_lora_sends_w_plus_ba_under_the_base_names():
    base = _base()
    names = [name for name, _ in base.named_parameters()]
    before = {name: p.detach().clone() for name, p in base.named_parameters()}
    model = _lora(base)
    _train_adapter(model, 0)
    sent = dict(weights_to_send(model, torch.bfloat16))
    merged = copy.deepcopy(model).float().merge_and_unload()  # W + scale * B @ A in float32, on a copy
    expected = {name: p.detach().to(torch.bfloat16) for name, p in merged.named_parameters()}
    assert list(sent) == names  # the base model's names, in its order; no adapter tensors
    for name in names:
        assert sent[name].dtype == torch.bfloat16
        assert torch.equal(sent[name], expected[name]), name
    changed = [n for n in names if not torch.equal(sent[n], before[n])]
    assert changed and all(any(t in n for t in ("q_proj", "v_proj", "up_proj")) for n in changed)


def test_lora_modules_to_save_send_the_trained_copy_under_the_original_name():
    model = _lora(_base(), modules_to_save=["lm_head"])
    with torch.no_grad():
        model.base_model.model.lm_head.modules_to_save["default"].weight.fill_(0.5)
    sent = dict(weights_to_send(model))
    assert "lm_head.weight" in sent and not any("original_module" in n or "modules_to_save" in n for n in sent)
    assert torch.all(sent["lm_head.weight"] == 0.5)
    assert model.base_model.model.lm_head.original_module.weight.ne(0.5).any()


def test_full_weights_are_sent_in_the_engine_dtype_not_the_float32_masters():
    model = _base(torch.float32)  # bf16 weights trained as float32 masters
    sent = dict(weights_to_send(model, torch.bfloat16))
    assert {t.dtype for t in sent.values()} == {torch.bfloat16}
    assert list(sent) == [name for name, _ in model.named_parameters()]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the masters themselves are untouched


def test_tied_embeddings_are_sent_once_or_under_both_names():
    model = _base(tie=True)
    sent = [name for name, _ in weights_to_send(model)]
    assert "model.embed_tokens.weight" in sent and "lm_head.weight" not in sent
    both = dict(weights_to_send(model, include_aliases=True))
    assert set(both) == set(sent) | {"lm_head.weight"}
    assert torch.equal(both["lm_head.weight"], both["model.embed_tokens.weight"])
    lora = dict(weights_to_send(_lora(_base(tie=True)), include_aliases=True))
    assert set(lora) == set(both)


def test_wrapped_models_are_unwrapped(monkeypatch):
    model = _base(torch.float32)
    wrapper = DistributedDataParallel.__new__(DistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    assert [n for n, _ in weights_to_send(wrapper)] == [n for n, _ in model.named_parameters()]


def test_save_for_reload_writes_one_safetensors_checkpoint(tmp_path):
    model = _lora(_base())
    sent = dict(weights_to_send(model, torch.bfloat16))
    out = save_for_reload(sent.items(), tmp_path / "sync")
    loaded = load_file(str(out / WEIGHTS_FILE))
    assert set(loaded) == set(sent) and all(torch.equal(loaded[k], sent[k]) for k in sent)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("variant", [dict(use_dora=True), dict(lora_bias=True)])
def test_lora_variants_that_need_an_in_place_merge_are_refused(variant):
    config = LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM", **variant)
    model = get_peft_model(_base(torch.float32), config)
    with pytest.raises(NotImplementedError, match="vLLM"):
        list(weights_to_send(model))
