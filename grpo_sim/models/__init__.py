"""Policy models: the tiny local word-level Qwen2 policy and the generic loader."""

from .tiny import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    build_tiny_qwen2,
    build_word_tokenizer,
    count_parameters,
    load_policy,
    load_tokenizer,
    make_tiny_policy,
    prepare_tokenizer,
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
