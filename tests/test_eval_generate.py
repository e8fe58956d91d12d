"""Generation for evaluation: prompts, levels, decoding, model loading (paths, adapters, checkpoints), vLLM wiring."""

import json
import sys
import types

import pytest
import torch

from grpo_sim.data import to_training_rows
from grpo_sim.eval import (
    build_eval_prompts,
    evaluate_model,
    generate_predictions,
    load_eval_model,
    resolve_model_dir,
)

from trainer_helpers import build_policy, demo_rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_policy(tmp_path_factory.mktemp("tiny") / "policy", num_sets=6, num_paraphrases=3)
    train, _, _, _ = demo_rows(6, 3)
    return path, train[:3]


class FakeModel:
    """``generate`` appends the token ids of ``reply`` (then eos, then pads) to every prompt."""

    def __init__(self, tokenizer, reply):
        self.tok = tokenizer
        self.reply = tokenizer(reply, add_special_tokens=False)["input_ids"]
        self.device = torch.device("cpu")
        self.generation_config = None
        self.calls = []

    def generate(self, input_ids, attention_mask, generation_config):
        self.calls.append((input_ids.clone(), attention_mask.clone(), generation_config))
        tail = self.reply + [self.tok.eos_token_id, self.tok.pad_token_id]
        tail = torch.tensor([tail] * input_ids.shape[0], dtype=input_ids.dtype)
        return torch.cat([input_ids, tail], dim=1)


def test_prompts_match_training_rows_and_generator_level(tiny):
    path, sets = tiny
    from grpo_sim.models import load_tokenizer

    tok = load_tokenizer(path)
    e2e = build_eval_prompts(sets, "e2e", tokenizer=tok)
    train_rows = to_training_rows(sets)
    assert [r["messages"] for r in e2e] == [r["prompt"] for r in train_rows]
    assert e2e[0]["prompt"] == tok.apply_chat_template(
        train_rows[0]["prompt"], tokenize=False, add_generation_prompt=True
    )
    assert e2e[0]["prompt"].endswith("<assistant>")
    gen = build_eval_prompts(sets, "generator", tokenizer=tok)
    for s in sets:
        first = [p.id for p in s.paraphrases[0].passages]
        rows = [r for r in gen if r["set_id"] == s.set_id]
        assert [r["passage_ids"] for r in rows] == [first] * len(s.paraphrases)
        assert [r["question"] for r in rows] == [p.question for p in s.paraphrases]
    with pytest.raises(ValueError, match="level"):
        build_eval_prompts(sets, "retriever", tokenizer=tok)


def test_decodes_only_new_tokens_with_left_padding(tiny):
    path, sets = tiny
    from grpo_sim.models import load_tokenizer

    tok = load_tokenizer(path)
    answer = sets[0].answers[0]
    fake = FakeModel(tok, f"{answer} .")
    rows = generate_predictions(fake, tok, sets, level="e2e", batch_size=4, progress=False)
    assert len(rows) == 9 and {r["answer"] for r in rows} == {f"{answer}."}
    assert set(rows[0]) >= {"set_id", "paraphrase_id", "prompt", "passage_ids", "answer", "level"}
    assert [(r["set_id"], r["paraphrase_id"]) for r in rows] == [
        (s.set_id, p.paraphrase_id) for s in sets for p in s.paraphrases
    ]
    ids, mask, gc = fake.calls[0]
    assert len(fake.calls) == 3 and gc.do_sample is False and gc.max_new_tokens == 32
    # left padding: shorter prompts are padded at the start
    assert (mask[:, -1] == 1).all() and (ids[mask == 0] == tok.pad_token_id).all()
    fake2 = FakeModel(tok, "x")
    generate_predictions(fake2, tok, sets, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=5, progress=False)
    gc = fake2.calls[0][2]
    assert gc.do_sample and gc.temperature == 0.7 and gc.top_p == 0.9 and gc.top_k == 0 and gc.max_new_tokens == 5
    with pytest.raises(ValueError, match="temperature"):
        generate_predictions(fake2, tok, sets, do_sample=True, temperature=0.0, progress=False)


