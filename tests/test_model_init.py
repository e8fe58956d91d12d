"""``grpo-sim model init`` (a policy for one's own data) and the start-up checks of a policy."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import Paraphrase, ParaphraseSet, Passage, build_rag_prompt, write_psets
from grpo_sim.models import build_word_tokenizer, load_policy, make_tiny_policy
from grpo_sim.models.from_data import positions_for, size_for_tokens
from grpo_sim.models.startup import (
    TiedWeightsResumeFilter,
    TokenizerCoverageError,
    check_tokenizer_coverage,
    quiet_tied_weights_on_resume,
    token_coverage,
)

runner = CliRunner()

WORDS = (
    "Oberhausen Kettwig Rheinpreussen Duisburg Hamborn Sterkrade Walsum Dinslaken Voerde Wesel Emmerich "
    "Kleve Goch Geldern Moers Krefeld Neuss Dormagen Leverkusen Solingen"
).split()


def own_sets(n_sets: int = 4, n_par: int = 3) -> list[ParaphraseSet]:
    """Sets whose words the demo vocabulary has never seen (long passages, multi-word answers)."""
    sets = []
    for i in range(n_sets):
        town, other = WORDS[i % len(WORDS)], WORDS[(i + 7) % len(WORDS)]
        passages = [
            Passage(
                id=f"p{i}-{k}",
                title=WORDS[(i + k) % len(WORDS)],
                text=" ".join(WORDS[(i + k + j) % len(WORDS)] for j in range(60)),
            )
            for k in range(3)
        ]
        wordings = [
            f"Which mine lies next to {town}?",
            f"Name the mine beside {town}.",
            f"What mine borders {town}?",
            f"Near {town}, which mine is there?",
        ]
        sets.append(
            ParaphraseSet(
                set_id=f"s{i}",
                question=wordings[0],
                answers=[f"Zeche {other} Nord"],
                paraphrases=[
                    Paraphrase(paraphrase_id=j, question=wordings[j], passages=passages[j % 3 :] + passages[: j % 3])
                    for j in range(n_par)
                ],
            )
        )
    return sets


def test_size_rule_and_positions_by_hand():
    assert size_for_tokens(0) == (64, 2, 4)
    assert size_for_tokens(99_999) == (64, 2, 4)
    assert size_for_tokens(100_000) == (128, 4, 4)
    assert size_for_tokens(999_999) == (128, 4, 4)
    assert size_for_tokens(10**9) == (256, 6, 8)
    assert positions_for(610, 6, 32) == 704  # 610 + 32 = 642 -> next multiple of 64
    assert positions_for(100, 40, 32) == 192  # the answer (40 + eos) is longer than the budget: 141 -> 192
    assert positions_for(32, 0, 32) == 64


def test_model_init_builds_a_policy_that_reads_all_its_data(tmp_path):
    train, eval_ = own_sets(4), own_sets(6)[4:]
    write_psets(tmp_path / "train.jsonl", train)
    write_psets(tmp_path / "eval.jsonl", eval_)
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "model",
            "init",
            "--data",
            str(tmp_path / "train.jsonl"),
            "--data",
            str(tmp_path / "eval.jsonl"),
            "--out",
            str(out),
            "--max-completion-length",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "size rule: 64 hidden, 2 layers, 4 heads" in result.output
    info = json.loads((out / "model_init.json").read_text())
    model, tokenizer = load_policy(out)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (64, 2)
    prompts = [build_rag_prompt(p.question, p.passages) for s in train + eval_ for p in s.paraphrases]
    assert token_coverage(tokenizer, prompts).unknown == 0  # every word of both files is in the vocabulary
    chat = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for p in prompts
    ]
    assert info["longest_prompt_tokens"] == max(len(ids) for ids in chat) > 180  # 3 passages of 60 words
    assert model.config.max_position_embeddings == info["max_position_embeddings"] >= max(map(len, chat)) + 16
    assert model.config.max_position_embeddings % 64 == 0
    assert info["sets"] == 6 and info["prompts"] == 18 and info["parameters"] > 0
    # a second init into the same directory is refused unless --overwrite
    again = runner.invoke(app, ["model", "init", "--data", str(tmp_path / "train.jsonl"), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert (
        runner.invoke(
            app, ["model", "init", "--data", str(tmp_path / "train.jsonl"), "--out", str(out), "--overwrite"]
        ).exit_code
        == 0
    )
    bad = runner.invoke(app, ["model", "init", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m")])
    assert bad.exit_code == 2 and "missing.jsonl" in bad.output and not (tmp_path / "m").exists()


def test_token_coverage_by_hand():
    tokenizer = build_word_tokenizer(["a b"])
    coverage = token_coverage(tokenizer, ["a b c d", "a c"])
    assert (coverage.tokens, coverage.unknown, coverage.texts) == (6, 3, 2)
    assert coverage.unknown_fraction == 0.5
    assert coverage.unknown_words == {"c": 2, "d": 1}


def test_coverage_check_refuses_warns_or_passes(caplog):
    tokenizer = build_word_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    with pytest.raises(TokenizerCoverageError) as refused:
        check_tokenizer_coverage(tokenizer, ["a b c Zyx"], "data.train (x.jsonl)", "my-model")  # 25% unknown
    assert "25.0%" in str(refused.value) and "grpo-sim model init" in str(refused.value)
    assert "'Zyx'" in str(refused.value) and "data.train (x.jsonl)" in str(refused.value)
    letters = " ".join("abcdefghijklmnopqrst")  # 20 known words + 1 unknown: 4.8%
    with caplog.at_level(logging.WARNING, logger="grpo_sim.models.startup"):
        assert check_tokenizer_coverage(tokenizer, [letters + " Zyx"], "data.train", "m").unknown == 1
    assert "4.8%" in caplog.text and "grpo-sim model init" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grpo_sim.models.startup"):
        check_tokenizer_coverage(tokenizer, ["a b c"], "data.train", "m")
    assert caplog.text == ""


def test_train_refuses_a_policy_that_cannot_read_the_data(tmp_path):
    """The demo's vocabulary on other data: the run stops right after the model loads and says what to do."""
    from grpo_sim.demo import build_demo_dataset, demo_text_corpus

    train, eval_, corpus = build_demo_dataset(16, 8, seed=0)
    make_tiny_policy(
        tmp_path / "demo_vocab", demo_text_corpus(train + eval_, corpus), hidden_size=16, num_layers=1, num_heads=2
    )
    write_psets(tmp_path / "train.jsonl", own_sets(4, 2))
    recipe = {
        "model": {"name_or_path": str(tmp_path / "demo_vocab")},
        "data": {"train": str(tmp_path / "train.jsonl")},
        "training": {
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 2,
            "max_steps": 1,
            "report_to": [],
            "disable_tqdm": True,
        },
        "evaluation": {"enabled": False},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["train", str(tmp_path / "r.yaml"), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "of the tokens of data.train" in result.output and "grpo-sim model init" in result.output
    assert not (tmp_path / "run" / "final").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_tied_weights_message_on_resume_is_dropped_only_for_tied_keys(tmp_path, caplog):
    from transformers import Trainer

    model, _ = make_tiny_policy(tmp_path / "p", texts=["a b"], hidden_size=16, num_layers=1, num_heads=2)
    quiet_tied_weights_on_resume(model)

    class Loaded:  # what load_state_dict(strict=False) returns for a checkpoint without the tied lm_head
        missing_keys = ["lm_head.weight"]
        unexpected_keys: list[str] = []

    class Other(Loaded):
        missing_keys = ["model.norm.weight"]

    holder = type("T", (), {"model": model})()
    with caplog.at_level(logging.INFO):
        Trainer._issue_warnings_after_load(holder, Loaded())  # transformers' own message
        assert "There were missing keys" not in caplog.text and "tied to the input embeddings" in caplog.text
        Trainer._issue_warnings_after_load(holder, Other())
        assert "There were missing keys in the checkpoint model loaded: ['model.norm.weight']" in caplog.text
    assert sum(isinstance(f, TiedWeightsResumeFilter) for f in logging.getLogger("transformers.trainer").filters) == 1
