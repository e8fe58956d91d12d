"""One trial: its directory and recipe, the training subprocess (heartbeat, pruning, timeout, signals) and
its outcome, told to the study."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..io import atomic_write_text
from ..recipe import RecipeError, parse_recipe
from ..signals import StopSignals
from . import studies
from .objective import MetricWatcher, ObjectiveError, read_objective
from .spec import TRIAL_LOG, TRIAL_RECIPE, Sweep
from .studies import enqueue_retry, import_optuna, worker_id

POLL_S = 0.5  # how often the running trial is checked (exit, new metrics, signals, timeout)


class SweepInterrupted(Exception):
    """The sweep process got SIGINT/SIGTERM; the running trial was stopped and will rerun next time."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


_CHILD_SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: die with the sweep
except (OSError, AttributeError):  # not glibc: the parent check below still catches a dead sweep
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(143)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"grpo-sim sweep: cannot run {sys.argv[2]!r}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)
"""


@dataclasses.dataclass
class TrialOutcome:
    state: str  # COMPLETE | FAIL | PRUNED
    value: float | None = None
    error: str | None = None
    returncode: int | None = None
    parts: dict[str, float] | None = None
    pruned_step: int | None = None


def _log_tail(path: Path, skip: int = 0, lines: int = 1) -> str:
    """The last lines the trial printed (after the sweep's own header line), for the failure message."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(skip, fh.tell() - 8192))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return " | ".join(kept[-lines:])[-400:]


def _fresh_trial_dir(trial_dir: Path) -> None:
    if trial_dir.exists() and any(trial_dir.iterdir()):  # left by an earlier study with the same output_dir
        trial_dir.rename(trial_dir.with_name(f"{trial_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    trial_dir.mkdir(parents=True, exist_ok=True)


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the trial's process group (the trainer saves and stops), SIGKILL what is left after ``grace``."""

    def send(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    if proc.poll() is not None:
        return
    send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait for the checkpoint
        send(signal.SIGKILL)
        raise
    finally:
        send(signal.SIGKILL)  # stragglers of the group (launcher workers)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def check_stop(stop: StopSignals | None) -> None:
    """Raise SweepInterrupted once the sweep process got SIGTERM/SIGINT."""
    if stop is not None and stop.signum is not None:
        raise SweepInterrupted(stop.signum)


def run_trial(sweep: Sweep, study, trial, log=print, stop: StopSignals | None = None) -> TrialOutcome:
    """Run one asked trial end to end and tell the study. Re-raises SweepInterrupted after recording it."""
    optuna = import_optuna()
    number = trial.number
    trial_dir = sweep.trials_dir / f"trial-{number:04d}"
    log_path = trial_dir / TRIAL_LOG
    recipe_path = trial_dir / TRIAL_RECIPE
    study.heartbeat(number)
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("trial_dir", str(trial_dir))
    trial.set_user_attr("log", str(log_path))
    start = time.time()
    outcome: TrialOutcome
    try:
        params = {key: spec.suggest(trial, key) for key, spec in sweep.spec.parameters.items()}
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        log(f"trial {number}: {shown} -> {trial_dir}")
        _fresh_trial_dir(trial_dir)
        try:
            raw = sweep.trial_raw(params)
            text = (
                f"# grpo-sim sweep {sweep.name!r}, trial {number}: {sweep.base_recipe} with {shown}\n"
                + yaml.safe_dump(raw, sort_keys=False)
            )
            atomic_write_text(recipe_path, text)
            parse_recipe(raw, source=str(recipe_path))
            check_stop(stop)
        except RecipeError as exc:
            outcome = TrialOutcome("FAIL", error=f"invalid recipe: {exc}")
        else:
            outcome = _launch(sweep, study, trial, trial_dir, recipe_path, log_path, start, stop)
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        interrupted: BaseException | None = exc
        why = exc if isinstance(exc, SweepInterrupted) else "interrupted"
        outcome = TrialOutcome("FAIL", error=f"interrupted: the sweep was stopped ({why}) while it ran")
    else:
        interrupted = None
    attrs: dict[str, Any] = {
        "duration_s": round(time.time() - start, 3),
        "returncode": outcome.returncode,
        "error": outcome.error,
        "objective_parts": outcome.parts,
        "interrupted": True if interrupted is not None else None,
    }
    try:
        for key, value in attrs.items():
            if value is not None:
                trial.set_user_attr(key, value)
        if outcome.state == "COMPLETE":
            study.tell(trial, outcome.value)
        else:
            study.tell(trial, state=getattr(optuna.trial.TrialState, outcome.state))
    except optuna.exceptions.UpdateFinishedTrialError:  # declared dead by another worker (no heartbeat)
        outcome = TrialOutcome(
            "FAIL", error="another worker marked this trial failed (its heartbeat was late); the result was dropped"
        )
        interrupted = None
    if interrupted is not None:
        enqueue_retry(study, study.rdb.get_trial(study.trial_id(number)))
        raise interrupted
    return outcome


def _command(sweep: Sweep, recipe_path: Path, trial_dir: Path, number: int) -> tuple[list[str], dict[str, str]]:
    values = {
        "python": sys.executable,
        "recipe": str(recipe_path),
        "trial_dir": str(trial_dir),
        "trial_number": str(number),
        "name": sweep.name,
    }
    argv = [arg.format(**values) for arg in sweep.spec.launch.command]
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPO_SIM_SWEEP=sweep.name, GRPO_SIM_SWEEP_TRIAL=str(number))
    env.update({k: v.format(**values) for k, v in sweep.spec.launch.env.items()})
    return argv, env


def _launch(
    sweep: Sweep,
    study,
    trial,
    trial_dir: Path,
    recipe_path: Path,
    log_path: Path,
    start: float,
    stop: StopSignals | None,
) -> TrialOutcome:
    spec = sweep.spec
    argv, env = _command(sweep, recipe_path, trial_dir, trial.number)
    trial.set_user_attr("command", argv)
    pruning = spec.pruning
    watcher = MetricWatcher(trial_dir / "metrics.jsonl", pruning.metric.partition(":")[2]) if pruning else None
    sign = 1.0
    if pruning and (pruning.direction or spec.objective.direction) != spec.objective.direction:
        sign = -1.0  # the pruner compares in the study's direction
    reported: set[int] = set()
    last_beat = time.time()
    pruned_step = None
    timed_out = False
    with open(log_path, "ab") as log_fh:
        header = f"$ {shlex.join(argv)}\n".encode()
        log_fh.write(header)
        log_fh.flush()
        skip = log_fh.tell()
        shim = [sys.executable, "-c", _CHILD_SHIM, str(os.getpid())] if sys.platform == "linux" else []
        try:
            proc = subprocess.Popen(
                [*shim, *argv],
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return TrialOutcome("FAIL", error=f"cannot start {argv[0]!r}: {exc}")
        try:
            while True:
                try:
                    returncode = proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    returncode = None
                if time.time() - last_beat >= studies.HEARTBEAT_S:
                    study.heartbeat(trial.number)
                    last_beat = time.time()
                if watcher is not None:
                    for step, value in watcher.poll():
                        if step in reported:
                            continue
                        reported.add(step)
                        trial.report(sign * value, step)
                        if returncode is None and trial.should_prune():
                            pruned_step = step
                            break
                if returncode is not None:
                    break
                check_stop(stop)
                if pruned_step is not None:
                    _kill_group(proc, spec.launch.kill_grace_s)
                    break
                if spec.timeout_s and time.time() - start > spec.timeout_s:
                    timed_out = True
                    _kill_group(proc, spec.launch.kill_grace_s)
                    break
        except BaseException:
            _kill_group(proc, spec.launch.kill_grace_s)
            raise
    returncode = proc.returncode
    if pruned_step is not None:
        return TrialOutcome(
            "PRUNED",
            returncode=returncode,
            pruned_step=pruned_step,
            error=f"pruned at step {pruned_step} ({pruning.metric})",
        )
    if timed_out:
        return TrialOutcome("FAIL", returncode=returncode, error=f"timed out after {spec.timeout_s:g} s")
    if returncode != 0:
        how = (
            f"killed by {signal.Signals(-returncode).name}"
            if returncode < 0 and -returncode in signal.valid_signals()
            else f"exit code {returncode}"
        )
        tail = _log_tail(log_path, skip)
        return TrialOutcome("FAIL", returncode=returncode, error=f"{how}" + (f": {tail}" if tail else ""))
    try:
        value, parts = read_objective(spec.objective, trial_dir)
    except (ObjectiveError, OSError, json.JSONDecodeError) as exc:
        return TrialOutcome("FAIL", returncode=0, error=f"objective: {exc}")
    return TrialOutcome("COMPLETE", value=value, returncode=0, parts=parts)
