"""Loading a policy for training or evaluation: a saved tiny policy, a local directory or a hub id.

``load_policy`` is the one loader used everywhere (runner, evaluator, demo): it takes a local directory written by
:func:`grpo_sim.models.tiny.save_tiny_policy` or any hub id / directory of a real causal LM
(e.g. ``Qwen/Qwen2.5-0.5B-Instruct``) and makes the tokenizer ready for GRPO (left padding, a pad token).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..validation import dtype_name

__all__ = ["load_policy", "load_tokenizer", "prepare_tokenizer"]


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
    if isinstance(dtype, str):
        dtype = dtype_name(dtype)  # bf16, fp16, fp32 and the torch names alike
        dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    # the tokenizer comes from the same repository revision, and may need the same remote code, as the model
    tokenizer = load_tokenizer(src, **{k: v for k, v in model_kwargs.items() if k in ("revision", "trust_remote_code")})
    kwargs = dict(model_kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer
