"""Consistency and accuracy numbers from predictions: pure functions, hand-checkable.

Definitions (Hamman et al., 2025, "Improving Consistency in Retrieval-Augmented Systems with
Group Similarity Rewards", evaluation section):

* **pairwise consistency of one set** with answers ``y_1..y_n`` (one per paraphrase) under a
  similarity ``sim``: the mean over *ordered* pairs ``i != j`` of ``sim(y_i, y_j)``
  (``n (n - 1)`` terms; for an asymmetric metric such as BLEU both orientations count, with
  ``y_i`` as the hypothesis and ``y_j`` as the reference);
* **retriever consistency** of one set: the same mean of the Jaccard similarity
  ``|A_i & A_j| / |A_i | A_j|`` of the retrieved passage-id sets (see
  :func:`grpo_sim.data.retrieval.retriever_consistency`);
* **generator consistency**: pairwise consistency of the answers generated with the passages
  held fixed (those of the first paraphrase) so that only the wording varies;
* **end-to-end consistency**: pairwise consistency of the answers generated with each
  paraphrase's own passages;
* **accuracy** of one answer: the best score over the gold answers of SQuAD exact match
  (``accuracy_em``), SQuAD token F1 (``accuracy_f1``) and ROUGE-L F-measure
  (``accuracy_rouge_l``); accuracy of a set is the mean over its paraphrases' end-to-end
  answers. **Long-form** data (median gold answer longer than :data:`LONG_FORM_WORDS` words,
  e.g. ELI5) is scored with the measures that fit long answers instead: ROUGE-L
  (``accuracy_rouge_l``), BLEU-2 (``accuracy_bleu2``) and embedding cosine
  (``accuracy_embedding``, when ``embedding`` is among the metrics) to the references; EM and
  token F1 against a paragraph-long Reddit answer are near zero whatever the model says, so
  they are not reported;
* **collapse figures**, next to consistency because a similarity-only objective is maximised
  by one degenerate answer: ``empty_answer_rate`` (share of answers empty after SQuAD
  normalisation) and ``cross_set_modal_answer_share`` (share of answers equal to the most
  common normalised answer among those given in two or more *different* sets, see
  :func:`cross_set_modal_answer`; agreement inside a set is the goal, the same answer to
  different questions is collapse). :func:`collapse_warnings` turns them into warnings at
  :data:`EMPTY_ANSWER_WARN_RATE` and :data:`MODAL_ANSWER_WARN_SHARE`; ``repetitive_answer_rate``
  (share of answers repeating a word or phrase, :func:`grpo_sim.eval.degeneration.is_repetitive`)
  warned at :data:`grpo_sim.eval.degeneration.REPETITIVE_ANSWER_WARN_RATE`.

Every summary number is the **mean over sets** of the per-set value (each set weighs the same,
whatever its number of paraphrases) with a percentile bootstrap 95% interval obtained by
resampling sets with replacement (:func:`bootstrap_ci`). Baseline comparisons are paired
over the sets both runs evaluated (:func:`paired_difference`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..data.retrieval import retriever_consistency
from ..data.schema import DataError, ParaphraseSet
from ..similarity import get_similarity
from ..similarity.base import Similarity
from ..similarity.text import normalize_answer
from .bootstrap import bootstrap_ci, bootstrap_cis, paired_difference
from .degeneration import EMPTY_ANSWER_WARN_RATE, MODAL_ANSWER_WARN_SHARE, is_repetitive, repetition_warning
from .predictions import (
    LEVELS,
    EvalError,
    SetView,
    check_predictions,
    check_sets_for_consistency,
    organise_predictions,
    read_predictions,
    views_from_predictions,
    views_from_sets,
)

__all__ = [
    "DEFAULT_METRICS",
    "LEVELS",
    "EvalError",
    "bootstrap_ci",
    "bootstrap_cis",
    "metric_key",
    "pairwise_consistency",
    "paired_difference",
    "read_predictions",
    "check_predictions",
    "collapse_warnings",
    "encoders",
    "cross_set_modal_answer",
    "summarize",
    "summarize_with_details",
]

#: metrics reported by default: lexical (BLEU-2, ROUGE-L, exact match) and semantic (embedding cosine)
DEFAULT_METRICS: tuple[str, ...] = ("bleu2", "rouge_l", "exact_match", "embedding")
#: summary keys that get a different name than their metric
_KEY_NAMES = {"exact_match": "exact"}
#: accuracy measures: summary key suffix -> registry name
_ACCURACY_METRICS = {"em": "exact_match", "f1": "token_f1", "rouge_l": "rouge_l"}
#: accuracy measures of long-form data (ELI5): summary key suffix -> registry name; "embedding" uses the
#: evaluation's own embedding metric and is left out when ``metrics`` has none
_LONG_ACCURACY_METRICS = {"rouge_l": "rouge_l", "bleu2": "bleu2", "embedding": "embedding"}
#: gold answers with a median of more than this many (SQuAD-normalised) words are "long form"
LONG_FORM_WORDS = 5


# --------------------------------------------------------------------------------------------
# Metric specs -> summary keys
# --------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def metric_key(spec: Any) -> tuple[str, Any]:
    """``(summary key suffix, registry spec)`` for one entry of ``metrics``.

    * a registered name is its own key (``"bleu2"`` -> ``bleu2``), except ``exact_match`` which
      is reported as ``exact`` (``consistency_e2e_exact``);
    * ``"alias=spec"`` names any spec: ``"e5=embedding:model=/models/e5"`` reports
      ``consistency_e2e_e5``;
    * any other spec (``"bleu:n=3"``, ``"pkg.mod:fn"``, a mapping, a :class:`Similarity`) gets
      a key derived from its name, lower-cased with runs of other characters turned into ``_``.
    """
    if isinstance(spec, str):
        alias, eq, rest = spec.partition("=")
        if eq and _IDENT.match(alias.strip()) and ":" not in alias:
            return alias.strip(), rest.strip()
        name = spec
    elif isinstance(spec, Similarity):
        name = spec.name
    elif isinstance(spec, Mapping):
        name = str(spec.get("key") or spec.get("name", "metric"))
        spec = {k: v for k, v in spec.items() if k != "key"}
    else:
        name = getattr(spec, "__name__", None) or getattr(spec, "name", None) or type(spec).__name__
    if name in _KEY_NAMES:
        return _KEY_NAMES[name], spec
    key = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "metric"
    return key, spec


def _resolve_metrics(metrics: Sequence[Any], embedding_model: str | None) -> list[tuple[str, Similarity]]:
    out: list[tuple[str, Similarity]] = []
    seen: dict[str, Any] = {}
    for entry in metrics:
        key, spec = metric_key(entry)
        if key in seen:
            raise EvalError(
                f"metrics: {entry!r} and {seen[key]!r} would both be reported as '{key}'; "
                "name one of them with 'alias=spec' (e.g. 'bleu3=bleu:n=3')"
            )
        seen[key] = entry
        if spec == "embedding" and embedding_model is not None:
            spec = {"name": "embedding", "model": embedding_model}
        try:
            metric = get_similarity(spec)
        except (ValueError, ImportError) as exc:
            raise EvalError(f"metrics: cannot use {entry!r}: {exc}") from exc
        out.append((key, metric))
    return out


# --------------------------------------------------------------------------------------------
# Pairwise consistency
# --------------------------------------------------------------------------------------------


def _check_range(vals: np.ndarray, metric: Similarity) -> np.ndarray:
    if not np.all(np.isfinite(vals)):
        raise EvalError(f"similarity {metric.name!r} returned NaN/inf; a similarity must return finite numbers")
    if len(vals) and (vals.min() < -1e-9 or vals.max() > 1 + 1e-9):
        raise EvalError(
            f"similarity {metric.name!r} returned values in [{vals.min():.4g}, {vals.max():.4g}]; "
            "consistency needs similarities in [0, 1]"
        )
    return np.clip(vals, 0.0, 1.0)


def _ordered_pairs(sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (left, right, owner) indices of every ordered pair i != j inside each group."""
    lefts, rights, owners = [], [], []
    start = 0
    for g, n in enumerate(sizes):
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        off = i != j
        lefts.append(start + i[off])
        rights.append(start + j[off])
        owners.append(np.full(int(off.sum()), g, dtype=np.int64))
        start += n
    if not lefts:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(owners)


