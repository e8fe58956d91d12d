import time

import pytest
import torch

from grpo_sim.data import to_training_rows
from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
from grpo_sim.models import (
    build_tiny_qwen2,
    build_word_tokenizer,
    count_parameters,
    load_policy,
    load_tokenizer,
    make_tiny_policy,
)


@pytest.fixture(scope="module")
def demo():
    return build_demo_dataset(12, 4, seed=0)


@pytest.fixture(scope="module")
def tok(demo):
    train, eval_, corpus = demo
    return build_word_tokenizer(demo_text_corpus(train + eval_, corpus))


def test_tokenizer_basics(tok):
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>" and tok.padding_side == "left"
    assert tok.pad_token_id != tok.eos_token_id
    ids = tok.encode("Where was Varenko born?", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids) == ["Where", "was", "<unk>", "born", "?"]
    assert tok.decode(tok.encode("Qqq Zzz.", add_special_tokens=False)) == "<unk> <unk>."
    case = build_word_tokenizer(["Varenko varenko Oslandia, ok."])
    assert len(case.tokenize("Varenko varenko")) == 2
    assert case.decode(case.encode("Varenko", add_special_tokens=False)) == "Varenko"
    assert case.decode(case.encode("Oslandia, ok.", add_special_tokens=False)) == "Oslandia, ok."
    # deterministic vocabulary
    assert build_word_tokenizer(["b a a c"]).get_vocab() == build_word_tokenizer(["b a a c"]).get_vocab()
    extra = build_word_tokenizer(["a"], extra_tokens=["Zzz"])
    assert len(extra.tokenize("Zzz")) == 1 and extra.convert_tokens_to_ids("Zzz") != extra.unk_token_id


def test_chat_template(tok, demo):
    row = to_training_rows(demo[0][:1])[0]
    text = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<user> [1] ") and text.endswith("Answer: <assistant>")
    ids = tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    assert ids[-1] == tok.convert_tokens_to_ids("<assistant>") and tok.unk_token_id not in ids
    full = row["prompt"] + [{"role": "assistant", "content": row["answers"][0]}]
    out = tok.apply_chat_template(full, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    answer_id = tok.convert_tokens_to_ids(row["answers"][0])
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert masked == [answer_id, tok.eos_token_id]


def test_build_save_reload(tok, demo, tmp_path):
    model = build_tiny_qwen2(tok, hidden_size=64, num_layers=2, num_heads=4, seed=0)
    n = count_parameters(model)
    assert 50_000 < n < 1_000_000
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    # deterministic init, global RNG untouched
    state = torch.random.get_rng_state()
    again = build_tiny_qwen2(tok, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    other = build_tiny_qwen2(tok, seed=1)
    assert not torch.equal(model.model.embed_tokens.weight, other.model.embed_tokens.weight)

    from grpo_sim.models import save_tiny_policy

    save_tiny_policy(model, tok, tmp_path / "p")
    model2, tok2 = load_policy(tmp_path / "p")
    assert tok2.padding_side == "left" and tok2.pad_token == "<pad>"
    assert tok2.chat_template == tok.chat_template
    rows = to_training_rows(demo[1])
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    assert tok2(texts, add_special_tokens=False)["input_ids"] == tok(texts, add_special_tokens=False)["input_ids"]
    assert load_tokenizer(tmp_path / "p").get_vocab() == tok.get_vocab()
    batch = tok2(texts[:4], return_tensors="pt", padding=True, add_special_tokens=False)
    assert (batch["input_ids"][:, 0] == tok2.pad_token_id).any()  # left padding
    with torch.no_grad():
        a = model(**batch).logits
        b = model2(**batch).logits
    assert torch.equal(a, b)
    assert load_policy(tmp_path / "p", dtype="bfloat16")[0].dtype == torch.bfloat16


def test_generate(tok, demo, tmp_path):
    model, tok = make_tiny_policy(tmp_path / "g", demo_text_corpus(demo[0] + demo[1], demo[2]), seed=0)
    rows = to_training_rows(demo[0][:1])[:3]
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=6, do_sample=True)
    new = out[:, batch["input_ids"].shape[1] :]
    assert new.shape[0] == 3 and 1 <= new.shape[1] <= 6
    decoded = tok.batch_decode(new, skip_special_tokens=True)
    assert all(isinstance(d, str) for d in decoded)


def test_make_tiny_policy_on_demo_text(tmp_path, demo):
    build_tiny_qwen2(build_word_tokenizer(["a"]), hidden_size=8, num_layers=1, num_heads=1)  # warm imports
    t0 = time.perf_counter()
    model, tok = make_tiny_policy(
        tmp_path / "d", demo_text_corpus(demo[0] + demo[1], demo[2]), hidden_size=32, num_layers=1, num_heads=2
    )
    assert time.perf_counter() - t0 < 2.0
    assert (tmp_path / "d" / "config.json").exists() and (tmp_path / "d" / "tokenizer.json").exists()
    assert count_parameters(model) < 1_000_000


def test_trl_grpo_two_steps(tmp_path, demo):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    train, eval_, corpus = demo
    make_tiny_policy(tmp_path / "policy", demo_text_corpus(train + eval_, corpus), seed=0)
    model, tok = load_policy(tmp_path / "policy")
    ds = Dataset.from_list(to_training_rows(train))
    seen = {}

    def reward(completions, answers, **kw):
        seen.setdefault("completions", completions)
        seen.setdefault("set_id", kw.get("set_id"))
        return [float(a[0] in c[0]["content"]) for c, a in zip(completions, answers)]

    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2
    comp = seen["completions"][0]
    assert comp[0]["role"] == "assistant" and isinstance(comp[0]["content"], str)
    assert seen["set_id"] is not None
