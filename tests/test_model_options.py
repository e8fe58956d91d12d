"""The recipe's model options reach the tokenizer as well as the model."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from grpo_sim.models import load_policy

from trainer_helpers import build_policy


def test_tokenizer_gets_the_models_revision_and_remote_code_choice(tmp_path, monkeypatch):
    """load_policy passed revision / trust_remote_code to the model only: a pinned model with a newer tokenizer."""
    path = build_policy(tmp_path / "policy")
    seen = []
    original = PreTrainedTokenizerFast.from_pretrained.__func__

    def recording(cls, src, **kwargs):
        seen.append(kwargs)
        return original(cls, src, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerFast, "from_pretrained", classmethod(recording))
    model, tokenizer = load_policy(path, revision="main", trust_remote_code=False, attn_implementation="eager")
    assert seen == [{"revision": "main", "trust_remote_code": False}]
    assert tokenizer.padding_side == "left" and model.config._attn_implementation == "eager"
