"""grpo-sim: GRPO fine-tuning with similarity rewards (PS-GRPO / Con-RAG) on Hugging Face TRL.

``from grpo_sim import PSGRPOTrainer, PSGRPOConfig`` (drop-ins for ``trl.GRPOTrainer`` / ``trl.GRPOConfig``); they
are imported on first use, so ``import grpo_sim`` (and the command line) does not load TRL.
"""

import warnings as _warnings
from typing import Any

__version__ = "0.1.0"

#: Library warnings a user cannot act on that repeat on every command, silenced here (the one place), each narrowly
#: by its category and message: (category, message regex, why).
QUIET_LIBRARY_WARNINGS = (
    (
        FutureWarning,
        r"`(is_)?gradient_checkpointing\w*` is deprecated and will be removed in v6",
        "transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL's configs and trainers still "
        "use the old names on every run, whatever the recipe says",
    ),
)

for _category, _message, _why in QUIET_LIBRARY_WARNINGS:
    _warnings.filterwarnings("ignore", message=_message, category=_category)

__all__ = ["PSGRPOConfig", "PSGRPOTrainer", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("PSGRPOConfig", "PSGRPOTrainer"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'grpo_sim' has no attribute {name!r}")
