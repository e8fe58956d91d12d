"""grpo-sim: GRPO fine-tuning with similarity rewards (PS-GRPO / Con-RAG) on Hugging Face TRL."""

import warnings as _warnings

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
