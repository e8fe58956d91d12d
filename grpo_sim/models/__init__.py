"""Policy models: the loader of every model (:mod:`.loading`) and the tiny local word-level Qwen2 policy
(:mod:`.tiny`, which ``grpo-sim model from-data`` and the demo build)."""

from .loading import load_policy, load_tokenizer, prepare_tokenizer
from .tiny import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    build_tiny_qwen2,
    build_word_tokenizer,
    count_parameters,
    make_tiny_policy,
    save_tiny_policy,
    word_vocab,
)

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_qwen2",
    "build_word_tokenizer",
    "count_parameters",
    "load_policy",
    "load_tokenizer",
    "make_tiny_policy",
    "prepare_tokenizer",
    "save_tiny_policy",
    "word_vocab",
]
