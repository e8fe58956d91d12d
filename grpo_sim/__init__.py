"""grpo-sim: GRPO fine-tuning with similarity rewards (PS-GRPO / Con-RAG) on Hugging Face TRL."""

__version__ = "0.1.0"
