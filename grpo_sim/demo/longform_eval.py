"""Evaluation and report of the long-form demo (:mod:`grpo_sim.demo.longform`): held-out figures per policy, paired
comparisons, the issue's target, the table and the plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import atomic_open
from .longform_settings import (
    ACCURACY_NOT_LOWER_MARGIN,
    COMPARED_KEYS,
    COMPARISONS,
    EVAL_METRICS,
    MAX_NEW_TOKENS,
    POLICIES,
)
from .longform_world import LONGFORM_TEMPLATE, mentions, phrasing_of
from .report import add_warning_row, print_warning_lines

# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def answer_figures(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """Per set: ``accuracy_entity`` (share of answers naming the gold entity), ``phrasing_agreement``
    (share of ordered paraphrase pairs using the same phrasing; an answer in none of the phrasings
    agrees with nothing) and ``identical_wrong`` (1 when every normalised answer is the same and
    not a gold phrasing)."""
    from ..similarity.text import normalize_answer

    rows = []
    for s, group in zip(sets, answers):
        rel, entity = s.metadata["relation"], s.metadata["entity"]
        forms = [phrasing_of(a, rel) for a in group]
        pairs = [(i, j) for i in range(len(group)) for j in range(len(group)) if i != j]
        norm = {normalize_answer(a) for a in group}
        rows.append(
            {
                "accuracy_entity": sum(mentions(a, entity) for a in group) / len(group),
                "phrasing_agreement": (
                    sum(forms[i] is not None and forms[i] == forms[j] for i, j in pairs) / len(pairs)
                    if pairs
                    else float("nan")
                ),
                "identical_wrong": float(len(norm) == 1 and not norm & {normalize_answer(g) for g in s.answers}),
            }
        )
    return rows


def evaluate_policy(path: str | os.PathLike[str], sets: Sequence[Any]) -> tuple[dict[str, Any], list[dict], list]:
    """Greedy end-to-end evaluation -> ``(summary, per_set_rows, answers)`` (answers per set, paraphrase order)."""
    from ..eval import generate_predictions, summarize_with_details
    from ..eval.metrics import bootstrap_ci
    from ..models import load_policy

    model, tok = load_policy(str(path))
    preds = generate_predictions(
        model,
        tok,
        sets,
        level="e2e",
        template=LONGFORM_TEMPLATE,
        max_new_tokens=MAX_NEW_TOKENS,
        batch_size=128,
        do_sample=False,
        progress=False,
    )
    table = {(p["set_id"], p["paraphrase_id"]): p["answer"] for p in preds}
    answers = [[table[(s.set_id, p.paraphrase_id)] for p in s.paraphrases] for s in sets]
    summary, per_set = summarize_with_details(sets, preds, metrics=EVAL_METRICS)
    extra = answer_figures(sets, answers)
    for row, more in zip(per_set, extra):
        row.update(more)
    for key in ("accuracy_entity", "phrasing_agreement"):
        values = [r[key] for r in extra]
        summary[key] = sum(values) / len(values)
        summary[f"{key}_ci"] = list(bootstrap_ci(values) or ()) or None
    summary["frac_empty"] = summary["empty_answer_rate"]
    summary["frac_sets_identical_wrong"] = sum(r["identical_wrong"] for r in extra) / len(extra)
    return summary, per_set, answers


def paired_comparisons(
    per_set: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0, n_boot: int = 2000
) -> dict[str, dict[str, Any]]:
    """``{"a_minus_b": {key: {"diff", "ci", "num_sets"}}}`` for :data:`COMPARISONS` and :data:`COMPARED_KEYS`."""
    from ..eval.metrics import paired_difference

    return {
        f"{a}_minus_{b}": {
            key: paired_difference(per_set[a], per_set[b], key, n_boot=n_boot, seed=seed) for key in COMPARED_KEYS
        }
        for a, b in COMPARISONS
        if a in per_set and b in per_set
    }


def target_check(comparisons: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's long-form target on PS-GRPO minus accuracy-only."""
    entry = comparisons["ps_grpo_minus_grpo_accuracy_only"]
    cons, acc = entry["consistency_e2e_bleu2"], entry["accuracy_f1"]
    cons_ok = cons["ci"] is not None and cons["ci"][0] > 0
    acc_ok = acc["ci"] is not None and acc["ci"][0] >= ACCURACY_NOT_LOWER_MARGIN
    return {
        "criterion": "PS-GRPO minus accuracy-only: consistency_e2e_bleu2 interval above 0 and accuracy_f1 "
        f"interval's lower end >= {ACCURACY_NOT_LOWER_MARGIN}",
        "consistency_bleu2_interval_above_0": cons_ok,
        "accuracy_f1_not_lower": acc_ok,
        "met": cons_ok and acc_ok,
    }


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

ROW_LABELS = {"base": "warm start", "grpo_accuracy_only": "GRPO acc.-only", "ps_grpo": "PS-GRPO"}
COLUMNS = (
    ("accuracy_f1", "acc F1"),
    ("accuracy_rouge_l", "acc ROUGE-L"),
    ("accuracy_entity", "acc entity"),
    ("consistency_e2e_bleu2", "cons BLEU-2"),
    ("consistency_e2e_embedding", "cons emb"),
    ("consistency_e2e_exact", "cons exact"),
    ("phrasing_agreement", "same phrasing"),
    ("frac_empty", "empty"),
    ("frac_sets_identical_wrong", "ident-wrong"),
)


def print_table(summary: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PS-GRPO long-form CPU demo — held-out sets (n={summary['base'].get('num_sets')})")
    table.add_column("policy", min_width=max(len(label) for label in ROW_LABELS.values()))
    for _, label in COLUMNS:
        table.add_column(label, justify="right", no_wrap=True)
    warnings = []
    for key in POLICIES:
        table.add_row(
            ROW_LABELS[key], *("-" if summary[key].get(k) is None else f"{summary[key][k]:.3f}" for k, _ in COLUMNS)
        )
        warnings.append((ROW_LABELS[key], add_warning_row(table, summary[key], len(COLUMNS))))
    console = Console()
    if not console.is_terminal and console.width < 130:
        console = Console(width=130)
    console.print(table)
    print_warning_lines(console, warnings)


def plot_summary(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Bar chart of the accuracy and consistency columns for the three policies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = COLUMNS[:7]
    x = np.arange(len(cols))
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, key in enumerate(POLICIES):
        bars = ax.bar(
            x + (i - 1) * 0.26, [float(summary[key].get(k) or 0.0) for k, _ in cols], 0.26, label=ROW_LABELS[key]
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(x, [label for _, label in cols], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("held-out score")
    ax.set_title(f"PS-GRPO long-form CPU demo ({summary['base'].get('num_sets')} held-out sets)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
    return path
