"""An evaluation result for a reader: ``report.md`` (:func:`render_report`), the PNG plots (:func:`make_plots`),
the rich summary table (:func:`print_summary_table`) and the collapse warnings shown with each."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..io import atomic_write_bytes
from .degeneration import REPEAT_MIN_COPIES, REPETITIVE_ANSWER_WARN_RATE
from .metrics import EMPTY_ANSWER_WARN_RATE, MODAL_ANSWER_WARN_SHARE, collapse_warnings, numeric_keys
from .results import PLOT_BARS, PLOT_HIST, PLOT_POSITION

if TYPE_CHECKING:
    from .results import ModelResult

__all__ = [
    "COLLAPSE_KEYS",
    "collapse_lines",
    "make_plots",
    "print_summary_table",
    "render_report",
    "encoder_lines",
    "result_warnings",
]

_LEVEL_TITLES = {"e2e": "end-to-end", "generator": "generator", "retriever": "retriever"}
_OTHER_TITLES = {
    "empty_answer_rate": "empty answers (share)",
    "cross_set_modal_answer_share": "one answer across different sets (share)",
    "repetitive_answer_rate": "repetitive answers (share)",
}
_ACC_TITLES = {
    "accuracy_em": "exact match (EM)",
    "accuracy_f1": "token F1",
    "accuracy_rouge_l": "ROUGE-L",
    "accuracy_bleu2": "BLEU-2 to the references",
    "accuracy_embedding": "embedding to the references",
    "accuracy_judge": "LLM judge",
}
#: the collapse figures, shown right after consistency wherever consistency is shown
COLLAPSE_KEYS = ("empty_answer_rate", "cross_set_modal_answer_share", "repetitive_answer_rate")


def _label(key: str) -> str:
    if key in _OTHER_TITLES:
        return _OTHER_TITLES[key]
    if key in _ACC_TITLES:
        return f"accuracy: {_ACC_TITLES[key]}"
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] == "consistency":
        return f"{_LEVEL_TITLES.get(parts[1], parts[1])} consistency: {parts[2]}"
    return key


def _fmt(v: Any, ci: Any = None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    s = f"{v:+.3f}" if signed else f"{v:.3f}"
    if ci:
        s += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return s


def _table_rows(result: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    models = result["models"]
    m = models["model"]
    b = models.get("baseline")
    diffs = (result.get("comparison") or {}).get("differences", {})
    rows = []
    for k in numeric_keys(m):
        rows.append(
            (
                k,
                _fmt(m.get(k), m.get(f"{k}_ci")),
                _fmt(b.get(k), b.get(f"{k}_ci")) if b is not None else None,
                _fmt(diffs[k]["diff"], diffs[k].get("ci"), signed=True)
                if k in diffs
                else ("n/a" if b is not None else None),
            )
        )
    return rows


def result_warnings(result: Mapping[str, Any]) -> list[str]:
    """Collapse warnings of every model in ``result`` (named), plus one about the comparison when the
    evaluated model collapses: its consistency gain over the baseline is then no evidence."""
    models = result.get("models") or {"model": result}
    out: list[str] = []
    for label, summ in models.items():
        out += collapse_warnings(summ, who=label)
    model_warned = bool(collapse_warnings(models.get("model") or {}))
    if model_warned and result.get("comparison"):
        out.append(
            "comparison: the model's consistency differences against the baseline come with collapse "
            "figures over the warning level; they do not show more consistent answers"
        )
    return out


def collapse_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line on the most common answer across different sets (empty when there is none)."""
    answer = summary.get("cross_set_modal_answer")
    if answer is None:
        return []
    gold = summary.get("cross_set_modal_answer_gold_sets")
    shown = "(empty)" if answer == "" else repr(answer)
    return [
        f"most common answer across different sets: {shown}, given in {summary.get('cross_set_modal_answer_sets')}"
        f" sets" + (f" (the gold answer of {gold} of them)" if gold is not None else "")
    ]


def encoder_lines(encoders: Mapping[str, str] | None) -> list[str]:
    """``- encoder of <key>: <model @ revision>`` for each embedding metric (nothing for a summary without any)."""
    return [f"- encoder of `{key}`: {name}" for key, name in (encoders or {}).items()]


