"""PS-GRPO group similarity rewards and the reward mixes recipes use.

All functions here are pure: lists/arrays in, ``np.ndarray`` out, no trainer state. The trainer
(:mod:`grpo_sim.trainer`) gathers a whole generation batch, lets each process score its share of
the sets (:func:`set_shards`, ``group_similarity_rewards(..., sets=...)``) and gathers the rewards
back (:func:`merge_shards`).

A set's rewards depend only on that set's completions and the seed: each set is encoded in its
own call (so a model encoder batches the same texts whatever else is in the batch) and, for the
relaxed reward, sampled from its own generator (:func:`set_sampling_seed`). Scoring the sets on
one process or spread over many therefore gives bit-identical rewards.

Notation (Hamman et al., 2025): a paraphrase set has paraphrases ``i = 1..n`` and ``g`` rollouts
``o_ij`` per paraphrase. The exact group similarity reward is

    r_ij = 1 / ((n-1) g) * sum_{u != i} sum_m sim(o_ij, o_um)

i.e. the mean similarity of ``o_ij`` to every completion of the OTHER paraphrases of its set.
Batches may mix sets of different sizes; with unequal rollout counts the reward is the mean over
all cross-paraphrase completions (each completion weighs the same).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

from .advantages import frac_zero_spread_groups, group_codes
from .similarity import get_similarity
from .similarity.base import Similarity
from .similarity.text import normalize_answer, repetitive_answer_rate

__all__ = [
    "RelaxedSampling",
    "group_similarity_rewards",
    "set_sampling_seed",
    "set_shards",
    "merge_shards",
    "reference_rewards",
    "accuracy_rewards",
    "majority_agreement_rewards",
    "combine_rewards",
    "short_completion_mask",
    "apply_collapse_penalty",
    "as_texts",
    "set_statistics",
]


@dataclass(frozen=True)
class RelaxedSampling:
    """The paper's relaxed reward: ``kappa`` other paraphrases, ``samples`` rollouts from each.

    When a set has fewer than ``kappa`` other paraphrases (or a paraphrase fewer than ``samples``
    rollouts) all of them are used, which makes the estimate exact for that completion.
    """

    kappa: int = 3
    samples: int = 1

    def __post_init__(self) -> None:
        for field_name in ("kappa", "samples"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"relaxed reward: {field_name} must be an integer >= 1, got {value!r}")

    @classmethod
    def parse(cls, approx: Any) -> "RelaxedSampling | None":
        if approx is None or isinstance(approx, RelaxedSampling):
            return approx
        if isinstance(approx, Mapping):
            unknown = set(approx) - {"kappa", "samples"}
            if unknown:
                raise ValueError(f"relaxed reward: unknown keys {sorted(unknown)}; use {{'kappa': 3, 'samples': 1}}")
            return cls(**approx)
        raise ValueError(f"approx must be None (exact) or a mapping like {{'kappa': 3, 'samples': 1}}, got {approx!r}")


def as_texts(completions: Sequence[Any], what: str = "completions") -> list[str]:
    """Completion texts from TRL's completions: strings, or chat messages (the last message's content)."""
    texts = []
    for k, c in enumerate(completions):
        if isinstance(c, str):
            texts.append(c)
        elif isinstance(c, list) and c and isinstance(c[-1], Mapping) and "content" in c[-1]:
            # TRL conversational completion: [{"role": "assistant", "content": ...}]
            texts.append(str(c[-1]["content"]))
        else:
            raise ValueError(f"{what}[{k}] is {type(c).__name__}, expected a string or a list of chat messages")
    return texts


def _check_lengths(**columns: Sequence[Any]) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"mismatched lengths: {lengths}; every column needs one entry per completion")
    return next(iter(lengths.values()))


def _check_ids(name: str, ids: Sequence[Any]) -> None:
    for k, value in enumerate(ids):
        if type(value) is str or type(value) is int:  # the usual ids, checked fast (whole batches are checked)
            continue
        if value is None or not isinstance(value, Hashable) or (isinstance(value, float) and np.isnan(value)):
            raise ValueError(f"{name}[{k}] = {value!r} is not a valid id (use a string or an integer)")


def _check_finite(matrix: np.ndarray, metric: Similarity) -> None:
    if not np.all(np.isfinite(matrix)):
        bad = int(np.size(matrix) - np.count_nonzero(np.isfinite(matrix)))
        raise ValueError(
            f"similarity {metric.name!r} returned {bad} NaN/inf values; a similarity must return finite "
            "numbers for every pair (return 0.0 for pairs it cannot score)"
        )


def _group_indices(set_ids: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    groups: dict[Hashable, list[int]] = {}
    for k, sid in enumerate(set_ids):
        groups.setdefault(sid, []).append(k)
    return {sid: np.asarray(ix, dtype=np.int64) for sid, ix in groups.items()}


def _stable_id_key(value: Hashable) -> str:
    """Text that names an id the same way in every process and Python run (unlike salted ``hash``)."""
    if isinstance(value, (bool, np.bool_)):
        return f"bool:{bool(value)}"
    if isinstance(value, (int, np.integer)):
        return f"int:{int(value)}"
    if isinstance(value, str):
        return f"str:{value}"
    if isinstance(value, (float, np.floating)):
        return f"float:{float(value)!r}"
    if isinstance(value, tuple):
        return "tuple:(" + ",".join(_stable_id_key(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def set_sampling_seed(seed: int | Sequence[int], set_id: Hashable) -> int:
    """Seed of one set's relaxed sampling: a stable 64-bit hash of ``seed`` and the set id.

    ``seed`` is an integer or a sequence of integers (the trainer passes ``(args.seed, stream,
    generation batch)``). The value is the first 8 bytes (little-endian) of
    ``blake2b(b"<s0>,<s1>,...|<kind>:<id>", digest_size=8)``, where ``<kind>:<id>`` is e.g.
    ``str:q17`` or ``int:17`` -- the same in every process, on every machine, in every run.
    """
    parts = list(seed) if isinstance(seed, (tuple, list)) else [seed]
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, (int, np.integer)):
            raise ValueError(f"seed must be an integer or a sequence of integers, got {seed!r}")
    key = ",".join(str(int(p)) for p in parts) + "|" + _stable_id_key(set_id)
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def set_shards(set_ids: Sequence[Hashable], num_shards: int) -> np.ndarray:
    """Which shard (process) scores each row: whole sets, contiguous, balanced within one set.

    Sets are numbered in order of first appearance ``k = 0..S-1``; set ``k`` goes to shard
    ``k * num_shards // S``. With more shards than sets some shards get none.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    codes = group_codes(set_ids)
    num_sets = int(codes.max()) + 1 if len(codes) else 0
    return (codes * int(num_shards)) // max(num_sets, 1)


