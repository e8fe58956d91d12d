"""Start-up checks for a policy: can its tokenizer read the data; tied weights on resume.

A word-level tokenizer built on other text (``grpo-sim:demo-warmstart`` on real data: 68% of the
prompt tokens) maps most words to ``<unk>``: training then runs to the end on prompts the model
cannot read and nothing says so. Tokenizers without an unknown token (byte-level BPE, as most hub
models have) cover every text and always pass.
"""

from __future__ import annotations

import ast
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

logger = logging.getLogger(__name__)

#: at or above this share of unknown tokens the run is refused: the model cannot read its prompts
UNKNOWN_REFUSE_FRACTION = 0.2
#: at or above this share a loud warning is logged
UNKNOWN_WARN_FRACTION = 0.02
#: texts looked at (evenly spaced over the data): enough for a stable share, cheap on large files
MAX_CHECKED_TEXTS = 500


class TokenizerCoverageError(ValueError):
    """The tokenizer maps too much of the data to its unknown token."""


@dataclass
class TokenCoverage:
    """How many tokens of some texts a tokenizer maps to its unknown token, and which words those were."""

    tokens: int = 0
    unknown: int = 0
    texts: int = 0
    unknown_words: Counter = field(default_factory=Counter)

    @property
    def unknown_fraction(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    def examples(self, k: int = 8) -> str:
        return ", ".join(repr(w) for w, _ in self.unknown_words.most_common(k))


def _evenly_spaced(texts: Sequence[str], limit: int) -> list[str]:
    if len(texts) <= limit:
        return list(texts)
    step = len(texts) / limit
    return [texts[int(i * step)] for i in range(limit)]


def token_coverage(tokenizer, texts: Sequence[str], max_texts: int = MAX_CHECKED_TEXTS) -> TokenCoverage:
    """Unknown tokens of ``tokenizer`` over (at most ``max_texts`` evenly spaced of) ``texts``."""
    coverage = TokenCoverage()
    unk_id = getattr(tokenizer, "unk_token_id", None)
    for text in _evenly_spaced(texts, max_texts):
        coverage.texts += 1
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=unk_id is not None)
        ids = encoded["input_ids"]
        coverage.tokens += len(ids)
        if unk_id is None:
            continue
        for token_id, (start, end) in zip(ids, encoded["offset_mapping"]):
            if token_id == unk_id:
                coverage.unknown += 1
                coverage.unknown_words[text[start:end]] += 1
    return coverage


def check_tokenizer_coverage(tokenizer, texts: Sequence[str], what: str, model: str) -> TokenCoverage:
    """Refuse (TokenizerCoverageError) when ``UNKNOWN_REFUSE_FRACTION`` or more of the tokens of ``texts`` are
    unknown to ``tokenizer``; log a warning from ``UNKNOWN_WARN_FRACTION`` on. ``what`` names the texts (e.g.
    ``data.train (file)``), ``model`` the policy, both for the message."""
    coverage = token_coverage(tokenizer, texts)
    fraction = coverage.unknown_fraction
    if fraction < UNKNOWN_WARN_FRACTION:
        return coverage
    detail = (
        f"the tokenizer of {model} maps {fraction:.1%} of the tokens of {what} to "
        f"{tokenizer.unk_token!r} ({coverage.unknown} of {coverage.tokens} tokens in {coverage.texts} prompts; "
        f"e.g. {coverage.examples()})"
    )
    fix = (
        "Build a policy whose tokenizer is trained on your own text: grpo-sim model init --data TRAIN.jsonl "
        "--data EVAL.jsonl --corpus CORPUS.jsonl --out DIR, then model.name_or_path: DIR (docs/own-data.md); or use "
        "a model with a byte-level tokenizer (any hub LLM)"
    )
    if fraction >= UNKNOWN_REFUSE_FRACTION:
        raise TokenizerCoverageError(f"{detail}: the model cannot read these prompts. {fix}.")
    logger.warning("%s. Words outside the vocabulary are invisible to the model. %s.", detail, fix)
    return coverage


class TiedWeightsResumeFilter(logging.Filter):
    """Drops transformers' "There were missing keys in the checkpoint model loaded: ['lm_head.weight']" on resume
    when the missing keys are the model's tied weights: a tied output layer is the input embedding matrix, is not
    stored in checkpoints, and comes back with the embeddings, so nothing is missing."""

    PREFIX = "There were missing keys in the checkpoint model loaded: "

    def __init__(self, tied_keys: set[str]):
        super().__init__()
        self.tied_keys = tied_keys

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        try:
            missing = ast.literal_eval(message[len(self.PREFIX) :].rstrip("."))
        except (ValueError, SyntaxError):
            return True
        if not missing or not all(any(k == t or k.endswith("." + t) for t in self.tied_keys) for k in missing):
            return True
        logger.info(
            "resume: %s tied to the input embeddings (not stored separately; restored with them)", ", ".join(missing)
        )
        return False


