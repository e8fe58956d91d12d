"""The sweep loop (``run_sweep``: ask, run, tell until the budget is spent) and the ``grpo-sim sweep`` command."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Optional

import typer

from ..recipe import RecipeError
from ..signals import StopSignals
from .report import ReportFiles, write_report
from .spec import TRIAL_LOG, Sweep, SweepError, load_sweep
from .studies import SWEEP_ATTR, base_recipe_digest, best_trial, budget_status, open_study, quiet_optuna, recover_stale
from .trials import SweepInterrupted, TrialOutcome, check_stop, run_trial


@dataclasses.dataclass
class SweepResult:
    name: str
    output_dir: Path
    storage: str
    ran: list[int]
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    report: "ReportFiles | None" = None


def run_sweep(
    sweep: Sweep | str | os.PathLike[str],
    worker: bool = False,
    n_trials: int | None = None,
    report: bool = True,
    log=None,
) -> SweepResult:
    """Run (or continue) a sweep until its budget is spent. ``worker``: join it, write no report."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, n_trials=n_trials)
    elif n_trials is not None:
        sweep = dataclasses.replace(sweep, n_trials=min(n_trials, sweep.n_trials) if sweep.grid else n_trials)
    log = log or _stderr_log
    sweep.output_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(sweep, create=True, sampler_offset=(os.getpid() if worker else 0))
    stored = study.user_attrs.get(SWEEP_ATTR) or {}
    if stored.get("base_recipe_sha256") not in (None, base_recipe_digest(sweep)):
        log(f"note: {sweep.base_recipe} changed since this study started; new trials use the current version")
    ran: list[int] = []
    interrupted: SweepInterrupted | None = None
    stop = StopSignals()  # a second signal raises KeyboardInterrupt at once
    with stop:
        try:
            recovered = recover_stale(study)
            if recovered:
                log(f"trial(s) {', '.join(map(str, recovered))} were interrupted; running them again")
            while True:
                trials = study.get_trials(deepcopy=False)
                done, running = budget_status(trials)
                if done + running >= sweep.n_trials:
                    break
                check_stop(stop)
                with quiet_optuna():  # "heartbeat is supposed to be used with Study.optimize": we beat ourselves
                    trial = study.ask()
                outcome = run_trial(
                    sweep, study, trial, log=lambda m, d=done: log(f"[{d + 1}/{sweep.n_trials}] {m}"), stop=stop
                )
                ran.append(trial.number)
                log(_outcome_line(trial.number, outcome, sweep))
                recover_stale(study)
        except SweepInterrupted as exc:
            interrupted = exc
        except KeyboardInterrupt:
            interrupted = SweepInterrupted(signal.SIGINT)
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    best = best_trial(study)
    result = SweepResult(
        sweep.name,
        sweep.output_dir,
        sweep.storage,
        ran,
        counts,
        best.number if best else None,
        best.value if best else None,
    )
    if report and not worker:
        result.report = write_report(sweep, study)
    if interrupted is not None:
        raise interrupted
    return result


def _outcome_line(number: int, outcome: TrialOutcome, sweep: Sweep) -> str:
    if outcome.state == "COMPLETE":
        return f"trial {number} COMPLETE: objective {outcome.value:.6g}"
    where = sweep.trials_dir / f"trial-{number:04d}" / TRIAL_LOG
    return f"trial {number} {outcome.state}: {outcome.error} (log: {where})"


def _stderr_log(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold cyan]sweep[/bold cyan] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def sweep_command(
    sweep_file: Path = typer.Argument(..., help="sweep YAML (see recipes/sweeps/)"),
    report: bool = typer.Option(False, "--report", help="only print the trials table and write the report files"),
    worker: bool = typer.Option(
        False, "--worker", help="join the study (shared storage) and run trials until the budget is spent; no report"
    ),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="override the sweep's trial budget"),
) -> None:
    """Hyper-parameter sweep over a recipe (Optuna: grid, random, TPE); rerun to continue an interrupted one."""
    try:
        sweep = load_sweep(sweep_file, n_trials=n_trials)
        if report:
            write_report(sweep)
            return
        result = run_sweep(sweep, worker=worker)
    except SweepInterrupted as stop:
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]sweep stopped ({stop})[/yellow]; the running trial will run again. "
            f"Continue with:\n  grpo-sim sweep {sweep_file}",
            highlight=False,
        )
        raise typer.Exit(128 + stop.signum)
    except (SweepError, RecipeError) as exc:
        _fail(str(exc))
    if worker:
        counts = ", ".join(f"{v} {k.lower()}" for k, v in result.counts.items() if v)
        _stderr_log(f"worker done: ran trial(s) {result.ran or 'none'}; study {result.name}: {counts}")


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(sweep_command)
    app()


if __name__ == "__main__":
    main()
