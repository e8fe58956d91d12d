"""The sweep's report: the trials table, trials.csv / trials.json, best_recipe.yaml and two plots."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..io import atomic_write_bytes, atomic_write_text
from ..validation import load_yaml
from .spec import TRIAL_RECIPE, Sweep
from .studies import best_trial, import_optuna, open_study, retry_of


@dataclasses.dataclass
class ReportFiles:
    trials_csv: Path
    trials_json: Path
    best_recipe: Path | None
    objective_plot: Path | None
    params_plot: Path | None
    rows: list[dict[str, Any]]


def trial_rows(study) -> list[dict[str, Any]]:
    trials = study.get_trials(deepcopy=False)
    reruns = {t.number: retry_of(t) for t in trials}
    retried_as = {original: t for t, original in reruns.items() if original is not None}
    rows = []
    now = time.time()
    for t in trials:
        attrs = t.user_attrs
        duration = attrs.get("duration_s")
        if duration is None and t.datetime_start is not None:
            end = t.datetime_complete.timestamp() if t.datetime_complete else now
            duration = round(end - t.datetime_start.timestamp(), 3)
        note = attrs.get("error") or ""
        if t.number in retried_as:
            note = (note + "; " if note else "") + f"rerun as trial {retried_as[t.number]}"
        if reruns[t.number] is not None:
            note = (note + "; " if note else "") + f"rerun of trial {reruns[t.number]}"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "objective": t.value if t.state.name == "COMPLETE" else None,
                "params": dict(t.params),
                "duration_s": duration,
                "objective_parts": attrs.get("objective_parts"),
                "returncode": attrs.get("returncode"),
                "trial_dir": attrs.get("trial_dir"),
                "log": attrs.get("log"),
                "error": attrs.get("error"),
                "note": note,
                "worker": attrs.get("worker"),
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())} or None,
                "degeneration": trial_degeneration(attrs.get("trial_dir")),
            }
        )
    return rows


def trial_degeneration(trial_dir: str | None) -> list[str]:
    """The degeneration flags of a trial's evaluation (``<trial>/eval/summary.json``; none without one): a trial
    whose answers are empty, repetitive, one answer for every input, or consistent but wrong is shown as such."""
    from ..eval.degeneration import degeneration_flags

    path = Path(trial_dir) / "eval" / "summary.json" if trial_dir else None
    if path is None or not path.is_file():
        return []
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return degeneration_flags(summary) if isinstance(summary, dict) else []


def write_report(sweep: Sweep, study=None, print_table: bool = True) -> ReportFiles:
    """Table on stdout, trials.csv/json, best_recipe.yaml and plots in the sweep's output directory."""
    if study is None:
        study = open_study(sweep, create=False)
    out = sweep.output_dir
    rows = trial_rows(study)
    best = best_trial(study)
    names = list(sweep.spec.parameters)
    atomic_write_text(
        out / "trials.json",
        json.dumps(
            {
                "sweep": str(sweep.path),
                "name": sweep.name,
                "storage": sweep.storage,
                "objective": sweep.spec.objective.describe(),
                "direction": sweep.spec.objective.direction,
                "best_trial": best.number if best else None,
                "trials": rows,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["number", "state", "objective", *names, "duration_s", "trial_dir", "log", "note", "degeneration"])
    for r in rows:
        writer.writerow(
            [
                r["number"],
                r["state"],
                "" if r["objective"] is None else r["objective"],
                *[r["params"].get(n, "") for n in names],
                r["duration_s"],
                r["trial_dir"],
                r["log"],
                r["note"],
                "; ".join(r.get("degeneration") or []),
            ]
        )
    atomic_write_text(out / "trials.csv", buf.getvalue())
    best_path = _write_best_recipe(sweep, best) if best else None
    objective_plot = params_plot = None
    if any(r["objective"] is not None for r in rows):
        objective_plot = _plot_objective(sweep, rows, out / "objective.png")
        params_plot = _plot_params(sweep, study, rows, out / "params.png")
    files = ReportFiles(out / "trials.csv", out / "trials.json", best_path, objective_plot, params_plot, rows)
    if print_table:
        _print_table(sweep, rows, best, files)
    return files


def _write_best_recipe(sweep: Sweep, best) -> Path:
    trial_recipe = Path(best.user_attrs.get("trial_dir", "")) / TRIAL_RECIPE
    if trial_recipe.is_file():  # exactly what the best trial ran
        raw = load_yaml(trial_recipe.read_text())
    else:
        raw = sweep.trial_raw(dict(best.params))
    shown = ", ".join(f"{k}={v}" for k, v in best.params.items())
    path = sweep.output_dir / "best_recipe.yaml"
    header = (
        f"# Best trial of sweep {sweep.name!r} ({sweep.path}): trial {best.number}, "
        f"objective {best.value:.6g} ({sweep.spec.objective.describe()}, {sweep.spec.objective.direction})\n"
        f"# base recipe {sweep.base_recipe} with {shown}\n"
        f"# run it:  grpo-sim train {path}\n"
    )
    atomic_write_text(path, header + yaml.safe_dump(raw, sort_keys=False))
    return path


def _short_names(names: list[str]) -> dict[str, str]:
    last = [n.rsplit(".", 1)[-1] for n in names]
    return {n: (s if last.count(s) == 1 else n) for n, s in zip(names, last)}


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _print_table(sweep: Sweep, rows, best, files: ReportFiles) -> None:
    from rich.console import Console
    from rich.table import Table

    names = list(sweep.spec.parameters)
    short = _short_names(names)
    table = Table(title=f"sweep {sweep.name}: {sweep.spec.objective.describe()} ({sweep.spec.objective.direction})")
    table.add_column("#", justify="right", no_wrap=True)
    for n in names:
        table.add_column(short[n], justify="right", no_wrap=True)
    table.add_column("objective", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("note / log", overflow="fold")
    for r in rows:
        status = r["state"] + (" *best" if best is not None and r["number"] == best.number else "")
        note = r["note"]
        if len(note) > 100:
            note = note[:97] + "..."
        if r["state"] == "FAIL" and r["log"]:
            where = _relative(Path(r["log"]), sweep.output_dir)
            note = f"{note} (log: {where})" if note else f"log: {where}"
        if r.get("degeneration"):
            flagged = "WARNING degenerate: " + "; ".join(r["degeneration"])
            note = f"{flagged}; {note}" if note else flagged
        table.add_row(
            str(r["number"]),
            *[_fmt(r["params"].get(n)) for n in names],
            _fmt(r["objective"]),
            status,
            "" if r["duration_s"] is None else f"{r['duration_s']:.0f} s",
            note,
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    lines = [f"trials: {files.trials_csv}, {files.trials_json}"]
    if files.best_recipe:
        lines.append(f"best: trial {best.number}, objective {best.value:.6g} -> {files.best_recipe}")
        best_flags = next((r.get("degeneration") for r in rows if r["number"] == best.number), None)
        if best_flags:
            lines.append(f"warning: the best trial's answers are degenerate ({'; '.join(best_flags)})")
    else:
        lines.append("best: no trial completed yet")
    if files.objective_plot:
        lines.append(f"plots: {files.objective_plot}" + (f", {files.params_plot}" if files.params_plot else ""))
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _save_figure(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _plot_objective(sweep: Sweep, rows, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    maximize = sweep.spec.objective.direction == "maximize"
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    done = [(r["number"], r["objective"]) for r in rows if r["objective"] is not None]
    ax.scatter([n for n, _ in done], [v for _, v in done], label="complete", zorder=3)
    best_x, best_y, current = [], [], None
    for n, v in done:
        current = v if current is None else (max(current, v) if maximize else min(current, v))
        best_x.append(n)
        best_y.append(current)
    ax.step(best_x, best_y, where="post", color="C1", label="best so far")
    low = min(v for _, v in done)
    for state, marker, color in (("FAIL", "x", "C3"), ("PRUNED", "v", "C7")):
        xs = [r["number"] for r in rows if r["state"] == state]
        if xs:
            ax.scatter(xs, [low] * len(xs), marker=marker, color=color, label=state.lower(), zorder=2)
    ax.set_xlabel("trial")
    ax.set_ylabel(sweep.spec.objective.describe())
    ax.set_title(f"sweep {sweep.name}: objective over trials ({sweep.spec.objective.direction})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save_figure(fig, path)


def _plot_params(sweep: Sweep, study, rows, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(sweep.spec.parameters)
    done = [r for r in rows if r["objective"] is not None]
    importances = None
    if len(names) >= 2 and len(done) >= max(4, 2 * len(names)):
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = import_optuna().importance.get_param_importances(study)
        except (ValueError, RuntimeError):  # too few distinct values, a single completed point, ...
            importances = None
    panels = len(names) + (1 if importances else 0)
    cols = min(3, panels)
    nrows = math.ceil(panels / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * nrows))
    FigureCanvasAgg(fig)
    index = 1
    if importances:
        ax = fig.add_subplot(nrows, cols, index)
        index += 1
        keys = list(importances)[::-1]
        ax.barh(keys, [importances[k] for k in keys], color="C2")
        ax.set_title("parameter importance")
        ax.tick_params(axis="y", labelsize=7)
    for name in names:
        ax = fig.add_subplot(nrows, cols, index)
        index += 1
        spec = sweep.spec.parameters[name]
        points = [(r["params"].get(name), r["objective"]) for r in done if name in r["params"]]
        xs = [p for p, _ in points]
        if any(isinstance(x, (str, bool)) or x is None for x in xs):
            labels = [str(v) for v in (spec.values or sorted({str(x) for x in xs}))]
            pos = {lab: i for i, lab in enumerate(labels)}
            ax.scatter([pos.get(str(x), -1) for x in xs], [v for _, v in points])
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            ax.scatter(xs, [v for _, v in points])
            if spec.log or (xs and min(xs) > 0 and max(xs) / min(xs) >= 100):
                ax.set_xscale("log")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("objective", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sweep {sweep.name}: objective by parameter")
    fig.tight_layout()
    return _save_figure(fig, path)
