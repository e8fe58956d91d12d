"""Paraphrase-set data: schema and JSONL/HF I/O, BM25 and dense retrieval, importers of QA
datasets, paraphrase generation and the retrieval pipeline (the demo's synthetic world is
:mod:`grpo_sim.demo.world`).

The CLI (``grpo-sim data ...``) lives in :mod:`grpo_sim.data.cli`; the format is described in
``docs/data-format.md``."""

from .dense import DenseRetriever
from .importers import export_corpus, import_dataset
from .paraphrase import ParaphraseCache, filter_paraphrases, paraphrase_sets, template_paraphrases
from .pipeline import load_or_build_retriever, retrieve_file, retrieve_for_sets
from .retrieval import BM25Retriever, jaccard, retriever_consistency
from .schema import (
    PROMPT_TEMPLATES,
    DataError,
    Paraphrase,
    ParaphraseSet,
    Passage,
    build_rag_prompt,
    corpus_hash,
    format_passages,
    load_psets,
    psets_from_hf,
    psets_to_hf,
    read_corpus,
    read_psets,
    to_training_rows,
    validate_file,
    write_corpus,
    write_psets,
)

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
    "corpus_hash",
    "load_psets",
    "psets_from_hf",
    "psets_to_hf",
    "read_corpus",
    "validate_file",
    "write_corpus",
    "export_corpus",
    "import_dataset",
    "ParaphraseCache",
    "filter_paraphrases",
    "paraphrase_sets",
    "template_paraphrases",
    "DenseRetriever",
    "load_or_build_retriever",
    "retrieve_file",
    "retrieve_for_sets",
]
