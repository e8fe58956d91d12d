"""Paraphrase-set data: schema and JSONL I/O, BM25 retrieval, the synthetic demo dataset."""

from .schema import (
    PROMPT_TEMPLATES,
    DataError,
    Paraphrase,
    ParaphraseSet,
    Passage,
    build_rag_prompt,
    format_passages,
    read_psets,
    to_training_rows,
    write_psets,
)
from .retrieval import BM25Retriever, jaccard, retriever_consistency
from .synthetic import build_demo_dataset, demo_text_corpus, gold_ranks

__all__ = [
    "PROMPT_TEMPLATES",
    "DataError",
    "Paraphrase",
    "ParaphraseSet",
    "Passage",
    "build_rag_prompt",
    "format_passages",
    "read_psets",
    "to_training_rows",
    "write_psets",
    "BM25Retriever",
    "jaccard",
    "retriever_consistency",
    "build_demo_dataset",
    "demo_text_corpus",
    "gold_ranks",
]
