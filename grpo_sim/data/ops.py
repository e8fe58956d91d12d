"""Operations on paraphrase-set files: merge, filter, and the trainer's own checks over a whole file.

``grpo-sim data merge`` joins files whose set ids may collide (TriviaQA's web and wikipedia
splits share question ids), ``grpo-sim data filter`` drops short sets and equalises paraphrase
counts, and ``grpo-sim data validate --for-training`` lists every set the trainer will reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from .schema import DataError, ParaphraseSet

OnDuplicate = Literal["error", "prefix", "keep-first"]
ON_DUPLICATE = ("error", "prefix", "keep-first")


def _ids(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" ... ({len(ids) - limit} more)" if len(ids) > limit else "")


@dataclass
class MergeReport:
    counts: list[tuple[str, int]] = field(default_factory=list)  # (file, sets read)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # set id -> files holding it, in order
    renamed: dict[str, list[str]] = field(default_factory=dict)  # set id -> its new ids (prefix)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (set id, file) left out (keep-first)

    def lines(self) -> list[str]:
        lines = [f"  {name}: {n} sets" for name, n in self.counts]
        if not self.duplicates:
            return lines + ["  duplicate set ids: none"]
        lines.append(f"  duplicate set ids: {len(self.duplicates)} ({_ids(sorted(self.duplicates))})")
        for sid, new in sorted(self.renamed.items())[:20]:
            lines.append(f"    renamed {sid} -> {', '.join(new)}")
        if len(self.renamed) > 20:
            lines.append(f"    ... {len(self.renamed) - 20} more renamed")
        if self.dropped:
            lines.append(
                f"  dropped {len(self.dropped)} later copies (keep-first): "
                + _ids([f"{sid} from {name}" for sid, name in self.dropped])
            )
        return lines


def _prefix(name: str) -> str:
    """The file name without its data extensions: ``web-dev.psets.jsonl.gz`` -> ``web-dev.psets``."""
    stem = Path(name).name
    for ext in (".gz", ".jsonl", ".json"):
        stem = stem.removesuffix(ext)
    return stem


def merge_sets(
    sources: Sequence[tuple[str, Sequence[ParaphraseSet]]], on_duplicate: OnDuplicate = "error"
) -> tuple[list[ParaphraseSet], MergeReport]:
    """Concatenate the sets of several files, in order, resolving set ids that occur in more than one file.

    ``error``: refuse, naming the ids and files. ``prefix``: every copy of a shared id becomes
    ``<file name without .jsonl>:<id>``
    (the original id goes to ``metadata.merged_from``). ``keep-first``: the first file's set is kept, later ones
    are dropped.
    """
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"--on-duplicate {on_duplicate!r}: use one of {', '.join(ON_DUPLICATE)}")
    report = MergeReport(counts=[(name, len(sets)) for name, sets in sources])
    holders: dict[str, list[str]] = {}
    for name, sets in sources:
        for s in sets:
            holders.setdefault(s.set_id, []).append(name)
    report.duplicates = {sid: names for sid, names in holders.items() if len(names) > 1}
    if report.duplicates and on_duplicate == "error":
        detail = "; ".join(f"{sid} in {', '.join(names)}" for sid, names in list(report.duplicates.items())[:10])
        raise DataError(
            f"{len(report.duplicates)} set id(s) occur in more than one file ({detail}"
            f"{' ...' if len(report.duplicates) > 10 else ''}): choose --on-duplicate prefix (rename every "
            "copy to FILENAME:ID) or --on-duplicate keep-first (keep the first file's set)"
        )
    merged: list[ParaphraseSet] = []
    seen: set[str] = set()
    for name, sets in sources:
        for s in sets:
            if s.set_id in report.duplicates:
                if on_duplicate == "keep-first":
                    if s.set_id in seen:
                        report.dropped.append((s.set_id, name))
                        continue
                else:
                    new_id = f"{_prefix(name)}:{s.set_id}"
                    report.renamed.setdefault(s.set_id, []).append(new_id)
                    s = s.model_copy(
                        update={
                            "set_id": new_id,
                            "metadata": {**s.metadata, "merged_from": {"file": name, "set_id": s.set_id}},
                        }
                    )
            if s.set_id in seen:
                raise DataError(
                    f"set id {s.set_id!r} ({name}) collides with another set after renaming: give the "
                    "files different names or use --on-duplicate keep-first"
                )
            seen.add(s.set_id)
            merged.append(s)
    return merged, report


@dataclass
class FilterReport:
    sets_in: int = 0
    dropped_short: list[tuple[str, int]] = field(default_factory=list)  # (set id, paraphrases) below the minimum
    truncated: int = 0  # sets cut down to paraphrases_per_set
    paraphrases_removed: int = 0  # by truncation

    def lines(self, minimum: int | None, keep: int | None) -> list[str]:
        kept = self.sets_in - len(self.dropped_short)
        lines = [f"  sets: {self.sets_in} in, {kept} kept"]
        if minimum is not None:
            by_count: dict[int, list[str]] = {}
            for sid, n in self.dropped_short:
                by_count.setdefault(n, []).append(sid)
            lines.append(
                f"  dropped {len(self.dropped_short)} set(s) with fewer than {minimum} paraphrases"
                + "".join(f"\n    {len(ids)} with {n}: {_ids(ids)}" for n, ids in sorted(by_count.items()))
            )
        if keep is not None:
            lines.append(
                f"  truncated {self.truncated} set(s) to their first {keep} paraphrases "
                f"({self.paraphrases_removed} paraphrases removed)"
            )
        return lines


def sets_shorter_than(sets: Sequence[ParaphraseSet], n: int) -> list[ParaphraseSet]:
    return [s for s in sets if len(s.paraphrases) < n]


def keep_first_paraphrases(sets: Sequence[ParaphraseSet], n: int) -> list[ParaphraseSet]:
    """Every set with only its first ``n`` paraphrases, in file order (what ``data.paraphrases_per_set`` does)."""
    return [s.model_copy(update={"paraphrases": s.paraphrases[:n]}) for s in sets]


def filter_sets(
    sets: Sequence[ParaphraseSet], min_paraphrases: int | None = None, paraphrases_per_set: int | None = None
) -> tuple[list[ParaphraseSet], FilterReport]:
    """Drop sets with fewer than ``min_paraphrases`` (default: ``paraphrases_per_set``) paraphrases, then keep the
    first ``paraphrases_per_set`` of every remaining set (equal counts, as the trainer needs)."""
    if min_paraphrases is None and paraphrases_per_set is None:
        raise ValueError("say what to filter: --min-paraphrases N and/or --paraphrases-per-set N")
    minimum = max(min_paraphrases or 0, paraphrases_per_set or 0)
    report = FilterReport(sets_in=len(sets))
    short = {id(s) for s in sets_shorter_than(sets, minimum)}
    report.dropped_short = [(s.set_id, len(s.paraphrases)) for s in sets if id(s) in short]
    kept = [s for s in sets if id(s) not in short]
    if paraphrases_per_set is not None:
        report.truncated = sum(len(s.paraphrases) > paraphrases_per_set for s in kept)
        report.paraphrases_removed = sum(max(0, len(s.paraphrases) - paraphrases_per_set) for s in kept)
        kept = keep_first_paraphrases(kept, paraphrases_per_set)
    return kept, report


def training_problems(
    sets: Sequence[ParaphraseSet], paraphrases_per_set: int | None = None, what: str = "data"
) -> list[str]:
    """Every reason the trainer rejects these sets as ``data.train``: sets shorter than ``paraphrases_per_set``,
    then the set layout checks of :func:`grpo_sim.sampler.set_layout_problems` on what the trainer keeps."""
    from ..sampler import set_layout_problems  # torch: only when asked

    problems: list[str] = []
    if paraphrases_per_set is not None:
        short = sets_shorter_than(sets, paraphrases_per_set)
        if short:
            problems.append(
                f"{len(short)} set(s) have fewer than data.paraphrases_per_set={paraphrases_per_set} "
                f"paraphrases: {', '.join(repr(s.set_id) for s in short)}"
            )
        sets = keep_first_paraphrases(
            [s for s in sets if len(s.paraphrases) >= paraphrases_per_set], paraphrases_per_set
        )
    if sets:
        rows = [(s.set_id, p.paraphrase_id) for s in sets for p in s.paraphrases]
        problems += set_layout_problems([r[0] for r in rows], [r[1] for r in rows], what)
    elif not problems:
        problems.append(f"{what} is empty: it needs at least one paraphrase set")
    return problems


__all__ = [
    "FilterReport",
    "MergeReport",
    "ON_DUPLICATE",
    "filter_sets",
    "keep_first_paraphrases",
    "merge_sets",
    "sets_shorter_than",
    "training_problems",
]


# ------------------------------------------------------------------------------------------
# Ordinary (prompt, reference) rows from sets; train/eval splits
# ------------------------------------------------------------------------------------------


def prompt_rows_from_sets(
    sets: Sequence[ParaphraseSet], template: str | None = None, all_wordings: bool = False
) -> list[dict]:
    """Ordinary rows ``{id, question, answers}`` from paraphrase sets (``grpo-sim data prompts``, ``data import
    --format prompts``): one row per set from its first wording (the original question), or one per wording with
    ``all_wordings`` (ids ``SET#PARAPHRASE``, ``set_id`` kept so that ``data split`` keeps a set's rows together).
    With ``template`` (a prompt template name or format string) each row also gets ``prompt``: the wording with its
    passages in that template, the text a recipe then trains on unchanged."""
    from .schema import build_rag_prompt, check_prompt_template

    if template is not None:
        check_prompt_template(template)
    rows = []
    for s in sets:
        wordings = s.paraphrases if all_wordings else s.paraphrases[:1]
        for p in wordings:
            row: dict = {"id": f"{s.set_id}#{p.paraphrase_id}" if all_wordings else s.set_id}
            if all_wordings:
                row["set_id"] = s.set_id
            row["question"] = p.question
            if template is not None:
                row["prompt"] = build_rag_prompt(p.question, p.passages, template=template)
            row["answers"] = list(s.answers)
            rows.append(row)
    return rows


def split_groups(keys: Sequence[str], eval_size: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the train and eval parts of items whose group is ``keys[i]`` (a set id, or a row's own id): the
    groups are shuffled with ``random.Random(seed)`` and the first ones go to eval, so a group is never split.

    ``eval_size`` below 1 is a fraction of the groups (rounded, at least 1), from 1 on a count of groups. Both
    parts keep the input order. ValueError when either part would be empty."""
    import random

    groups = list(dict.fromkeys(keys))
    if eval_size <= 0:
        raise ValueError(f"the eval part must be a fraction in (0, 1) or a count >= 1, got {eval_size:g}")
    if eval_size < 1:
        n_eval = max(1, round(eval_size * len(groups)))
    elif float(eval_size).is_integer():
        n_eval = int(eval_size)
    else:
        raise ValueError(f"the eval part must be a fraction in (0, 1) or a whole count, got {eval_size:g}")
    if n_eval >= len(groups):
        raise ValueError(
            f"the eval part takes {n_eval} of {len(groups)} groups, leaving nothing to train on; ask for fewer"
        )
    order = groups[:]
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    train = [i for i, k in enumerate(keys) if k not in held_out]
    evaluation = [i for i, k in enumerate(keys) if k in held_out]
    return train, evaluation