def render_report(result: dict[str, Any]) -> str:
    """``report.md``: accuracy and consistency tables (value [95% CI]), notes and plots."""
    m = result["models"]["model"]
    b = result["models"].get("baseline")
    cfg = result.get("config", {})
    dec = cfg.get("decoding", {})
    lines = ["# Consistency evaluation", ""]
    lines.append(f"- model: `{m.get('name')}`")
    if b is not None:
        lines.append(f"- baseline: `{b.get('name')}`")
    if cfg.get("data"):
        lines.append(f"- data: `{cfg['data']}`")
    lines.append(
        f"- {m.get('num_sets')} paraphrase sets, {m.get('num_paraphrases')} paraphrases"
        f" ({m.get('num_sets_with_gold', 0)} sets with gold answers;"
        f" answer form: {m.get('answer_form') or 'n/a'})"
    )
    decoding = (
        "greedy"
        if not dec.get("do_sample")
        else f"sampling (temperature {dec.get('temperature')}, top-p {dec.get('top_p')})"
    )
    lines.append(
        f"- decoding: {decoding}, max {dec.get('max_new_tokens')} new tokens, seed {dec.get('seed')}; "
        f"mode: {cfg.get('mode')}"
    )
    lines += encoder_lines(cfg.get("encoders"))
    lines.append(
        f"- every number: mean over sets in [0, 1] with a {int(100 * cfg.get('confidence', 0.95))}% "
        f"percentile bootstrap interval over sets ({cfg.get('n_boot')} replicates); differences are "
        "paired over sets (model - baseline)"
    )
    lines.append("")
    warnings = result_warnings(result)
    if warnings:
        lines += ["## Warning: possible collapse", ""] + [f"> **warning:** {w}  " for w in warnings] + [""]
    rows = _table_rows(result)
    has_b = b is not None
    header = "| metric | model |" + (" baseline | difference |" if has_b else "")
    sep = "|---|---|" + ("---|---|" if has_b else "")
    for title, pred in (
        ("Accuracy", lambda k: k.startswith("accuracy_")),
        ("Consistency", lambda k: k.startswith("consistency_")),
        ("Collapse figures (read with consistency)", lambda k: k in COLLAPSE_KEYS),
        ("Other", lambda k: not k.startswith(("accuracy_", "consistency_")) and k not in COLLAPSE_KEYS),
    ):
        sel = [r for r in rows if pred(r[0])]
        if not sel:
            continue
        lines += [f"## {title}", "", header, sep]
        for k, mv, bv, dv in sel:
            lines.append(f"| {_label(k)} | {mv} |" + (f" {bv} | {dv} |" if has_b else ""))
        lines.append("")
        if title.startswith("Collapse"):
            for label, summ in (("model", m), ("baseline", b)):
                if summ is not None:
                    lines += [f"- {label}: {line}" for line in collapse_lines(summ)]
            lines += [
                f"- high values mean consistency may be bought with a degenerate answer; warnings at "
                f"{100 * EMPTY_ANSWER_WARN_RATE:.0f}% empty and {100 * MODAL_ANSWER_WARN_SHARE:.0f}% one "
                f"answer across different sets, {100 * REPETITIVE_ANSWER_WARN_RATE:.0f}% answers repeating a word or "
                f"phrase {REPEAT_MIN_COPIES}+ times in a row",
                "",
            ]
    notes = [f"- {k[:-5]}: {v}" for k, v in m.items() if k.endswith("_note") and v]
    if (result.get("comparison") or {}).get("note"):
        notes.append(f"- comparison: {result['comparison']['note']}")
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    files = result.get("files") or {}
    plots = [
        (PLOT_BARS, "Summary with 95% intervals"),
        (PLOT_HIST, "Per-set end-to-end consistency"),
        (PLOT_POSITION, "Accuracy by paraphrase position"),
    ]
    present = [(f, t) for f, t in plots if f in files.values()]
    if present:
        lines += ["## Plots", ""]
        for f, t in present:
            lines += [f"![{t}]({f})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _savefig(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def make_plots(
    out: Path, result: dict[str, Any], model_res: ModelResult, base_res: ModelResult | None
) -> dict[str, str]:
    """The PNG plots (matplotlib, Agg backend); returns ``{kind: file name}`` of those written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    entries = [("model", model_res)] + ([("baseline", base_res)] if base_res is not None else [])
    m = result["models"]["model"]
    keys = [k for k in numeric_keys(m) if m.get(k) is not None]
    colors = {"model": "#1f77b4", "baseline": "#aaaaaa"}

    # 1. bars with intervals (before/after when a baseline exists)
    if keys:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(keys) + 2), 4.2))
        width = 0.8 / len(entries)
        x = np.arange(len(keys))
        order = ([("baseline", base_res)] if base_res is not None else []) + [("model", model_res)]
        for j, (label, res) in enumerate(order):
            summ = res.summary
            vals = np.array([summ.get(k) if summ.get(k) is not None else np.nan for k in keys], dtype=float)
            err = np.zeros((2, len(keys)))
            for i, k in enumerate(keys):
                ci = summ.get(f"{k}_ci")
                if ci and np.isfinite(vals[i]):
                    err[:, i] = [max(0.0, vals[i] - ci[0]), max(0.0, ci[1] - vals[i])]
            name = (
                "before (baseline)" if label == "baseline" else ("after (model)" if base_res is not None else "model")
            )
            ax.bar(
                x + (j - (len(order) - 1) / 2) * width,
                np.nan_to_num(vals),
                width,
                yerr=err,
                capsize=3,
                label=name,
                color=colors[label],
            )
        ax.set_xticks(x)
        ax.set_xticklabels(
            [k.replace("consistency_", "cons_").replace("accuracy_", "acc_") for k in keys],
            rotation=35,
            ha="right",
            fontsize=8,
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean over sets (95% CI)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title("Accuracy and consistency")
        _savefig(fig, out / PLOT_BARS)
        plt.close(fig)
        files["plot_bars"] = PLOT_BARS

    # 2. distribution of per-set end-to-end consistency (first metric)
    cons_keys = [k for k in keys if k.startswith("consistency_e2e_")] or [
        k for k in keys if k.startswith("consistency_generator_")
    ]
    if cons_keys and model_res.per_set is not None:
        key = cons_keys[0]
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = np.linspace(0, 1, 21)
        for label, res in entries:
            if res.per_set is None:
                continue
            vals = [r.get(key) for r in res.per_set if r.get(key) is not None]
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{label} (n={len(vals)})", color=colors[label])
        ax.set_xlabel(key)
        ax.set_ylabel("sets")
        ax.set_title("Per-set consistency")
        ax.legend(fontsize=8)
        _savefig(fig, out / PLOT_HIST)
        plt.close(fig)
        files["plot_hist"] = PLOT_HIST

    # 3. accuracy by paraphrase position
    long_form = m.get("answer_form") == "long"
    position_fields = (
        (("rouge_l_by_position", "-o"),) if long_form else (("em_by_position", "-o"), ("f1_by_position", "--s"))
    )
    if model_res.per_set is not None and any(r.get(position_fields[0][0]) for r in model_res.per_set):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, res in entries:
            if res.per_set is None:
                continue
            for field_name, style in position_fields:
                series = [r.get(field_name) or [] for r in res.per_set]
                width = max((len(s) for s in series), default=0)
                if not width:
                    continue
                means = []
                for pos in range(width):
                    vals = [s[pos] for s in series if len(s) > pos and s[pos] is not None]
                    means.append(float(np.mean(vals)) if vals else np.nan)
                ax.plot(
                    np.arange(width),
                    means,
                    style,
                    color=colors[label],
                    label=f"{label} {field_name[: -len('_by_position')].replace('_', '-').upper()}",
                )
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("paraphrase position in set (0 = canonical)")
        ax.set_ylabel("accuracy (mean over sets)")
        ax.set_ylim(0, 1.05)
        ax.set_title("Accuracy by paraphrase position")
        ax.legend(fontsize=8)
        _savefig(fig, out / PLOT_POSITION)
        plt.close(fig)
        files["plot_position"] = PLOT_POSITION
    return files


def print_summary_table(result: dict[str, Any], console: Any = None) -> None:
    """A rich table of every summary number (value [95% CI]; baseline and paired difference)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    m = result["models"]["model"]
    b = result["models"].get("baseline")
    title = f"{m.get('name')}: {m.get('num_sets')} sets"
    table = Table(title=title, show_lines=False)
    table.add_column("metric")
    table.add_column("model [95% CI]", justify="right")
    if b is not None:
        table.add_column("baseline [95% CI]", justify="right")
        table.add_column("difference [95% CI]", justify="right")
    rows = _table_rows(result)
    order = (
        [r for r in rows if r[0].startswith(("accuracy_", "consistency_"))]
        + [r for r in rows if r[0] in COLLAPSE_KEYS]
        + [r for r in rows if not r[0].startswith(("accuracy_", "consistency_")) and r[0] not in COLLAPSE_KEYS]
    )
    for k, mv, bv, dv in order:
        table.add_row(_label(k), mv, *([bv, dv] if b is not None else []))
    console.print(table)
    for label, summ in (("model", m), ("baseline", b)):
        for line in collapse_lines(summ or {}):
            console.print(f"{label}: {escape(line)}", highlight=False)
    for k, v in m.items():
        if k.endswith("_note") and v:
            console.print(f"[dim]note ({k[:-5]}): {escape(str(v))}[/dim]")
    for warning in result_warnings(result):
        console.print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False, soft_wrap=True)
