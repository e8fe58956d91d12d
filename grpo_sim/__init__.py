"""grpo-sim: GRPO fine-tuning with similarity rewards (PS-GRPO / Con-RAG) on Hugging Face TRL.

``from grpo_sim import PSGRPOTrainer, PSGRPOConfig`` (drop-ins for ``trl.GRPOTrainer`` / ``trl.GRPOConfig``); they
are imported on first use, so ``import grpo_sim`` (and the command line) does not load TRL.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["PSGRPOConfig", "PSGRPOTrainer", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("PSGRPOConfig", "PSGRPOTrainer"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'grpo_sim' has no attribute {name!r}")
