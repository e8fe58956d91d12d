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


__all__ = [
    "MAX_CHECKED_TEXTS",
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
