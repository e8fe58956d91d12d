"""The demo's report: the table and plot of one run, and the combined table of several seeds."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..eval.degeneration import degeneration_flags
from ..io import atomic_open, atomic_write_text
from .settings import ARM_LABELS

__all__ = [
    "COLUMNS",
    "add_warning_row",
    "combine_seeds",
    "json_default",
    "plot_summary",
    "policies",
    "print_table",
    "seeds_markdown",
]

#: Table columns: summary key -> header.
COLUMNS = (
    ("accuracy_em", "EM"),
    ("accuracy_f1", "F1"),
    ("consistency_e2e_exact", "cons e2e"),
    ("consistency_e2e_bleu2", "cons BLEU-2"),
    ("consistency_generator_exact", "cons gen"),
    ("consistency_retriever_jaccard", "cons retr"),
    ("frac_empty", "empty"),
    ("frac_sets_identical_wrong", "ident-wrong"),
    ("accuracy_em_clean_wordings", "EM clean wd"),
    ("accuracy_em_noisy_wordings", "EM noisy wd"),
)

#: Figures of the multi-seed table: the per-seed summary key and its header.
SEED_FIGURES = (
    ("accuracy_em", "EM"),
    ("consistency_e2e_exact", "consistency e2e"),
    ("consistency_generator_exact", "consistency generator"),
    ("frac_sets_identical_wrong", "identical & wrong"),
)


def policies(summary: Mapping[str, Any]) -> list[str]:
    """The policies of a summary in table order (the warm start first)."""
    return [key for key in ARM_LABELS if key in summary]


def print_table(summary: Mapping[str, Any]) -> None:
    """A rich table of every policy of ``summary``, with the reward time of each arm."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"PS-GRPO CPU demo — held-out sets (n={summary['base'].get('num_sets')}), "
        f"seed {summary['settings']['data']['seed']}"
    )
    table.add_column("policy", min_width=max(len(ARM_LABELS[k]) for k in policies(summary)))
    for _, label in COLUMNS:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("reward s", justify="right", no_wrap=True)
    warnings = []
    for key in policies(summary):
        row = summary[key]
        cells = ["-" if row.get(k) is None else f"{row[k]:.3f}" for k, _ in COLUMNS]
        seconds = summary.get("train_stats", {}).get(key, {}).get("reward_seconds")
        cells.append("-" if seconds is None else f"{seconds:.2f}")
        table.add_row(ARM_LABELS[key], *cells)
        warnings += [(ARM_LABELS[key], add_warning_row(table, row, len(cells)))]
    console = Console()
    if not console.is_terminal and console.width < 160:
        console = Console(width=160)
    console.print(table)
    print_warning_lines(console, warnings)


def add_warning_row(table: Any, row: Mapping[str, Any], n_cells: int) -> list[str]:
    """Under a degenerate policy's row, a red warning row (:func:`grpo_sim.eval.degeneration.degeneration_flags`:
    empty or repetitive answers, one answer for different questions, consistent but wrong); returns the flags
    (none: no row), which :func:`print_warning_lines` prints in full below the table."""
    from rich.text import Text

    flags = degeneration_flags(row)
    if flags:  # the flags in full go below the table (print_warning_lines): a long cell would wrap the table
        table.add_row(Text("  ^ WARNING: degenerate answers", style="bold red"), *[""] * n_cells)
    return flags


