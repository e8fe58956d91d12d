"""Degenerate answers, as pure functions with named thresholds: repeated tokens or phrases, empty answers and one
answer for every input.

A similarity reward is maximised by one degenerate answer ("The The The ...", "York York York ...", nothing, or the
same string for every question), and such answers score high consistency. These functions find them in any list of
answers (the answers of paraphrase sets or of ordinary rows); the evaluation summaries, the end-of-run summary, the
demo tables and the sweep table show their warnings next to the scores.

* **Repetition** (:func:`grpo_sim.similarity.text.is_repetitive`, in the core so that training can log it too): an
  answer is *repetitive* when a phrase of 1 to :data:`REPEAT_MAX_PHRASE_WORDS` words occurs
  :data:`REPEAT_MIN_COPIES` or more times in a row (words compared lower-cased, punctuation at their edges removed):
  ``"The The The"``, ``"York York York"``, ``"new york new york new york"``. Warned at
  :data:`REPETITIVE_ANSWER_WARN_RATE` of the answers.
* **Empty answers**: no word after SQuAD normalisation (:func:`grpo_sim.similarity.text.normalize_answer`), warned at
  :data:`EMPTY_ANSWER_WARN_RATE`.
* **Consistent but wrong** (result tables): consistency at least :data:`CONSISTENT_WRONG_MIN_CONSISTENCY` with
  accuracy at most :data:`CONSISTENT_WRONG_MAX_ACCURACY` (the demo's ``--quick`` arms: consistency 1.000, EM 0).
* **One answer for every input**: the most common (SQuAD-normalised, non-empty) answer given to two or more
  different inputs; warned when its share of the answers reaches :data:`MODAL_ANSWER_WARN_SHARE`, unless it is a
  reference answer of every input that gets it (questions whose answer really is ``yes``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from ..similarity.text import (
    REPEAT_MAX_PHRASE_WORDS,
    REPEAT_MIN_COPIES,
    REPETITIVE_ANSWER_WARN_RATE,
    is_repetitive,
    normalize_answer,
    repetitive_answer_rate,
)

__all__ = [
    "EMPTY_ANSWER_WARN_RATE",
    "MODAL_ANSWER_WARN_SHARE",
    "REPEAT_MAX_PHRASE_WORDS",
    "REPEAT_MIN_COPIES",
    "REPETITIVE_ANSWER_WARN_RATE",
    "CONSISTENT_WRONG_MAX_ACCURACY",
    "CONSISTENT_WRONG_MIN_CONSISTENCY",
    "degeneration_figures",
    "degeneration_flags",
    "degeneration_warnings",
    "is_repetitive",
    "modal_answer",
    "repetition_warning",
    "repetitive_answer_rate",
]

#: warn (possible collapse) when at least this share of the answers is empty after normalisation
EMPTY_ANSWER_WARN_RATE = 0.2
#: warn (possible collapse) when at least this share of the answers is one answer given to different inputs;
#: a healthy model repeats an answer across questions only where their gold answers coincide (yes/no)
MODAL_ANSWER_WARN_SHARE = 0.3
#: a result row with consistency at least this high ...
CONSISTENT_WRONG_MIN_CONSISTENCY = 0.9
#: ... and accuracy at most this low is flagged: the same wrong answer to every wording is not a gain
CONSISTENT_WRONG_MAX_ACCURACY = 0.1


def modal_answer(
    answers: Sequence[str], inputs: Sequence[Any], references: Sequence[Sequence[str] | str | None] | None = None
) -> dict[str, Any]:
    """The most common non-empty normalised answer given to two or more different ``inputs`` (ids; the answers of
    one input may agree with each other, that is consistency). ``{"answer", "share", "inputs", "reference_inputs"}``:
    its share of all answers, how many different inputs got it, and of those, how many have it among their
    ``references`` (None without references). ``answer`` is None (share 0) when no answer is shared."""
    if len(answers) != len(inputs):
        raise ValueError(f"modal_answer: {len(answers)} answers but {len(inputs)} inputs")
    normalised = [normalize_answer(a) for a in answers]
    owners: dict[str, set] = {}
    for a, who in zip(normalised, inputs):
        if a:
            owners.setdefault(a, set()).add(who)
    counts = Counter(a for a in normalised if a)
    shared = [a for a in counts if len(owners[a]) >= 2]
    if not shared:
        return {"answer": None, "share": 0.0, "inputs": 0, "reference_inputs": None}
    best = min(shared, key=lambda a: (-counts[a], -len(owners[a]), a))
    reference_inputs = None
    if references is not None:
        refs_of: dict[Any, set[str]] = {}
        for who, refs in zip(inputs, references):
            refs = [refs] if isinstance(refs, str) else list(refs or [])
            refs_of.setdefault(who, set()).update(normalize_answer(r) for r in refs)
        reference_inputs = sum(1 for who in owners[best] if best in refs_of.get(who, ()))
    return {
        "answer": best,
        "share": counts[best] / len(answers),
        "inputs": len(owners[best]),
        "reference_inputs": reference_inputs,
    }


def degeneration_figures(
    answers: Sequence[str],
    inputs: Sequence[Any] | None = None,
    references: Sequence[Sequence[str] | str | None] | None = None,
) -> dict[str, Any]:
    """``empty_answer_rate``, ``repetitive_answer_rate`` and the modal answer (``modal_answer``,
    ``modal_answer_share``, ``modal_answer_inputs``, ``modal_answer_reference_inputs``) of ``answers``; ``inputs``
    (one id per answer: the row, or the set of a wording) default to one input per answer."""
    inputs = list(range(len(answers))) if inputs is None else list(inputs)
    modal = modal_answer(answers, inputs, references)
    return {
        "empty_answer_rate": sum(1 for a in answers if not normalize_answer(a)) / len(answers) if answers else 0.0,
        "repetitive_answer_rate": repetitive_answer_rate(answers),
        "modal_answer": modal["answer"],
        "modal_answer_share": modal["share"],
        "modal_answer_inputs": modal["inputs"],
        "modal_answer_reference_inputs": modal["reference_inputs"],
    }


def repetition_warning(rate: float | None, who: str | None = None) -> list[str]:
    """The repetition warning for a ``repetitive_answer_rate`` at or above :data:`REPETITIVE_ANSWER_WARN_RATE`."""
    if rate is None or rate < REPETITIVE_ANSWER_WARN_RATE:
        return []
    prefix = f"{who}: " if who else ""
    return [
        f"{prefix}{100 * rate:.0f}% of the answers repeat a word or phrase {REPEAT_MIN_COPIES}+ times in a row "
        f"(e.g. 'The The The'; warning at {100 * REPETITIVE_ANSWER_WARN_RATE:.0f}%): degenerate output, whatever "
        "the scores say"
    ]


def degeneration_warnings(figures: Mapping[str, Any], who: str | None = None) -> list[str]:
    """Warnings for :func:`degeneration_figures` at or above their thresholds (empty list when none is)."""
    prefix = f"{who}: " if who else ""
    out: list[str] = []
    empty = figures.get("empty_answer_rate")
    if empty is not None and empty >= EMPTY_ANSWER_WARN_RATE:
        out.append(
            f"{prefix}{100 * empty:.0f}% of the answers are empty (warning at {100 * EMPTY_ANSWER_WARN_RATE:.0f}%): "
            "degenerate output; empty answers agree with each other"
        )
    out += repetition_warning(figures.get("repetitive_answer_rate"), who)
    share, answer = figures.get("modal_answer_share"), figures.get("modal_answer")
    n_inputs, ref_inputs = figures.get("modal_answer_inputs"), figures.get("modal_answer_reference_inputs")
    if answer is not None and share is not None and share >= MODAL_ANSWER_WARN_SHARE:
        if not (ref_inputs is not None and n_inputs and ref_inputs >= n_inputs):
            out.append(
                f"{prefix}{100 * share:.0f}% of the answers are {answer!r}, given to {n_inputs} different inputs "
                f"(warning at {100 * MODAL_ANSWER_WARN_SHARE:.0f}%): one answer for every input is degenerate output"
            )
    return out


def degeneration_flags(
    summary: Mapping[str, Any],
    consistency_key: str | None = "consistency_e2e_exact",
    accuracy_key: str | None = "accuracy_em",
) -> list[str]:
    """Short flags for one row of a result table (an evaluation summary): ``"empty answers 100%"``,
    ``"repetitive answers 80%"``, ``"one answer for different inputs 75%"`` (the set evaluation's cross-set modal
    answer, or the row evaluation's modal answer, unless it is the gold answer of every input giving it) and
    ``"consistent but wrong (consistency 1.000, accuracy 0.000)"``, each at its named threshold; empty when none."""
    flags = []
    empty = summary.get("empty_answer_rate")
    if empty is not None and empty >= EMPTY_ANSWER_WARN_RATE:
        flags.append(f"empty answers {100 * empty:.0f}%")
    repetitive = summary.get("repetitive_answer_rate")
    if repetitive is not None and repetitive >= REPETITIVE_ANSWER_WARN_RATE:
        flags.append(f"repetitive answers {100 * repetitive:.0f}%")
    for share_key, inputs_key, gold_key, answer_key in (
        ("cross_set_modal_answer_share", "cross_set_modal_answer_sets", "cross_set_modal_answer_gold_sets", None),
        ("modal_answer_share", "modal_answer_inputs", "modal_answer_reference_inputs", "modal_answer"),
    ):
        share = summary.get(share_key)
        if share is None or share < MODAL_ANSWER_WARN_SHARE or (answer_key and summary.get(answer_key) is None):
            continue
        inputs, gold = summary.get(inputs_key), summary.get(gold_key)
        if gold is not None and inputs and gold >= inputs:
            continue
        if share_key == "cross_set_modal_answer_share" and summary.get("cross_set_modal_answer") == "" and empty:
            continue  # the empty answer: already flagged as empty
        flags.append(f"one answer for different inputs {100 * share:.0f}%")
    consistency = summary.get(consistency_key) if consistency_key else None
    accuracy = summary.get(accuracy_key) if accuracy_key else None
    if (
        consistency is not None
        and accuracy is not None
        and consistency >= CONSISTENT_WRONG_MIN_CONSISTENCY
        and accuracy <= CONSISTENT_WRONG_MAX_ACCURACY
    ):
        flags.append(f"consistent but wrong (consistency {consistency:.3f}, accuracy {accuracy:.3f})")
    return flags
