"""Paraphrase-set layout checks and the set-preserving sampler.

TRL's ``RepeatSampler`` repeats each row ``num_generations`` times and chunks rows into generation
batches without knowing about sets, so a set can be split across two generation batches (and then
its cross-paraphrase reward is computed from a fragment). :class:`ParaphraseSetSampler` shuffles
whole sets and lays each one out contiguously: ``p1 x g, p2 x g, ..., pn x g``. One TRL group is
one paraphrase, which keeps vLLM server mode (``prompts[::num_generations]``) correct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler


class SetLayoutError(ValueError):
    """The data or the batch sizes cannot hold whole paraphrase sets; ``problems`` lists every one of them."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class SetLayout:
    """Where each paraphrase set lives in a dataset."""

    set_rows: tuple[tuple[int, ...], ...]  # dataset row indices of each set, in paraphrase order
    set_keys: tuple[Hashable, ...]
    paraphrases_per_set: int

    @property
    def num_sets(self) -> int:
        return len(self.set_rows)


def _group_rows(set_ids: Sequence[Hashable], paraphrase_ids: Sequence[Hashable], what: str) -> dict:
    if len(set_ids) != len(paraphrase_ids):
        raise SetLayoutError(f"{what}: {len(set_ids)} set ids but {len(paraphrase_ids)} paraphrase ids")
    groups: dict[Hashable, list[int]] = {}
    for row, sid in enumerate(set_ids):
        if sid is None:
            raise SetLayoutError(f"{what}: row {row} has no set_id")
        groups.setdefault(sid, []).append(row)
    if not groups:
        raise SetLayoutError(f"{what} is empty: it needs at least one paraphrase set")
    return groups


def set_layout_problems(
    set_ids: Sequence[Hashable], paraphrase_ids: Sequence[Hashable], what: str = "dataset"
) -> list[str]:
    """Every reason :func:`build_set_layout` rejects these rows: each set without paraphrase ids, with duplicate
    ids or with a single paraphrase, then (when every set is fine on its own) unequal set sizes, naming the sets
    outside the most common size. Raises SetLayoutError for rows that cannot be grouped at all."""
    groups = _group_rows(set_ids, paraphrase_ids, what)
    problems: list[str] = []
    for sid, rows in groups.items():
        pids = [paraphrase_ids[r] for r in rows]
        if any(p is None for p in pids):
            problems.append(f"set {sid!r}: a row has no paraphrase_id (rows {rows})")
            continue
        dup = sorted({str(p) for p in pids if pids.count(p) > 1})
        if dup:
            problems.append(f"set {sid!r}: duplicate paraphrase_id {', '.join(dup)} (rows {rows})")
        if len(rows) < 2:
            problems.append(
                f"set {sid!r} has a single paraphrase (row {rows[0]}): the consistency reward compares "
                "paraphrases, so every set needs at least 2 (drop it or add paraphrases)"
            )
    if problems:
        return problems
    by_size: dict[int, list[Hashable]] = {}
    for sid, rows in groups.items():
        by_size.setdefault(len(rows), []).append(sid)
    if len(by_size) > 1:
        detail = ", ".join(f"{len(ids)} sets with {n}" for n, ids in sorted(by_size.items()))
        problems.append(
            f"{what}: sets have different numbers of paraphrases ({detail}). Every generation batch holds a "
            f"fixed number of whole sets, so give every set the same number of paraphrases (e.g. keep the "
            f"first {min(by_size)} of each)."
        )
        common = max(by_size, key=lambda n: (len(by_size[n]), n))
        for n, ids in sorted(by_size.items()):
            if n != common:
                problems.append(
                    f"{len(ids)} set(s) with {n} paraphrases (most have {common}): " + ", ".join(repr(i) for i in ids)
                )
    return problems


def build_set_layout(
    set_ids: Sequence[Hashable], paraphrase_ids: Sequence[Hashable], what: str = "dataset"
) -> SetLayout:
    """Group dataset rows into paraphrase sets and check them.

    Every set needs at least two paraphrases, unique paraphrase ids, and all sets the same number
    of paraphrases (generation batches hold a fixed number of completions). The error shows the
    first 10 problems and carries all of them (``SetLayoutError.problems``).
    """
    problems = set_layout_problems(set_ids, paraphrase_ids, what)
    if problems and problems[0].startswith(f"{what}: sets have different numbers"):
        raise SetLayoutError(problems[0], problems)
    if problems:
        more = (
            f" (first 10 of {len(problems)} shown; grpo-sim data validate --for-training lists them all)"
            if len(problems) > 10
            else ""
        )
        raise SetLayoutError(f"{what} has bad paraphrase sets{more}:\n  - " + "\n  - ".join(problems[:10]), problems)
    groups = _group_rows(set_ids, paraphrase_ids, what)
    ordered = {sid: tuple(sorted(rows, key=lambda r: _sort_key(paraphrase_ids[r]))) for sid, rows in groups.items()}
    return SetLayout(tuple(ordered.values()), tuple(ordered), len(next(iter(ordered.values()))))


