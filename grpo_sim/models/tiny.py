"""A tiny local policy: word-level tokenizer + small Qwen2 causal LM, built without any hub.

A word-level vocabulary (one token per made-up name) is what lets a sub-million-parameter
model learn to copy answers from retrieved passages on a CPU in minutes; byte-level BPE splits
names into pieces and does not learn in the same budget.

``load_policy`` is the one loader used everywhere: it takes a local directory written by
:func:`save_tiny_policy` or any hub id / directory of a real causal LM
(e.g. ``Qwen/Qwen2.5-0.5B-Instruct``) and makes the tokenizer ready for GRPO
(left padding, a pad token).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    pass

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
    """``save_pretrained`` model and tokenizer into one directory (loadable by :func:`load_policy`)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def prepare_tokenizer(tokenizer, model=None):
    """Left padding and a pad token (falls back to eos), mirrored into the model configs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an eos token; set one before training")
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        gc = getattr(model, "generation_config", None)
        if gc is not None and gc.pad_token_id is None:
            gc.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _is_word_level_dir(path: str) -> bool:
    tj = Path(path) / "tokenizer.json"
    if not tj.is_file():
        return False
    try:
        with tj.open("r", encoding="utf-8") as fh:
            return json.load(fh).get("model", {}).get("type") == "WordLevel"
    except (OSError, ValueError):
        return False


def load_tokenizer(path_or_hub_id: str | os.PathLike[str], **kwargs: Any):
    """Load a tokenizer ready for GRPO (left padding, a pad token).

    A local directory whose ``tokenizer.json`` is word-level (a tiny policy) is loaded with
    ``PreTrainedTokenizerFast`` exactly as saved: ``AutoTokenizer`` would not do that, since
    transformers 5 rebuilds every ``model_type: qwen2`` tokenizer as a byte-level BPE
    ``Qwen2Tokenizer`` from the vocabulary alone (different ids, names glued together on
    decode). Anything else goes through ``AutoTokenizer``.
    """
    src = str(path_or_hub_id)
    if _is_word_level_dir(src):
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(src, **kwargs)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
    return prepare_tokenizer(tokenizer)


def load_policy(path_or_hub_id: str | os.PathLike[str], dtype: Any = None, **model_kwargs: Any):
    """Load ``(model, tokenizer)`` from a local directory or a hub id (tokenizer via :func:`load_tokenizer`).

    ``dtype``: ``None`` (the checkpoint's dtype for hub models, float32 for the tiny
    policy), a ``torch.dtype`` or a name such as ``"bfloat16"`` / ``"auto"``. The tokenizer
    always comes back with ``padding_side="left"`` and a pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM

    src = str(path_or_hub_id)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    # the tokenizer comes from the same repository revision, and may need the same remote code, as the model
    tokenizer = load_tokenizer(src, **{k: v for k, v in model_kwargs.items() if k in ("revision", "trust_remote_code")})
    kwargs = dict(model_kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def make_tiny_policy(
    path: str | os.PathLike[str],
    texts: Iterable[str] | None = None,
    seed: int = 0,
    extra_tokens: Sequence[str] = (),
    **model_kwargs: Any,
):
    """Build a word tokenizer on ``texts`` and a tiny Qwen2 on it, save both to ``path`` and
    return ``(model, tokenizer)``.

    ``texts=None`` uses the text of a small synthetic demo dataset
    (:func:`grpo_sim.data.synthetic.build_demo_dataset` with 16 train / 8 eval sets, seed 0).
    ``model_kwargs`` go to :func:`build_tiny_qwen2`.
    """
    if texts is None:
        from ..data.synthetic import build_demo_dataset, demo_text_corpus

        train, eval_, corpus = build_demo_dataset(16, 8, seed=0)
        texts = demo_text_corpus(train + eval_, corpus)
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
    "load_policy",
    "load_tokenizer",
    "make_tiny_policy",
    "prepare_tokenizer",
    "save_tiny_policy",
    "word_vocab",
]
