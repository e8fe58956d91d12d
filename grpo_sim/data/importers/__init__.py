"""Importers from the native release formats of TriviaQA, HotpotQA, 2WikiMultiHopQA, MuSiQue and
ELI5 into paraphrase sets (:class:`~grpo_sim.data.schema.ParaphraseSet`).

Every importer returns one set per question with **one paraphrase**: the original question
(``paraphrase_id`` 0, no passages yet; ``grpo-sim data paraphrase`` adds wordings and
``grpo-sim data retrieve`` adds passages per wording). ``set_id`` is the dataset's own question
id. What the importers take from each format:

===============  ==========================  ==========================================  ==============================
dataset          question                    answers (gold, several allowed)             ``metadata["passages"]``
===============  ==========================  ==========================================  ==============================
TriviaQA         ``Question``                ``Answer.Value`` then ``Answer.Aliases``    evidence documents cut into
                                             (original casing, case-insensitive          100-word passages, only when
                                             de-duplication). ``NormalizedAliases`` are  ``evidence_dir`` is given (HF
                                             lower-cased copies of the aliases (the      ``rc`` rows carry the text);
                                             scorer normalises anyway), kept in          the document references are
                                             metadata; test rows have no answers.        always kept
HotpotQA         ``question``                ``[answer]`` (yes/no included); test rows   the 10 (distractor) or gold
                                             have none                                   (fullwiki dev: none) context
                                                                                         paragraphs
2WikiMultiHopQA  ``question``                ``[answer]`` + aliases of ``answer_id``     the context paragraphs
                                             from ``id_aliases.json`` (given, or found
                                             next to the data file)
MuSiQue          ``question``                ``[answer] + answer_aliases``               the 20 paragraphs
ELI5             ``title`` (``selftext`` in  the ``max_answers`` (3) highest-scored      none (ELI5 has no passages;
                 metadata); KILT: ``input``  answer texts, best first; ``[deleted]``/    KILT provenance is kept as
                                             ``[removed]`` and empty answers skipped     references)
===============  ==========================  ==========================================  ==============================

Passages have content-addressed ids ``<dataset>:<sha1(title, text)[:16]>`` (TriviaQA:
``triviaqa:<file>#<chunk>``), so the same paragraph shared by many questions is one corpus
entry; :func:`export_corpus` writes them as a corpus JSONL for ``grpo-sim data retrieve``.
``metadata["supporting_passage_ids"]`` lists the ids of the supporting paragraphs where the
format marks them. Other ``metadata`` keys: ``source`` (dataset), ``source_id``, ``split``
(when known) and dataset-specific fields (question type, decomposition, scores, ...).

Local files may be JSON (a list, or TriviaQA's ``{"Data": [...]}``), JSONL, or either one
gzipped (``.gz``). :func:`import_dataset` also takes a Hugging Face hub name, loaded with
``datasets.load_dataset`` (rows in the hub's column layout, e.g. HotpotQA's
``context = {"title": [...], "sentences": [...]}``, are understood as well).

Malformed rows are all collected and reported in one :class:`~grpo_sim.data.schema.DataError`
that names the file, the 1-based row (list position, or line for JSONL) and the field.

What an import silently could not do is said out loud: every importer takes ``notes=`` (a list the
messages are appended to; without it they go to the ``grpo_sim.data.importers`` logger as warnings)
and reports questions left without passages (TriviaQA without ``evidence_dir``, or documents missing
from it; ELI5 always) naming the option that fills them, and 2WikiMultiHopQA answer aliases that
were not added (no ``id_aliases.json``, or an ``answer_id`` it does not list), with counts.
:func:`export_corpus` refuses to write an empty corpus (:func:`missing_passages_message` says why).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..schema import DataError, ParaphraseSet, Passage, _format_problems, write_corpus
from .common import (
    Problem,
    _convert_rows,
    _tell,
    missing_passages_message,
)
from .eli5 import _eli5_converter, import_eli5
from .multihop import (
    _2wiki_alias_notes,
    _2wiki_converter,
    _hotpot_converter,
    _load_2wiki_aliases,
    import_2wikimultihopqa,
    import_hotpotqa,
)
from .musique import _musique_converter, import_musique
from .triviaqa import TRIVIAQA_CHUNK_WORDS, _triviaqa_converter, import_triviaqa

__all__ = [
    "DATASETS",
    "HF_DEFAULTS",
    "import_dataset",
    "import_triviaqa",
    "import_hotpotqa",
    "import_2wikimultihopqa",
    "import_musique",
    "import_eli5",
    "export_corpus",
    "corpus_from_sets",
    "dedupe_answers",
    "missing_passages_message",
]

_ALIASES = {
    "triviaqa": "triviaqa",
    "trivia_qa": "triviaqa",
    "trivia-qa": "triviaqa",
    "hotpotqa": "hotpotqa",
    "hotpot_qa": "hotpotqa",
    "hotpot": "hotpotqa",
    "2wikimultihopqa": "2wikimultihopqa",
    "2wiki": "2wikimultihopqa",
    "2wikimqa": "2wikimultihopqa",
    "2wikimultihop": "2wikimultihopqa",
    "musique": "musique",
    "eli5": "eli5",
    "eli5_category": "eli5",
    "eli5-category": "eli5",
    "kilt_eli5": "eli5",
}

DATASETS = ("triviaqa", "hotpotqa", "2wikimultihopqa", "musique", "eli5")

# Suggested hub ids and configs (user-supplied names win; these are only defaults for the short
# names and the configs of well-known hub datasets).
HF_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext"),
    "hotpotqa": ("hotpotqa/hotpot_qa", "distractor"),
    "2wikimultihopqa": ("framolfese/2WikiMultihopQA", None),
    "musique": ("dgslibisey/MuSiQue", None),
    "eli5": ("rexarski/eli5_category", None),
}
_HF_CONFIGS = {
    "trivia_qa": "rc.nocontext",
    "mandarjoshi/trivia_qa": "rc.nocontext",
    "hotpot_qa": "distractor",
    "hotpotqa/hotpot_qa": "distractor",
    "kilt_tasks": "eli5",
    "facebook/kilt_tasks": "eli5",
}

_IMPORTERS: dict[str, Callable[..., list[ParaphraseSet]]] = {
    "triviaqa": import_triviaqa,
    "hotpotqa": import_hotpotqa,
    "2wikimultihopqa": import_2wikimultihopqa,
    "musique": import_musique,
    "eli5": import_eli5,
}


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    if key not in _ALIASES:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return _ALIASES[key]


def _looks_like_path(s: str) -> bool:
    return (
        (os.sep in s and not re.fullmatch(r"[\w.-]+/[\w.-]+", s))
        or s.startswith((".", "~"))
        or bool(re.search(r"\.(json|jsonl|gz)$", s))
    )


def _hub_converter(
    name: str, split: str | None, kwargs: dict[str, Any]
) -> Callable[[dict[str, Any]], ParaphraseSet | None]:
    if name == "triviaqa":
        return _triviaqa_converter(
            None, split, kwargs.get("chunk_words", TRIVIAQA_CHUNK_WORDS), kwargs.get("max_chunks_per_doc")
        )
    if name == "hotpotqa":
        return _hotpot_converter(split)
    if name == "2wikimultihopqa":
        aliases = _load_2wiki_aliases(Path(kwargs["aliases_path"])) if kwargs.get("aliases_path") else {}
        return _2wiki_converter(split, aliases)
    if name == "musique":
        return _musique_converter(split, kwargs.get("answerable_only", False))
    return _eli5_converter(split, kwargs.get("max_answers", 3), kwargs.get("min_score"))


def import_from_hub(
    name: str,
    hf_name: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    hf_config: str | None = None,
    **kwargs: Any,
) -> list[ParaphraseSet]:
    """Load a dataset with ``datasets.load_dataset(hf_name, hf_config, split=split)`` (needs hub
    access) and convert its rows with the same rules as the local importer of ``name``."""
    import datasets

    name = canonical_name(name)
    if hf_name is None:
        hf_name, default_cfg = HF_DEFAULTS[name]
        hf_config = hf_config or default_cfg
    hf_config = hf_config or _HF_CONFIGS.get(hf_name)
    split = split or "train"
    try:
        ds = datasets.load_dataset(hf_name, hf_config, split=split, streaming=limit is not None)
    except Exception as e:  # noqa: BLE001 - hub/network errors become a clear message
        raise DataError(
            f"could not load {hf_name!r} (config {hf_config!r}, split {split!r}) from the Hugging Face "
            f"hub: {type(e).__name__}: {e}. "
            "Give a local file instead, or check the name/config/split"
        ) from e
    rows = ((i, dict(r)) for i, r in enumerate(ds, start=1))
    notes = kwargs.pop("notes", None)
    sets = _convert_rows(rows, _hub_converter(name, split, kwargs), f"hf:{hf_name}[{split}]", "row", limit)
    for s in sets:
        s.metadata.setdefault("hf_dataset", hf_name)
    if name == "2wikimultihopqa":
        aliases = _load_2wiki_aliases(Path(kwargs["aliases_path"])) if kwargs.get("aliases_path") else None
        _2wiki_alias_notes(sets, aliases, kwargs.get("aliases_path"), None, notes)
    elif sets and missing_passages_message(sets):
        _tell(notes, missing_passages_message(sets) or "")
    return sets


def import_dataset(
    name: str,
    path_or_hf_name: str | os.PathLike[str],
    split: str | None = None,
    limit: int | None = None,
    **kwargs: Any,
) -> list[ParaphraseSet]:
    """Import ``name`` (triviaqa, hotpotqa, 2wikimultihopqa, musique, eli5; common spellings
    accepted) from a local file in its native format, or from the Hugging Face hub when
    ``path_or_hf_name`` is not an existing path (``hf_config=`` picks a config). Extra keyword
    arguments go to the dataset's importer (e.g. ``evidence_dir`` for TriviaQA)."""
    cname = canonical_name(name)
    p = Path(os.path.expanduser(str(path_or_hf_name)))
    hf_config = kwargs.pop("hf_config", None)
    if p.exists():
        return _IMPORTERS[cname](p, limit=limit, split=split, **kwargs)
    if isinstance(path_or_hf_name, os.PathLike) or _looks_like_path(str(path_or_hf_name)):
        raise DataError(f"{p}: file not found (give the {cname} data file, or a Hugging Face dataset name)")
    return import_from_hub(cname, str(path_or_hf_name), split=split, limit=limit, hf_config=hf_config, **kwargs)