def _set_consistency(metric: Similarity, answer_groups: Sequence[Sequence[str]]) -> np.ndarray:
    """Mean over ordered pairs i != j of ``sim(y_i, y_j)`` for each group (NaN: < 2 answers).

    All answers are encoded once; all pairs are scored in one ``paired`` call.
    """
    sizes = [len(g) for g in answer_groups]
    out = np.full(len(sizes), np.nan)
    flat = [str(a) for g in answer_groups for a in g]
    left, right, owner = _ordered_pairs(sizes)
    if not len(left):
        return out
    enc = metric.encode(flat)
    vals = _check_range(
        np.asarray(metric.paired(metric.select(enc, left), metric.select(enc, right)), dtype=np.float64), metric
    )
    sums = np.bincount(owner, weights=vals, minlength=len(sizes))
    counts = np.bincount(owner, minlength=len(sizes))
    has = counts > 0
    out[has] = sums[has] / counts[has]
    return out


def pairwise_consistency(answers: Sequence[str], metric: Any = "bleu2") -> float:
    """Mean of ``sim(answers[i], answers[j])`` over ordered pairs ``i != j`` (one set).

    ``metric`` is any similarity spec. Raises :class:`EvalError` for fewer than two answers.
    """
    if len(answers) < 2:
        raise EvalError(f"pairwise consistency needs at least 2 answers, got {len(answers)}")
    return float(_set_consistency(get_similarity(metric), [list(answers)])[0])