def _sort_key(value: Hashable) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def batch_size_hints(
    completions_per_set: int, per_device_batch_size: int, num_processes: int, steps_per_generation: int
) -> tuple[int, int]:
    """``(b, s)``: per_device_batch_size a multiple of ``b`` (steps_per_generation kept), or steps_per_generation
    a multiple of ``s`` (per_device_batch_size kept), makes a generation batch hold whole sets."""
    per_round = num_processes * steps_per_generation  # rows of one per-device batch, over processes and steps
    per_step = per_device_batch_size * num_processes  # rows of one step, over processes
    return (math.lcm(completions_per_set, per_round) // per_round, math.lcm(completions_per_set, per_step) // per_step)


def check_batch_fits_sets(
    paraphrases_per_set: int,
    num_generations: int,
    generation_batch_size: int,
    per_device_batch_size: int,
    num_processes: int,
    steps_per_generation: int,
    what: str = "generation_batch_size",
) -> int:
    """Return sets per generation batch, or explain (with numbers) how to fix the batch sizes."""
    per_set = paraphrases_per_set * num_generations
    if generation_batch_size % per_set == 0:
        return generation_batch_size // per_set
    unit = per_device_batch_size * num_processes * steps_per_generation
    lower = (generation_batch_size // per_set) * per_set
    upper = lower + per_set
    good_bs, good_steps = batch_size_hints(per_set, per_device_batch_size, num_processes, steps_per_generation)
    raise SetLayoutError(
        f"{what} = {generation_batch_size} completions (per_device_batch_size {per_device_batch_size} x "
        f"{num_processes} processes x steps_per_generation {steps_per_generation} = {unit}) is not a multiple of "
        f"one paraphrase set = {paraphrases_per_set} paraphrases x num_generations {num_generations} = {per_set} "
        f"completions, so sets would be split across generation batches. Nearest valid sizes: "
        f"{lower or per_set} or {upper}. For example set per_device_batch_size to a multiple of {good_bs} "
        f"(keeping steps_per_generation={steps_per_generation}), or steps_per_generation to a multiple of "
        f"{good_steps} (keeping per_device_batch_size={per_device_batch_size})."
    )


def position_shuffle(generator: torch.Generator, seed: int, size: int, epoch: int) -> None:
    """Put a sampler's shuffle generator where pass ``epoch`` (0-based) over the data begins.

    The samplers draw one ``randperm(size)`` per pass from a generator seeded once, so pass ``epoch`` of a run
    sees the ``epoch + 1``-th permutation. A run resumed in a later epoch builds a fresh sampler, whose first
    pass would repeat epoch 0's order; reseeding and drawing the ``epoch`` earlier permutations again (cheap:
    ``size`` is the number of sets or rows) gives every pass the order the uninterrupted run gives it.
    """
    generator.manual_seed(seed)
    for _ in range(epoch):
        torch.randperm(size, generator=generator)


class ParaphraseSetSampler(Sampler[int]):
    """Yields dataset rows so that every generation batch holds whole paraphrase sets.

    Mirrors ``trl.trainer.utils.RepeatSampler`` (same generator handling, so runs resume the same
    way) with sets instead of rows as the unit that is shuffled and chunked::

        for each chunk of `sets_per_batch` shuffled sets (incomplete last chunk dropped):
            repeat `repeat_count` times:
                for set in chunk: for row in set (paraphrase order): yield row `mini_repeat_count` times
    """

    def __init__(
        self,
        layout: SetLayout,
        mini_repeat_count: int,
        sets_per_batch: int = 1,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
    ):
        if sets_per_batch < 1 or mini_repeat_count < 1 or repeat_count < 1:
            raise ValueError("sets_per_batch, mini_repeat_count and repeat_count must be >= 1")
        self.layout = layout
        self.mini_repeat_count = mini_repeat_count
        self.sets_per_batch = sets_per_batch
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.seed = seed
        if shuffle:
            self.generator = torch.Generator()
            if seed is not None:
                self.generator.manual_seed(seed)

    def __iter__(self) -> Iterator[int]:
        num_sets = self.layout.num_sets
        if self.shuffle:
            order = torch.randperm(num_sets, generator=self.generator).tolist()
        else:
            order = list(range(num_sets))
        chunks = [order[i : i + self.sets_per_batch] for i in range(0, num_sets, self.sets_per_batch)]
        for chunk in chunks:
            if len(chunk) < self.sets_per_batch:
                continue
            for _ in range(self.repeat_count):
                for set_index in chunk:
                    for row in self.layout.set_rows[set_index]:
                        for _ in range(self.mini_repeat_count):
                            yield row

    def set_epoch(self, epoch: int) -> None:
        """transformers calls this before every epoch (accelerate forwards it): the shuffle of pass ``epoch``
        is the same whether the run started at epoch 0 or was resumed in it (:func:`position_shuffle`)."""
        if self.shuffle and self.seed is not None:
            position_shuffle(self.generator, self.seed, self.layout.num_sets, epoch)

    def __len__(self) -> int:
        full = self.layout.num_sets // self.sets_per_batch
        rows = full * self.sets_per_batch * self.layout.paraphrases_per_set
        return rows * self.mini_repeat_count * self.repeat_count