def corpus_from_sets(sets: Iterable[ParaphraseSet]) -> list[Passage]:
    """The dataset-provided passages of ``sets`` (``metadata["passages"]``), first occurrence of
    each id kept, in order."""
    out: list[Passage] = []
    seen: set[str] = set()
    problems: list[Problem] = []
    for s in sets:
        items = s.metadata.get("passages") or []
        if not isinstance(items, list):
            problems.append((None, f"{s.set_id}.metadata.passages", "expected a list of passages"))
            continue
        for i, p in enumerate(items):
            try:
                passage = p if isinstance(p, Passage) else Passage.model_validate(p)
            except Exception as e:  # noqa: BLE001
                problems.append((None, f"{s.set_id}.metadata.passages[{i}]", str(e).splitlines()[0]))
                continue
            if passage.id not in seen:
                seen.add(passage.id)
                out.append(passage)
    if problems:
        raise DataError(_format_problems("<paraphrase sets>", problems), problems)
    return out


def snippet_corpus(sets: Iterable[ParaphraseSet]) -> list[Passage]:
    """TriviaQA without its evidence folder: the search results' snippets (``Description``, kept in
    ``metadata["evidence"]``) as passages ``triviaqa:<filename>#snippet`` titled with the result's title, first
    occurrence of each id kept, in order. Entity pages carry no snippet."""
    out: list[Passage] = []
    seen: set[str] = set()
    for s in sets:
        for i, ref in enumerate(s.metadata.get("evidence") or []):
            text = ref.get("description") if isinstance(ref, dict) else None
            if not isinstance(text, str) or not text.strip():
                continue
            name = ref.get("filename") or f"{s.set_id}-{ref.get('kind', 'web')}-{i}"
            pid = f"triviaqa:{name}#snippet"
            if pid not in seen:
                seen.add(pid)
                out.append(Passage(id=pid, title=str(ref.get("title") or ""), text=text.strip()))
    return out