# --------------------------------------------------------------------------------------------
# Collapse figures
# --------------------------------------------------------------------------------------------


def cross_set_modal_answer(answers: Sequence[str], set_ids: Sequence[Any]) -> tuple[str | None, int, int]:
    """``(answer, num_sets, num_answers)``: the most common SQuAD-normalised answer among those given
    in at least two different sets, the number of sets giving it and how many answers equal it.

    Identical answers *within* a set are what consistency training aims for, so an answer only
    counts as a collapse candidate when different questions get it. Ties go to the answer given
    in more sets, then to the alphabetically first. ``(None, 0, 0)`` when no answer is shared by
    two sets (always the case with fewer than two sets). The empty answer is a candidate like any
    other. Unlike ``rewards.set_statistics``' batch modal answer (all completions counted, so one
    fully consistent set looks like collapse in a small batch) this ignores within-set agreement.
    """
    if len(answers) != len(set_ids):
        raise ValueError(f"cross_set_modal_answer: {len(answers)} answers but {len(set_ids)} set ids")
    counts: dict[str, int] = {}
    sets_of: dict[str, set[Any]] = {}
    for answer, set_id in zip(answers, set_ids):
        norm = normalize_answer(str(answer))
        counts[norm] = counts.get(norm, 0) + 1
        sets_of.setdefault(norm, set()).add(set_id)
    shared = [a for a in counts if len(sets_of[a]) >= 2]
    if not shared:
        return None, 0, 0
    best = min(shared, key=lambda a: (-counts[a], -len(sets_of[a]), a))
    return best, len(sets_of[best]), counts[best]