def print_warning_lines(console: Any, warnings: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Below a table, one unwrapped line per degenerate policy: ``warning: <policy>: <flags>``."""
    from rich.markup import escape

    for label, flags in warnings:
        if flags:
            console.print(
                f"[bold red]warning:[/bold red] {escape(label)}: degenerate answers: {escape('; '.join(flags))}",
                soft_wrap=True,
            )


def plot_summary(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Grouped bar chart of accuracy and the consistency levels for every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [c for c in COLUMNS if c[0] != "consistency_retriever_jaccard"][:5]
    keys = policies(summary)
    x = np.arange(len(cols))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    drew_ci = False
    for i, key in enumerate(keys):
        vals = [float(summary[key].get(k) or 0.0) for k, _ in cols]
        cis = [summary[key].get(f"{k}_ci") for k, _ in cols]  # bootstrap intervals from grpo_sim.eval
        yerr = None
        if all(isinstance(c, (list, tuple)) and len(c) == 2 and None not in c for c in cis):
            yerr = np.array([[v - c[0] for v, c in zip(vals, cis)], [c[1] - v for v, c in zip(vals, cis)]]).clip(0)
            drew_ci = True
        bars = ax.bar(
            x + (i - (len(keys) - 1) / 2) * width,
            vals,
            width,
            label=ARM_LABELS[key],
            yerr=yerr,
            capsize=2,
            error_kw={"elinewidth": 0.8, "alpha": 0.6},
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(x, [label for _, label in cols])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("held-out score")
    retriever = summary["base"].get("consistency_retriever_jaccard")
    ax.set_title(
        f"PS-GRPO CPU demo ({summary['base'].get('num_sets')} held-out sets"
        f"{', 95% CI' if drew_ci else ''}; retriever Jaccard {retriever or 0:.2f} for all)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=7, ncol=len(keys))
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
# Several seeds
# ------------------------------------------------------------------------------------------


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "min": None, "max": None, "sd": None}
    return {
        "mean": statistics.fmean(vals),
        "min": min(vals),
        "max": max(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
    }


def combine_seeds(
    summaries: Mapping[int, Mapping[str, Any]],
    figures: Sequence[tuple[str, str]] = SEED_FIGURES,
    labels: Mapping[str, str] = ARM_LABELS,
) -> dict[str, Any]:
    """The combined view of per-seed summaries: per policy and figure, the value at each seed and the spread
    (mean, min, max, sd); per comparison and figure, the paired difference and its interval at each seed and the
    spread of the differences; the reward time of every arm at each seed."""
    seeds = sorted(summaries)
    first = summaries[seeds[0]]
    out: dict[str, Any] = {
        "seeds": seeds,
        "policies": {},
        "comparisons": {},
        "reward_seconds": {},
        "degeneration": {},
        "figures": [list(f) for f in figures],
        "labels": dict(labels),
    }
    for key in [k for k in labels if k in first]:
        out["policies"][key] = {}
        for fig, _ in figures:
            per_seed = {s: summaries[s][key].get(fig) for s in seeds}
            out["policies"][key][fig] = {"per_seed": per_seed, **_spread(list(per_seed.values()))}
        out["reward_seconds"][key] = {
            s: summaries[s].get("train_stats", {}).get(key, {}).get("reward_seconds") for s in seeds
        }
        out["degeneration"][key] = {s: degeneration_flags(summaries[s][key]) for s in seeds}
    for name in first.get("comparisons", {}):
        out["comparisons"][name] = {}
        for fig in first["comparisons"][name]:
            per_seed = {s: summaries[s]["comparisons"][name][fig] for s in seeds}
            out["comparisons"][name][fig] = {
                "per_seed": per_seed,
                "ci_excludes_zero_at_every_seed": all(
                    v["ci"] is not None and (v["ci"][0] > 0 or v["ci"][1] < 0) for v in per_seed.values()
                ),
                **_spread([v["diff"] for v in per_seed.values()]),
            }
    return out


def _fmt(v: float | None, signed: bool = False) -> str:
    return "-" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def seeds_markdown(
    combined: Mapping[str, Any], cpu: str | None = None, title: str = "PS-GRPO CPU demo", notes: Sequence[str] = ()
) -> str:
    """Markdown tables of :func:`combine_seeds`: policies by seed with the spread, then paired differences with
    their 95% intervals by seed."""
    seeds = combined["seeds"]
    labels = combined.get("labels", ARM_LABELS)
    lines = [f"# {title}, seeds {', '.join(map(str, seeds))}", ""]
    if cpu:
        lines += [
            f"Measured on {cpu}. Exact numbers differ across CPU types (different kernels make the runs "
            "diverge); the conclusions should not.",
            "",
        ]
    lines += [
        "| policy | figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min-max |",
        "|---|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for key, figs in combined["policies"].items():
        for fig, label in combined.get("figures", SEED_FIGURES):
            e = figs[fig]
            lines.append(
                f"| {labels[key]} | {label} | "
                + " | ".join(_fmt(e["per_seed"][s]) for s in seeds)
                + f" | {_fmt(e['mean'])} | {_fmt(e['min'])}-{_fmt(e['max'])} |"
            )
        flags = combined.get("degeneration", {}).get(key, {})
        if any(flags.get(s) for s in seeds):  # a degenerate arm gets a warning row
            lines.append(
                f"| **warning: {labels[key]}** | degenerate answers | "
                + " | ".join("; ".join(flags.get(s) or []) or "-" for s in seeds)
                + " | | |"
            )
    lines += [
        "",
        "Paired differences over the same held-out sets, 95% bootstrap interval per seed:",
        "",
        "| comparison | figure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | excludes 0 at all |",
        "|---|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for name, figs in combined["comparisons"].items():
        for fig, e in figs.items():
            cells = []
            for s in seeds:
                v = e["per_seed"][s]
                ci = v["ci"]
                cells.append(_fmt(v["diff"], True) + ("" if ci is None else f" [{ci[0]:+.3f}, {ci[1]:+.3f}]"))
            lines.append(
                f"| {name.replace('_minus_', ' - ')} | {fig} | "
                + " | ".join(cells)
                + f" | {_fmt(e['mean'], True)} | {'yes' if e['ci_excludes_zero_at_every_seed'] else 'no'} |"
            )
    lines += [
        "",
        "Seconds spent in the reward functions per arm:",
        "",
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for key, per_seed in combined["reward_seconds"].items():
        if key == "base":
            continue
        lines.append(f"| {labels[key]} | " + " | ".join(_fmt(per_seed[s]) for s in seeds) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for a demo summary: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_seeds_report(
    out: Path,
    summaries: Mapping[int, Mapping[str, Any]],
    cpu: str | None,
    figures: Sequence[tuple[str, str]] = SEED_FIGURES,
    labels: Mapping[str, str] = ARM_LABELS,
    title: str = "PS-GRPO CPU demo",
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``seeds.json`` and ``seeds.md`` in ``out`` (the markdown is written last); ``figures`` ((summary key, label)
    pairs) and ``labels`` (policy key -> row label) default to the short demo's."""
    combined = combine_seeds(summaries, figures, labels)
    combined["cpu"] = cpu
    combined.update(extra or {})
    atomic_write_text(out / "seeds.json", json.dumps(combined, indent=2, default=str))
    atomic_write_text(out / "seeds.md", seeds_markdown(combined, cpu, title, notes))
    return combined