def merge_shards(shares: Sequence[Sequence[float]], shards: np.ndarray) -> np.ndarray:
    """Reassemble one value per row from each shard's values for its own rows (in row order)."""
    shards = np.asarray(shards, dtype=np.int64)
    if len(shards) and len(shares) <= int(shards.max()):
        raise ValueError(f"rows belong to {int(shards.max()) + 1} shards but only {len(shares)} sent values")
    out = np.full(len(shards), np.nan, dtype=np.float64)
    for shard, values in enumerate(shares):
        rows = np.flatnonzero(shards == shard)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != rows.shape:
            raise ValueError(f"shard {shard} sent {values.size} values for its {rows.size} rows")
        out[rows] = values
    return out


def group_similarity_rewards(
    completions: Sequence[Any],
    set_ids: Sequence[Hashable],
    paraphrase_ids: Sequence[Hashable],
    similarity: Any = "bleu2",
    approx: Any = None,
    seed: int | Sequence[int] = 0,
    sets: Iterable[Hashable] | None = None,
) -> np.ndarray:
    """PS-GRPO group similarity reward ``r_ij`` for every completion of a batch.

    Args:
        completions: completion texts (or TRL chat completions), any order, any number of sets.
        set_ids: the paraphrase set of each completion.
        paraphrase_ids: the paraphrase (within its set) each completion answers.
        similarity: registry name/spec, :class:`Similarity`, or callable ``(a, b) -> matrix``.
        approx: ``None`` for the exact reward, or ``{"kappa": k, "samples": s}`` for the relaxed one.
        seed: seed of the relaxed sampling, an integer or a sequence of integers. Each set draws
            from its own generator seeded by :func:`set_sampling_seed` ``(seed, set id)``, so a set's
            rewards do not depend on the other sets in the batch or their order.
        sets: score only these set ids (e.g. one process's share, :func:`set_shards`); the other
            completions are neither encoded nor compared and get NaN. ``None`` scores every set.

    Returns:
        float64 array, one reward per completion. A set with a single paraphrase has no
        cross-paraphrase completions: its rewards are NaN (TRL treats NaN as "unscorable").
    """
    n = _check_lengths(completions=completions, set_ids=set_ids, paraphrase_ids=paraphrase_ids)
    _check_ids("set_ids", set_ids)
    _check_ids("paraphrase_ids", paraphrase_ids)
    texts = as_texts(completions)
    metric = get_similarity(similarity)
    relaxed = RelaxedSampling.parse(approx)
    rewards = np.full(n, np.nan, dtype=np.float64)
    groups = _group_indices(set_ids)
    if sets is not None:
        wanted = list(sets)
        missing = [sid for sid in wanted if sid not in groups]
        if missing:
            raise ValueError(f"sets {missing[:5]} have no completions in this batch")
        groups = {sid: groups[sid] for sid in dict.fromkeys(wanted)}
    pids = list(paraphrase_ids)

    for sid, rows in groups.items():
        codes = group_codes([pids[k] for k in rows])
        num_paras = int(codes.max()) + 1
        if num_paras < 2:
            continue  # one paraphrase: no cross-paraphrase reward
        encoded = metric.encode([texts[k] for k in rows])  # each set on its own: independent of the batch
        if relaxed is None:
            matrix = metric.block(encoded, encoded)
            _check_finite(matrix, metric)
            cross = codes[:, None] != codes[None, :]
            rewards[rows] = (matrix * cross).sum(axis=1) / cross.sum(axis=1)
            continue
        # Relaxed: draw the pairs first (vectorised), then score only those pairs in one call.
        rng = np.random.default_rng(set_sampling_seed(seed, sid))
        left, right, weight = _relaxed_pairs(np.arange(len(rows)), codes, num_paras, relaxed, rng)
        sims = metric.paired(metric.select(encoded, left), metric.select(encoded, right))
        _check_finite(sims, metric)
        scored = np.zeros(len(rows), dtype=np.float64)
        np.add.at(scored, left, weight * sims)
        has = np.zeros(len(rows), dtype=bool)
        has[left] = True
        rewards[rows[has]] = scored[has]
    return rewards