def export_corpus(sets: Iterable[ParaphraseSet], path: str | os.PathLike[str], notes: list[str] | None = None) -> int:
    """Write the dataset-provided passages of ``sets`` as a corpus JSONL (atomic); returns the count.

    TriviaQA imported without ``--evidence-dir`` has no passages, but its rows carry the search results' snippets:
    the corpus is then made of those (:func:`snippet_corpus`), and ``notes`` says so. No passages at all is a
    :class:`DataError` (nothing is written): an empty corpus would only fail later, in retrieval; the message names
    the option that fills it (:func:`missing_passages_message`)."""
    sets = list(sets)
    passages = corpus_from_sets(sets)
    if not passages and {s.metadata.get("source") for s in sets} == {"triviaqa"}:
        passages = snippet_corpus(sets)
        if passages and notes is not None:
            notes.append(
                f"the corpus is made of the {len(passages)} search-result snippets (Description) of the rows: no "
                "document texts without --evidence-dir; give the release's evidence/ folder for whole documents"
            )
    if not passages:
        raise DataError(
            f"{path}: not written, the corpus would be empty: "
            f"{missing_passages_message(sets) or 'no set has metadata.passages'}"
        )
    write_corpus(path, passages)
    return len(passages)


def iter_dataset_names() -> Iterator[str]:
    yield from DATASETS
