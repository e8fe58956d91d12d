"""A tiny local policy: word-level tokenizer + small Qwen2 causal LM, built without any hub.

A word-level vocabulary (one token per made-up name) is what lets a sub-million-parameter
model learn to copy answers from retrieved passages on a CPU in minutes; byte-level BPE splits
names into pieces and does not learn in the same budget.

A saved tiny policy (:func:`save_tiny_policy`) loads with :func:`grpo_sim.models.loading.load_policy`, the
loader of every model.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
USER_TOKEN = "<user>"
ASSISTANT_TOKEN = "<assistant>"
SYSTEM_TOKEN = "<system>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, SYSTEM_TOKEN]

#: words, single punctuation characters and newlines are tokens; other whitespace separates
WORD_PATTERN = r"\w+|[^\w\s]|\n"

#: punctuation decoded without a space before it
ATTACH_LEFT = ".,?!:;)]\n"

#: ``<user> ... <assistant> answer <eos>``; ``{% generation %}`` marks assistant tokens so
#: ``return_assistant_tokens_mask`` / SFT ``assistant_only_loss`` work.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<system> {{ message['content'] }} "
    "{% elif message['role'] == 'user' %}<user> {{ message['content'] }} "
    "{% elif message['role'] == 'assistant' %}<assistant> "
    "{% generation %}{{ message['content'] }} <eos>{% endgeneration %} "
    "{% else %}{{ raise_exception('unsupported role: ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)


def word_vocab(texts: Iterable[str], extra_tokens: Sequence[str] = ()) -> dict[str, int]:
    """Deterministic vocabulary: special tokens, then ``extra_tokens`` (in order), then every
    word of ``texts`` by decreasing frequency (ties alphabetical)."""
    pre = _pre_tokenizer()
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(piece for piece, _ in pre.pre_tokenize_str(t))
    vocab: dict[str, int] = {}
    for tok in list(SPECIAL_TOKENS) + list(extra_tokens):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    for tok, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return vocab


def build_word_tokenizer(texts: Iterable[str], extra_tokens: Sequence[str] = ()):
    """A ``PreTrainedTokenizerFast`` with a word-level vocabulary built from ``texts``.

    Case is kept (a name is one token); punctuation characters and ``\\n`` are tokens of
    their own; unknown words map to ``<unk>``. Special tokens ``<pad>`` (id 0) and ``<eos>``
    (id 1); no bos token is prepended. ``<user>``/``<assistant>``/``<system>`` are chat
    markers used by the chat template. Decoding joins words with spaces (no space before
    closing punctuation or a newline).
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = word_vocab(texts, extra_tokens)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.pre_tokenizer = _pre_tokenizer()
    # words are joined with spaces; closing punctuation and newlines attach to the word before
    # (marked with the WordPiece continuation prefix, which a word token can never contain)
    tok.decoder = decoders.Sequence(
        [decoders.Replace(c, "##" + c) for c in ATTACH_LEFT]
        + [decoders.WordPiece(prefix="##", cleanup=False), decoders.Replace("##", "")]
    )
    tok.add_special_tokens(SPECIAL_TOKENS)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=[USER_TOKEN, ASSISTANT_TOKEN, SYSTEM_TOKEN],
        padding_side="left",
        truncation_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "left"
    return hf


def build_tiny_qwen2(
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    seed: int = 0,
    max_position_embeddings: int = 512,
    num_key_value_heads: int | None = None,
    tie_word_embeddings: bool = True,
    **config_kwargs: Any,
):
    """A randomly initialised ``Qwen2ForCausalLM`` sized for ``tokenizer`` (float32).

    Initialisation is deterministic for ``seed`` and leaves the caller's global torch RNG
    untouched. ``intermediate_size`` defaults to ``4 * hidden_size``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos_id
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_key_value_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
        **config_kwargs,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.eval()
    return model


def count_parameters(model) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def save_tiny_policy(model, tokenizer, path: str | os.PathLike[str]) -> Path:
    """``save_pretrained`` model and tokenizer into one directory (loadable by
    :func:`grpo_sim.models.loading.load_policy`)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def make_tiny_policy(
    path: str | os.PathLike[str],
    texts: Iterable[str],
    seed: int = 0,
    extra_tokens: Sequence[str] = (),
    **model_kwargs: Any,
):
    """Build a word tokenizer on ``texts`` and a tiny Qwen2 on it, save both to ``path`` and
    return ``(model, tokenizer)``.

    ``texts``: the text the word-level vocabulary is built on (e.g. a dataset's prompts and answers;
    :func:`grpo_sim.demo.world.demo_text_corpus` for the demo's). ``model_kwargs`` go to :func:`build_tiny_qwen2`.
    """
    tokenizer = build_word_tokenizer(texts, extra_tokens=extra_tokens)
    model = build_tiny_qwen2(tokenizer, seed=seed, **model_kwargs)
    save_tiny_policy(model, tokenizer, path)
    return model, tokenizer


__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_qwen2",
    "build_word_tokenizer",
    "count_parameters",
    "make_tiny_policy",
    "save_tiny_policy",
    "word_vocab",
]