def _relaxed_pairs(
    rows: np.ndarray, codes: np.ndarray, num_paras: int, relaxed: RelaxedSampling, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampled (left, right, weight) pairs of one set.

    Each completion draws ``kappa`` of the other paraphrases without replacement and ``samples``
    rollouts of each without replacement (sorting random keys = uniform sampling without
    replacement). Paraphrase b stands for sizes[b]/total_other of the exact (pooled) reward and is
    drawn with probability kappa/(n-1), which gives the weights below; with equal rollout counts
    they reduce to the paper's 1/(kappa s).
    """
    m = len(rows)
    sizes = np.bincount(codes, minlength=num_paras)
    kappa = min(relaxed.kappa, num_paras - 1)
    para_keys = rng.random((m, num_paras))
    para_keys[np.arange(m), codes] = np.inf  # never the completion's own paraphrase
    chosen = np.argsort(para_keys, axis=1, kind="stable")[:, :kappa]  # (m, kappa)
    # members of each paraphrase, padded to the largest size
    width = int(sizes.max())
    members = np.full((num_paras, width), -1, dtype=np.int64)
    fill = np.zeros(num_paras, dtype=np.int64)
    for local, code in enumerate(codes):
        members[code, fill[code]] = local
        fill[code] += 1
    member_keys = rng.random((m, kappa, width))
    member_keys[members[chosen] < 0] = np.inf  # padding slots are never drawn
    samples = min(relaxed.samples, width)
    picked_slot = np.argsort(member_keys, axis=2, kind="stable")[:, :, :samples]  # (m, kappa, samples)
    picked = np.take_along_axis(members[chosen], picked_slot, axis=2)
    per_para = np.minimum(relaxed.samples, sizes[chosen])  # (m, kappa) rollouts actually drawn
    total_other = m - sizes[codes]  # (m,)
    weights = sizes[chosen] / total_other[:, None] * (num_paras - 1) / kappa / per_para
    valid = picked >= 0
    left = np.broadcast_to(np.arange(m)[:, None, None], picked.shape)[valid]
    weight = np.broadcast_to(weights[:, :, None], picked.shape)[valid]
    return rows[left], rows[picked[valid]], weight


def reference_rewards(
    completions: Sequence[Any],
    references: Sequence[Any],
    similarity: Any = "embedding",
) -> np.ndarray:
    """Similarity of each completion to its reference text(s): the max over references.

    ``references[k]`` is a string or a list of strings (several gold answers); an empty list or
    ``None`` gives NaN (no reference to compare with).
    """
    _check_lengths(completions=completions, references=references)
    texts = as_texts(completions)
    metric = get_similarity(similarity)
    left: list[int] = []
    refs: list[str] = []
    for k, ref in enumerate(references):
        if ref is None:
            continue
        options = [ref] if isinstance(ref, str) else list(ref)
        for option in options:
            if not isinstance(option, str):
                raise ValueError(f"references[{k}] contains {type(option).__name__}; expected strings")
            left.append(k)
            refs.append(option)
    out = np.full(len(texts), np.nan, dtype=np.float64)
    if not left:
        return out
    left_ix = np.asarray(left, dtype=np.int64)
    uniq = sorted(set(left))
    enc_hyp = metric.encode([texts[k] for k in uniq])
    position = {k: i for i, k in enumerate(uniq)}
    sims = metric.paired(
        metric.select(enc_hyp, np.asarray([position[k] for k in left], dtype=np.int64)), metric.encode(refs)
    )
    _check_finite(sims, metric)
    best = np.full(len(texts), -np.inf)
    np.maximum.at(best, left_ix, sims)
    out[np.isfinite(best)] = best[np.isfinite(best)]
    return out


def accuracy_rewards(completions: Sequence[Any], answers: Sequence[Any], metric: Any = "token_f1") -> np.ndarray:
    """Accuracy against gold answers: the best ``metric`` score over the gold answers (SQuAD token-F1 by default)."""
    return reference_rewards(completions, answers, similarity=metric)


def majority_agreement_rewards(
    completions: Sequence[Any],
    set_ids: Sequence[Hashable],
    paraphrase_ids: Sequence[Hashable],
    ignore_empty: bool = True,
) -> np.ndarray:
    """Co-Reward-style agreement (arXiv 2508.00410) for short answers.

    A completion scores 1 when its SQuAD-normalised answer is a majority answer (the most frequent
    one; every answer tied for most frequent counts) among the rollouts of the OTHER paraphrases of
    its set, else 0. With ``ignore_empty`` an empty normalised answer never scores and is not counted
    as a vote, so agreeing on silence earns nothing. Sets with one paraphrase give NaN.
    """
    n = _check_lengths(completions=completions, set_ids=set_ids, paraphrase_ids=paraphrase_ids)
    _check_ids("set_ids", set_ids)
    _check_ids("paraphrase_ids", paraphrase_ids)
    answers = [normalize_answer(t) for t in as_texts(completions)]
    out = np.full(n, np.nan, dtype=np.float64)
    for rows in _group_indices(set_ids).values():
        paras = {paraphrase_ids[k] for k in rows}
        if len(paras) < 2:
            continue
        for k in rows:
            votes = Counter(
                answers[m]
                for m in rows
                if paraphrase_ids[m] != paraphrase_ids[k] and not (ignore_empty and answers[m] == "")
            )
            if not votes or (ignore_empty and answers[k] == ""):
                out[k] = 0.0
                continue
            top = max(votes.values())
            out[k] = float(votes.get(answers[k], 0) == top)
    return out


def combine_rewards(components: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum ``sum_k w_k r_k`` with TRL's NaN rule: NaN components are skipped; all-NaN -> NaN."""
    missing = set(weights) - set(components)
    if missing:
        raise ValueError(f"weights given for unknown reward components {sorted(missing)}")
    arrays = [np.asarray(components[name], dtype=np.float64) * float(w) for name, w in weights.items()]
    if not arrays:
        raise ValueError("combine_rewards needs at least one weighted component")
    _check_lengths(**{name: a for name, a in zip(weights, arrays)})
    stacked = np.stack(arrays, axis=1)
    total = np.nansum(stacked, axis=1)
    total[np.isnan(stacked).all(axis=1)] = np.nan
    return total


def short_completion_mask(completions: Sequence[Any], min_words: int = 1) -> np.ndarray:
    """True where a completion has fewer than ``min_words`` white-space separated words (empty counts)."""
    return np.asarray([len(t.split()) < min_words for t in as_texts(completions)], dtype=bool)


def apply_collapse_penalty(rewards_per_func: np.ndarray, penalised: np.ndarray) -> np.ndarray:
    """Give penalised rows the minimum reward of the batch in every reward column.

    Each column's minimum is taken over the rows that are not penalised (and never above 0), so a
    penalised completion can never out-score a real one under non-negative weights.
    """
    rewards = np.array(rewards_per_func, dtype=np.float64, copy=True)
    if rewards.ndim == 1:
        rewards = rewards[:, None]
    penalised = np.asarray(penalised, dtype=bool)
    if penalised.shape[0] != rewards.shape[0]:
        raise ValueError(f"penalty mask has {penalised.shape[0]} rows, rewards have {rewards.shape[0]}")
    if not penalised.any():
        return rewards.reshape(np.shape(rewards_per_func))
    for col in range(rewards.shape[1]):
        kept = rewards[~penalised, col]
        kept = kept[np.isfinite(kept)]
        floor = min(float(kept.min()), 0.0) if kept.size else 0.0
        rewards[penalised, col] = floor
    return rewards.reshape(np.shape(rewards_per_func))


def set_statistics(
    completions: Sequence[Any],
    set_ids: Sequence[Hashable],
    paraphrase_ids: Sequence[Hashable],
    rewards: np.ndarray | None = None,
    min_words: int = 1,
) -> dict[str, float | str]:
    """Batch statistics that reveal consistency and collapse.

    * ``agreement``: fraction of cross-paraphrase completion pairs whose normalised answers match;
    * ``frac_empty``: completions with fewer than ``min_words`` words;
    * ``frac_sets_identical``: sets whose completions all have the same normalised answer;
    * ``frac_repetitive``: completions repeating a word or phrase (:func:`~grpo_sim.similarity.text.is_repetitive`);
    * ``frac_modal_answer`` / ``modal_answer``: share of all completions giving the batch's most
      common normalised answer, and that answer. Identical answers *within* sets are the goal of
      consistency training; the same answer *across different questions* is collapse;
    * ``num_sets``: sets in the batch;
    * ``frac_zero_std_paraphrase`` / ``frac_zero_std_set``: groups whose rewards have no spread
      (:func:`~grpo_sim.advantages.frac_zero_spread_groups`, the test TRL's ``frac_reward_zero_std`` uses).
    """
    texts = as_texts(completions)
    answers = np.asarray([normalize_answer(t) for t in texts], dtype=object)
    groups = _group_indices(set_ids)
    pid = group_codes(paraphrase_ids)
    agree_num = agree_den = 0
    identical = 0
    for rows in groups.values():
        a = answers[rows]
        same = a[:, None] == a[None, :]
        cross = pid[rows][:, None] != pid[rows][None, :]
        agree_num += int((same & cross).sum())
        agree_den += int(cross.sum())
        identical += int(len(set(a.tolist())) == 1)
    stats = {
        "agreement": agree_num / agree_den if agree_den else float("nan"),
        "frac_empty": float(short_completion_mask(texts, min_words).mean()) if texts else float("nan"),
        "frac_sets_identical": identical / len(groups) if groups else float("nan"),
        "mean_words": float(np.mean([len(t.split()) for t in texts])) if texts else float("nan"),
        "frac_repetitive": repetitive_answer_rate(texts) if texts else float("nan"),
        "num_sets": len(groups),
    }
    if texts:
        values, counts = np.unique(answers.astype(str), return_counts=True)
        top = int(np.argmax(counts))
        stats["frac_modal_answer"] = float(counts[top] / len(texts))
        stats["modal_answer"] = str(values[top])
    if rewards is not None:  # the same test as TRL's frac_reward_zero_std (one tolerance, one std)
        stats["frac_zero_std_set"] = frac_zero_spread_groups(rewards, group_codes(set_ids))
        stats["frac_zero_std_paraphrase"] = frac_zero_spread_groups(rewards, group_codes(set_ids, paraphrase_ids))
    return stats