def collapse_warnings(summary: Mapping[str, Any], who: str | None = None) -> list[str]:
    """Warnings for a summary whose collapse figures reach :data:`EMPTY_ANSWER_WARN_RATE`,
    :data:`MODAL_ANSWER_WARN_SHARE` or the repetition threshold (empty list when none does or the figures are
    absent).

    The modal-answer warning is not raised when the shared answer is the gold answer in every
    set that gives it (``cross_set_modal_answer_gold_sets``): then the questions really share
    their answer (``yes``/``no`` comparisons). ``who`` (e.g. ``"baseline"``) prefixes each warning."""
    out: list[str] = repetition_warning(summary.get("repetitive_answer_rate"), who)
    prefix = f"{who}: " if who else ""
    empty = summary.get("empty_answer_rate")
    empty_warned = empty is not None and empty >= EMPTY_ANSWER_WARN_RATE
    if empty_warned:
        out.append(
            f"{prefix}{100 * empty:.0f}% of the answers are empty (warning at "
            f"{100 * EMPTY_ANSWER_WARN_RATE:.0f}%): empty answers agree with each other, so consistency is "
            "inflated (collapse); read consistency together with accuracy"
        )
    share = summary.get("cross_set_modal_answer_share")
    answer = summary.get("cross_set_modal_answer")
    n_sets = summary.get("cross_set_modal_answer_sets")
    gold_sets = summary.get("cross_set_modal_answer_gold_sets")
    if share is not None and share >= MODAL_ANSWER_WARN_SHARE and not (answer == "" and empty_warned):
        if gold_sets is not None and n_sets and gold_sets >= n_sets:
            return out
        what = (
            "the empty answer" if answer == "" else (f"the answer {answer!r}" if answer is not None else "one answer")
        )
        where = f" in {n_sets} different sets (questions)" if n_sets else " across different sets (questions)"
        gold = (
            ""
            if gold_sets is None or not n_sets
            else (
                ", the gold answer of none of them"
                if gold_sets == 0
                else f", the gold answer of only {gold_sets} of them"
            )
        )
        out.append(
            f"{prefix}{100 * share:.0f}% of the answers are {what}, given{where}{gold} (warning at "
            f"{100 * MODAL_ANSWER_WARN_SHARE:.0f}%): one answer to different questions agrees with itself, "
            "so consistency is inflated (collapse); read consistency together with accuracy"
        )
    return out


def encoders(specs: Mapping[str, Any]) -> dict[str, str]:
    """``{key: "<model> @ <revision>"}`` for every similarity spec in ``specs`` that embeds with an encoder
    (``embedding``, ``bmas``, ...): the name reports and summaries show next to an embedding metric."""
    from ..similarity import get_similarity

    out = {}
    for key, spec in specs.items():
        try:
            metric = get_similarity(spec)
        except (ValueError, ImportError):
            continue
        describe = getattr(metric, "encoder", None)
        if callable(describe):
            out[key] = describe()
    return out


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def _answer_form(views: Sequence[SetView]) -> str | None:
    lengths = [len(normalize_answer(a).split()) for v in views for a in v.answers[:1]]
    if not lengths:
        return None
    return "long" if float(np.median(lengths)) > LONG_FORM_WORDS else "short"