def test_real_tiny_policy_is_deterministic(tiny):
    path, sets = tiny
    model, tok, desc = load_eval_model(path, device="cpu")
    a = generate_predictions(model, tok, sets, max_new_tokens=4, batch_size=2, progress=False)
    b = generate_predictions(model, tok, sets, max_new_tokens=4, batch_size=9, progress=False)
    assert [r["answer"] for r in a] == [r["answer"] for r in b]
    s1 = generate_predictions(model, tok, sets, max_new_tokens=4, do_sample=True, seed=3, progress=False)
    s2 = generate_predictions(model, tok, sets, max_new_tokens=4, do_sample=True, seed=3, progress=False)
    assert [r["answer"] for r in s1] == [r["answer"] for r in s2]
    assert tok.padding_side == "left"
    # the runner's call: a loaded (model, tokenizer) pair; flat numbers at the top level
    r = evaluate_model(
        (model, tok),
        sets,
        levels=("e2e",),
        metrics=("exact_match",),
        max_new_tokens=2,
        batch_size=4,
        n_boot=10,
        progress=False,
    )
    assert r["num_sets"] == 3 and r["accuracy_em"] == r["models"]["model"]["accuracy_em"]
    assert "consistency_generator_exact" not in r and r["comparison"] is None


def test_model_paths(tiny, tmp_path):
    path, sets = tiny
    assert resolve_model_dir(path) == ("model", path)
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        resolve_model_dir(missing)
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        evaluate_model(str(missing), sets, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_dir(tmp_path / "empty")
    # a training output dir with checkpoints: the highest step wins
    out = tmp_path / "run"
    for step in (2, 10):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "config.json").write_text("{}")
    assert resolve_model_dir(out) == ("model", str(out / "checkpoint-10"))
    assert resolve_model_dir("Qwen/Qwen2.5-0.5B-Instruct") == ("hub", "Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(FileNotFoundError, match="hub id failed"):
        load_eval_model("org/definitely-not-a-cached-model")


def test_lora_training_output_dir(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    path, sets = tiny
    model, tok, _ = load_eval_model(path, device="cpu")
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    out = tmp_path / "lora_run"
    peft_model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == path
    assert resolve_model_dir(out)[0] == "adapter"
    merged, tok2, desc = load_eval_model(out, device="cpu")
    assert "adapter" in desc and not hasattr(merged, "peft_config")
    ids = tok2("Question: Where", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-5)
    r = evaluate_model(
        str(out), sets, levels=("e2e",), metrics=("exact_match",), n_boot=20, max_new_tokens=3, progress=False
    )
    assert r["models"]["model"]["num_sets"] == 3 and "adapter" in r["models"]["model"]["name"]


def test_vllm_backend_wiring(tiny, monkeypatch):
    path, sets = tiny
    from grpo_sim.models import load_tokenizer

    tok = load_tokenizer(path)
    seen = {}
    answer_ids = tok(sets[0].answers[0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    class SamplingParams:
        def __init__(self, **kw):
            seen["params"] = kw

    class LLM:
        def __init__(self, model, seed, **kw):
            seen["init"] = (model, seed)

        def generate(self, prompts, params, use_tqdm=True):
            seen["prompts"] = prompts
            out = types.SimpleNamespace(token_ids=answer_ids)
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    rows = generate_predictions(path, None, sets, backend="vllm", max_new_tokens=7, progress=False)
    assert seen["init"] == (path, 0)
    assert seen["params"]["temperature"] == 0.0 and seen["params"]["max_tokens"] == 7
    first = build_eval_prompts(sets, tokenizer=tok)[0]["prompt"]
    assert seen["prompts"][0]["prompt_token_ids"] == tok(first, add_special_tokens=False)["input_ids"]
    assert {r["answer"] for r in rows} == {sets[0].answers[0]}
    monkeypatch.delitem(sys.modules, "vllm")
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="vLLM"):
        generate_predictions(path, None, sets, backend="vllm", progress=False)