def tied_weight_keys(model) -> set[str]:
    """Names of the parameters ``model`` ties to others (``lm_head.weight`` with tied word embeddings)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if not getattr(config, "tie_word_embeddings", False):
        return set()
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied)


def quiet_tied_weights_on_resume(model) -> None:
    """Install :class:`TiedWeightsResumeFilter` on transformers' trainer logger (once) for ``model``'s tied keys."""
    tied = tied_weight_keys(model)
    if not tied:
        return
    trainer_logger = logging.getLogger("transformers.trainer")
    for existing in trainer_logger.filters:
        if isinstance(existing, TiedWeightsResumeFilter):
            existing.tied_keys |= tied
            return
    trainer_logger.addFilter(TiedWeightsResumeFilter(tied))


def policy_start_checks(model, tokenizer, prompts: Sequence[str], what: str, model_name: str) -> TokenCoverage:
    """What a run does right after loading its policy: refuse or warn on unknown tokens in ``prompts``
    (:func:`check_tokenizer_coverage`) and quiet the tied-weights message of a resume."""
    coverage = check_tokenizer_coverage(tokenizer, prompts, what, model_name)
    quiet_tied_weights_on_resume(model)
    return coverage


def hub_offline() -> bool:
    """Whether Hugging Face downloads are off (``HF_HUB_OFFLINE``): hub ids then load from the local cache only."""
    import os

    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(getattr(constants, "HF_HUB_OFFLINE", False))


#: the file that makes a directory a loadable model (a full model, or a PEFT adapter on a base model)
MODEL_FILES = ("config.json", "adapter_config.json")


def model_location_problem(
    name_or_path: str, revision: str | None = None, key: str = "model.name_or_path"
) -> str | None:
    """Why ``name_or_path`` cannot be loaded, seen without loading anything, or None.

    A local directory must exist and hold a ``config.json`` (or a PEFT ``adapter_config.json``); anything that is
    not a local path must be a well-formed hub id, and with ``HF_HUB_OFFLINE`` set it must be in the local Hugging
    Face cache (nothing can be downloaded). Without ``HF_HUB_OFFLINE`` a hub id is not checked (that needs the hub).
    """
    from pathlib import Path

    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith(("/", "./", "../", "~", ".\\")) or name_or_path in (".", "..")
    if path.exists():
        if not path.is_dir():
            return f"{key}: {name_or_path} is a file; give the model's directory (the one with config.json)"
        if not any((path / name).is_file() for name in MODEL_FILES):
            return (
                f"{key}: {name_or_path} has no config.json: not a saved model directory (give the directory "
                "save_pretrained wrote, e.g. a run's final/ or grpo-sim model init's --out)"
            )
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    where = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
    try:
        if looks_local:
            raise HFValidationError("a local path")
        validate_repo_id(name_or_path)
    except HFValidationError:
        return f"{key}: {name_or_path} does not exist{where}: no such directory (hub ids look like org/name)"
    if not hub_offline():
        return None
    from huggingface_hub import try_to_load_from_cache

    for name in MODEL_FILES:
        try:
            if isinstance(try_to_load_from_cache(name_or_path, name, revision=revision), str):
                return None
        except ValueError:  # a malformed revision
            break
    return (
        f"{key}: {name_or_path} is not a local directory{where}, and HF_HUB_OFFLINE is set while the hub id is not "
        "in the local Hugging Face cache" + (f" at revision {revision!r}" if revision else "") + ": give a local "
        "model directory, or download it first (unset HF_HUB_OFFLINE, or huggingface-cli download "
        f"{name_or_path})"
    )


__all__ = [
    "MAX_CHECKED_TEXTS",
    "MODEL_FILES",
    "hub_offline",
    "model_location_problem",
    "TokenCoverage",
    "TokenizerCoverageError",
    "UNKNOWN_REFUSE_FRACTION",
    "UNKNOWN_WARN_FRACTION",
    "TiedWeightsResumeFilter",
    "check_tokenizer_coverage",
    "policy_start_checks",
    "quiet_tied_weights_on_resume",
    "token_coverage",
]