def _jsonable(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def summarize_with_details(
    sets: Iterable[ParaphraseSet | Mapping[str, Any]] | None,
    predictions: Sequence[Mapping[str, Any]],
    metrics: Sequence[Any] = DEFAULT_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    embedding_model: str | None = None,
    judge: Any = None,
    confidence: float = 0.95,
    source: str = "predictions",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score predictions: ``(summary, per_set_rows)``; see :func:`summarize` for the keys.

    ``sets=None`` rebuilds the sets from the rows (``passage_ids`` and gold ``answers`` are
    then taken from the prediction rows). ``judge`` is an optional
    :class:`~grpo_sim.eval.judge.LLMJudge` that adds ``consistency_e2e_judge`` and
    ``accuracy_judge``.
    """
    preds = check_predictions(predictions, source=source)
    views = views_from_predictions(preds) if sets is None else views_from_sets(sets)
    if not views:
        raise EvalError("no paraphrase sets to evaluate")
    views, table, notes = organise_predictions(views, preds, source)
    resolved = _resolve_metrics(metrics, embedding_model)
    n = len(views)
    columns: dict[str, np.ndarray] = {}
    summary_notes: dict[str, str] = {}

    def answers_of(level: str) -> list[list[str]]:
        return [[table[level][v.set_id][p]["answer"] for p in v.paraphrase_ids] for v in views]

    # accuracy (end-to-end answers; generator-level answers when only those exist)
    acc_level = "e2e" if "e2e" in table else next(iter(table))
    acc_answers = answers_of(acc_level)
    flat_answers = [a for g in acc_answers for a in g]
    golds = [list(v.answers) if v.answers else None for v in views for _ in v.paraphrase_ids]
    owners = np.repeat(np.arange(n), [len(v.paraphrase_ids) for v in views])
    positions = np.concatenate([np.arange(len(v.paraphrase_ids)) for v in views])
    per_answer_acc: dict[str, np.ndarray] = {}
    from ..rewards import reference_rewards

    has_gold = any(g for g in golds)
    answer_form = _answer_form(views)
    accuracy_metrics: dict[str, Any] = dict(_ACCURACY_METRICS)
    if answer_form == "long":
        embedding = dict(resolved).get("embedding")
        accuracy_metrics = {
            k: (embedding if k == "embedding" else v)
            for k, v in _LONG_ACCURACY_METRICS.items()
            if k != "embedding" or embedding is not None
        }
        summary_notes["accuracy"] = (
            "long-form answers (median gold answer longer than "
            f"{LONG_FORM_WORDS} words): accuracy is ROUGE-L, BLEU-2"
            + (" and embedding similarity" if embedding is not None else "")
            + " to the best-matching reference; EM and token F1 do not fit long answers and are not reported"
            + ("" if embedding is not None else " (add 'embedding' to the metrics for semantic accuracy)")
        )
    for suffix, name in accuracy_metrics.items():
        key = f"accuracy_{suffix}"
        if has_gold:
            per_answer = reference_rewards(flat_answers, golds, similarity=name)
            per_answer_acc[suffix] = per_answer
            columns[key] = _group_mean(per_answer, owners, n)
        else:
            columns[key] = np.full(n, np.nan)
            summary_notes[key] = "no gold answers in the data: accuracy not computed"
    first_accuracy = f"accuracy_{next(iter(accuracy_metrics))}"
    if has_gold and acc_level != "e2e":
        summary_notes[first_accuracy] = f"accuracy from the {acc_level}-level answers (no e2e predictions)"

    # collapse figures: answers that agree trivially (empty) or across different questions (one constant)
    normalised = [normalize_answer(a) for a in flat_answers]
    empty = np.asarray([a == "" for a in normalised], dtype=np.float64)
    columns["empty_answer_rate"] = _group_mean(empty, owners, n)
    if empty.mean() >= EMPTY_ANSWER_WARN_RATE:
        summary_notes["empty_answer_rate"] = (
            f"{100 * empty.mean():.0f}% of the {acc_level} answers are empty: empty answers agree with each "
            "other, so consistency is inflated (collapse); read it together with accuracy"
        )
    columns["repetitive_answer_rate"] = _group_mean(
        np.asarray([is_repetitive(a) for a in flat_answers], dtype=np.float64), owners, n
    )
    modal, modal_sets, _ = cross_set_modal_answer(flat_answers, owners.tolist())
    is_modal = np.asarray([a == modal for a in normalised], dtype=np.float64)
    columns["cross_set_modal_answer_share"] = _group_mean(is_modal, owners, n)
    modal_gold_sets = None
    if modal is not None and has_gold:
        modal_gold_sets = sum(
            1
            for i, v in enumerate(views)
            if is_modal[owners == i].any() and modal in {normalize_answer(g) for g in v.answers}
        )
    if n < 2:
        summary_notes["cross_set_modal_answer_share"] = "one set only: no answer can be shared by different sets"

    judge_cols: dict[str, np.ndarray] = {}
    if judge is not None and "e2e" in table:
        judge_cols = _judge_columns(
            judge, views, answers_of("e2e"), flat_answers if acc_level == "e2e" else None, golds, owners, n
        )

    if has_gold:
        columns.update({k: v for k, v in judge_cols.items() if k == "accuracy_judge"})
    for level in LEVELS:
        if level not in table:
            continue
        groups = answers_of(level)
        for key, metric in resolved:
            columns[f"consistency_{level}_{key}"] = _set_consistency(metric, groups)
        if level == "e2e" and "consistency_e2e_judge" in judge_cols:
            columns["consistency_e2e_judge"] = judge_cols["consistency_e2e_judge"]
    if "generator" not in table:
        summary_notes["consistency_generator"] = "no generator-level predictions (passages fixed to paraphrase 0)"

    # retriever
    retr = np.full(n, np.nan)
    for i, v in enumerate(views):
        ids = v.passage_ids
        if ids is None and "e2e" in table:  # fall back to the ids recorded with the e2e predictions
            rows = [table["e2e"][v.set_id][p] for p in v.paraphrase_ids]
            ids = [r.get("passage_ids") or [] for r in rows]
            ids = ids if any(ids) else None
        if ids is not None and len(ids) >= 2:  # one wording: no pair to compare
            retr[i] = retriever_consistency(ids)
    columns["consistency_retriever_jaccard"] = retr
    if not np.isfinite(retr).any():
        summary_notes["consistency_retriever_jaccard"] = "no passage ids in the data: retriever consistency skipped"

    keys = list(columns)
    matrix = np.stack([columns[k] for k in keys], axis=1) if keys else np.zeros((n, 0))
    cis = bootstrap_cis(matrix, n_boot=n_boot, seed=seed, confidence=confidence)

    summary: dict[str, Any] = {
        "num_sets": n,
        "num_predictions": len(preds),
        "num_paraphrases": int(sum(len(v.paraphrase_ids) for v in views)),
        "num_sets_with_gold": int(sum(1 for v in views if v.answers)),
        "answer_form": answer_form,
    }
    for j, key in enumerate(keys):
        col = columns[key]
        fin = np.isfinite(col)
        summary[key] = float(col[fin].mean()) if fin.any() else None
        summary[f"{key}_ci"] = list(cis[j]) if cis[j] is not None and summary[key] is not None else None
        if key in summary_notes:
            summary[f"{key}_note"] = summary_notes[key]
    for key, note in summary_notes.items():
        if key not in columns:
            summary[f"{key}_note"] = note
    summary["cross_set_modal_answer"] = modal
    summary["cross_set_modal_answer_sets"] = modal_sets
    summary["cross_set_modal_answer_gold_sets"] = modal_gold_sets
    summary["collapse_warnings"] = collapse_warnings(summary)
    # the encoder (model @ revision) of every embedding metric: "embedding" alone does not say which
    summary["encoders"] = {
        key: metric.encoder() for key, metric in resolved if callable(getattr(metric, "encoder", None))
    }
    if notes:
        summary["data_note"] = "; ".join(notes)
    if judge is not None and hasattr(judge, "stats"):
        summary["judge_unparsed"] = int(judge.stats.get("unparsed", 0))

    per_set: list[dict[str, Any]] = []
    for i, v in enumerate(views):
        row: dict[str, Any] = {"set_id": v.set_id, "num_paraphrases": len(v.paraphrase_ids)}
        for key in keys:
            row[key] = _jsonable(columns[key][i])
        for suffix in ("em", "f1", "rouge_l"):
            if suffix in per_answer_acc:
                sel = owners == i
                row[f"{suffix}_by_position"] = [
                    _jsonable(x) for x in per_answer_acc[suffix][sel][np.argsort(positions[sel])]
                ]
        per_set.append(row)
    return summary, per_set


def _group_mean(values: np.ndarray, owners: np.ndarray, n: int) -> np.ndarray:
    fin = np.isfinite(values)
    sums = np.bincount(owners[fin], weights=values[fin], minlength=n)
    counts = np.bincount(owners[fin], minlength=n)
    out = np.full(n, np.nan)
    out[counts > 0] = sums[counts > 0] / counts[counts > 0]
    return out


def _judge_columns(
    judge: Any,
    views: Sequence[SetView],
    groups: list[list[str]],
    flat_answers: list[str] | None,
    golds: list[list[str] | None],
    owners: np.ndarray,
    n: int,
) -> dict[str, np.ndarray]:
    """LLM-judge consistency (unordered pairs; identical normalised answers count as equivalent
    without a call) and accuracy (answers with gold only)."""
    items, owner = [], []
    for i, (v, g) in enumerate(zip(views, groups)):
        for a in range(len(g)):
            for b in range(a + 1, len(g)):
                items.append((v.question, g[a], g[b]))
                owner.append(i)
    cols: dict[str, np.ndarray] = {}
    verdicts = np.asarray(judge.equivalent_many(items), dtype=np.float64) if items else np.zeros(0)
    cols["consistency_e2e_judge"] = _group_mean(verdicts, np.asarray(owner, dtype=np.int64), n)
    if flat_answers is not None:
        idx = [k for k, g in enumerate(golds) if g]
        acc = np.full(len(flat_answers), np.nan)
        if idx:
            questions = [views[owners[k]].question for k in idx]
            res = judge.correct_many([(q, flat_answers[k], golds[k]) for q, k in zip(questions, idx)])
            acc[idx] = np.asarray(res, dtype=np.float64)
        cols["accuracy_judge"] = _group_mean(acc, owners, n)
    return cols


@dataclass(frozen=True)
class ScoringOptions:
    """How predictions are scored: the keyword arguments :func:`summarize`, :func:`summarize_with_details` and
    ``evaluate_model`` share (see :func:`summarize_with_details`)."""

    metrics: Sequence[Any] = DEFAULT_METRICS
    n_boot: int = 1000
    seed: int = 0
    embedding_model: str | None = None
    judge: Any = None
    confidence: float = 0.95

    def score(
        self,
        sets: Iterable[ParaphraseSet | Mapping[str, Any]] | None,
        predictions: Sequence[Mapping[str, Any]],
        source: str = "predictions",
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``(summary, per_set_rows)`` of ``predictions`` scored with these options."""
        return summarize_with_details(
            sets,
            predictions,
            metrics=self.metrics,
            n_boot=self.n_boot,
            seed=self.seed,
            embedding_model=self.embedding_model,
            judge=self.judge,
            confidence=self.confidence,
            source=source,
        )


def summarize(
    sets: Iterable[ParaphraseSet | Mapping[str, Any]] | None,
    predictions: Sequence[Mapping[str, Any]],
    metrics: Sequence[Any] = DEFAULT_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    embedding_model: str | None = None,
    judge: Any = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Flat summary of one model's predictions.

    Keys (every number is a mean over sets in [0, 1], with ``<key>_ci = [low, high]``, the
    percentile bootstrap interval over sets; ``None`` when it cannot be computed, then a
    ``<key>_note`` says why):

    * ``accuracy_em``, ``accuracy_f1``, ``accuracy_rouge_l`` (best over gold answers);
    * ``consistency_e2e_<m>`` for every metric ``m`` (``exact_match`` -> ``exact``);
    * ``consistency_generator_<m>`` when generator-level predictions are present;
    * ``consistency_retriever_jaccard``;
    * ``consistency_e2e_judge`` / ``accuracy_judge`` with a judge;
    * ``accuracy_rouge_l``, ``accuracy_bleu2``, ``accuracy_embedding`` instead for long-form data
      (``answer_form == "long"``; ``accuracy_note`` says so);
    * collapse figures: ``empty_answer_rate`` (share of answers empty after SQuAD normalisation)
      and ``cross_set_modal_answer_share`` (per set: share of its answers equal to
      ``cross_set_modal_answer``, the most common answer given in two or more different sets;
      the mean over sets equals the share of all answers when sets have equal size), with
      ``cross_set_modal_answer_sets`` (sets giving it) and ``cross_set_modal_answer_gold_sets``
      (of those, sets whose gold answers include it; ``None`` without gold);
      ``collapse_warnings``: a list of warnings (see :func:`collapse_warnings`), empty when none;
    * counts: ``num_sets``, ``num_predictions``, ``num_paraphrases``, ``num_sets_with_gold``;
      ``answer_form`` (``"short"``/``"long"`` from the median gold length, ``None`` without gold).
    """
    options = ScoringOptions(
        metrics=metrics, n_boot=n_boot, seed=seed, embedding_model=embedding_model, judge=judge, confidence=confidence
    )
    return options.score(sets, predictions)[0]


def numeric_keys(summary: Mapping[str, Any]) -> list[str]:
    """Keys of the summary numbers that have intervals (accuracy and consistency values)."""
    return [k for k in summary if f"{k}_ci" in summary and not k.endswith("_ci")]


__all__ += [
    "SetView",
    "views_from_sets",
    "views_from_predictions",
    "numeric_keys",
    "DataError",
    "check_sets_for_consistency",
    "LONG_FORM_WORDS",
]
