"""The Optuna side of a sweep: its study and storage, samplers and pruner, reruns of interrupted trials,
and which sweep processes (workers) are still alive."""

from __future__ import annotations

import contextlib
import copy
import datetime
import itertools
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from .spec import Sweep, SweepError

SWEEP_ATTR = "grpo_sim_sweep"  # study user attr: what the study was created for (checked on reruns)
HEARTBEAT_S = 20  # a running trial's heartbeat in the storage ...
STALE_AFTER_S = 120  # ... and how old it may get before another process declares the trial dead
TPE_STARTUP_TRIALS = (2, 10)  # random trials before TPE models the space: a quarter of the budget, within these


def import_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@contextlib.contextmanager
def quiet_optuna():
    """Silence Optuna's experimental-feature and heartbeat-outside-optimize warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
        warnings.filterwarnings("ignore", category=import_optuna().exceptions.ExperimentalWarning)
        yield


def _grid_sampler(sweep: Sweep):
    optuna = import_optuna()
    keys = list(sweep.grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*sweep.grid.values())]
    space = {key: sweep.spec.parameters[key].distribution() for key in keys}

    class DeclaredOrderGridSampler(optuna.samplers.BaseSampler):
        """Trial k runs grid point k (declared order) in every process, so workers never pick the same point.

        A trial numbered past the grid (one that follows a rerun) takes the first point no trial holds yet.
        Unlike optuna's GridSampler it never calls ``study.stop()`` (which only works inside
        ``study.optimize``): the sweep loop counts the budget itself.
        """

        def infer_relative_search_space(self, study, trial):
            return dict(space)

        def sample_relative(self, study, trial, search_space):
            if trial.number < len(points):
                return dict(points[trial.number])
            held = [t.params for t in study.get_trials(deepcopy=False) if t.number != trial.number]
            free = [point for point in points if point not in held]
            return dict(free[0] if free else points[trial.number % len(points)])

        def sample_independent(self, study, trial, param_name, param_distribution):
            raise SweepError(
                f"{sweep.path}: parameters[{param_name}]: the grid point "
                f"{self.sample_relative(study, trial, space).get(param_name)!r} is outside "
                f"{param_distribution}"
            )

    return DeclaredOrderGridSampler()


def _make_sampler(sweep: Sweep, offset: int):
    optuna = import_optuna()
    seed = sweep.spec.seed
    if sweep.sampler == "grid":
        return _grid_sampler(sweep)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed + offset)
    low, high = TPE_STARTUP_TRIALS
    startup = min(high, max(low, sweep.n_trials // 4))
    return optuna.samplers.TPESampler(seed=seed + offset, n_startup_trials=startup)


def _make_pruner(sweep: Sweep):
    optuna = import_optuna()
    pruning = sweep.spec.pruning
    if pruning is None:
        return optuna.pruners.NopPruner()
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=pruning.startup_trials,
        n_warmup_steps=pruning.warmup_steps,
        interval_steps=pruning.interval_steps,
    )
    if pruning.patience:
        pruner = optuna.pruners.PatientPruner(pruner, patience=pruning.patience)
    return pruner


def _storage(sweep: Sweep, must_exist: bool = False):
    optuna = import_optuna()
    url = sweep.storage
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and db != ":memory:":
            if must_exist and not Path(db).exists():
                raise SweepError(
                    f"{sweep.path}: no study yet ({db} does not exist); run `grpo-sim sweep {sweep.path}` first"
                )
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    for attempt in range(4):  # workers starting together may race to create the tables
        try:
            with quiet_optuna():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=STALE_AFTER_S,
                    heartbeat_stale_trial_callback=enqueue_retry,
                )
        except (SQLAlchemyError, ImportError, ValueError) as exc:  # bad URL, missing driver, unreachable server
            if attempt == 3 or not re.search(r"already exists|locked|UNIQUE", str(exc)):
                raise SweepError(f"{sweep.path}: storage {url!r}: {exc}") from None
            time.sleep(0.5 + attempt)


def _study_class():
    optuna = import_optuna()

    class SweepStudy(optuna.Study):
        """An optuna Study that keeps the storage it was opened on, for what Optuna offers no Study/Trial API:
        a trial's heartbeat outside ``study.optimize`` and the attributes of another process's trial."""

        def __init__(self, study_name: str, storage, sampler, pruner):
            super().__init__(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
            self.rdb = storage

        def trial_id(self, number: int) -> int:
            study_id = self.rdb.get_study_id_from_name(self.study_name)
            return self.rdb.get_trial_id_from_study_id_trial_number(study_id, number)

        def heartbeat(self, number: int) -> None:
            self.rdb.record_heartbeat(self.trial_id(number))

    return SweepStudy


def open_study(sweep: Sweep, create: bool = True, sampler_offset: int = 0):
    """Create or load the sweep's study and check it was made for this sweep definition."""
    optuna = import_optuna()
    storage = _storage(sweep, must_exist=not create)
    try:
        if create:
            optuna.create_study(
                storage=storage, study_name=sweep.name, load_if_exists=True, direction=sweep.spec.objective.direction
            )
        study = _study_class()(sweep.name, storage, optuna.samplers.RandomSampler(), _make_pruner(sweep))
    except KeyError:
        raise SweepError(
            f"{sweep.path}: storage {sweep.storage} has no study named {sweep.name!r}; run "
            f"`grpo-sim sweep {sweep.path}` first"
        ) from None
    except (SQLAlchemyError, ValueError) as exc:
        raise SweepError(f"{sweep.path}: cannot open study {sweep.name!r} in {sweep.storage}: {exc}") from None
    mine = sweep.fingerprint()
    stored = study.user_attrs.get(SWEEP_ATTR)
    if stored is None and create:
        study.set_user_attr(
            SWEEP_ATTR, {**mine, "base_recipe": str(sweep.base_recipe), "base_recipe_sha256": base_recipe_digest(sweep)}
        )
    elif stored is not None:
        differ = [k for k in mine if stored.get(k) != mine[k]]
        if differ:
            raise SweepError(
                f"{sweep.path}: study {sweep.name!r} in {sweep.storage} was started with different "
                f"{', '.join(differ)} (stored: {json.dumps({k: stored.get(k) for k in differ})}). Rerun with the "
                "original settings, or give this sweep another name or output_dir/storage."
            )
    if study.direction.name.lower() != sweep.spec.objective.direction:
        raise SweepError(
            f"{sweep.path}: study {sweep.name!r} maximizes/minimizes differently "
            f"({study.direction.name.lower()}); give this sweep another name"
        )
    study.sampler = _make_sampler(sweep, sampler_offset + len(study.get_trials(deepcopy=False)))
    return study


def base_recipe_digest(sweep: Sweep) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(sweep.base_raw, sort_keys=True, default=str).encode()).hexdigest()


def enqueue_retry(study, frozen) -> None:
    """Queue a rerun of an interrupted trial with the same parameters (Optuna's stale-trial retry; the rerun
    starts with only ``retry_of`` as user attribute, not the interrupted trial's worker, error, ...)."""
    optuna = import_optuna()
    fresh = copy.deepcopy(frozen)
    fresh.user_attrs = {"retry_of": frozen.number}
    with quiet_optuna():
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, fresh)


def retry_of(trial) -> int | None:
    """The number of the trial that ``trial`` reruns (the latest one when a rerun was rerun), or None."""
    with quiet_optuna():
        history = import_optuna().storages.RetryHeartbeatStaleTrialCallback.retry_history(trial)
    return history[-1] if history else None


def _proc_start(pid: int) -> str:
    """The process's start time (clock ticks since boot) from /proc: tells a live pid from a reused one.
    Empty when there is no such (living) process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has finished
        return ""
    return fields[19]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_proc_start(os.getpid())}"


def _worker_alive(worker: str) -> bool | None:
    """True/False for a worker on this host; None when it ran elsewhere (the heartbeat decides)."""
    try:
        host, pid_text, start = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    if pid == os.getpid():
        return True
    if Path("/proc").is_dir() and Path("/proc/self/stat").exists():
        now = _proc_start(pid)
        return bool(now) and (not start or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_stale(study) -> list[int]:
    """Fail (and queue again) trials left RUNNING by sweep processes that died. Returns their numbers."""
    optuna = import_optuna()
    recovered = []
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = frozen.user_attrs.get("worker")
        if worker is None:  # died between ask() and its first heartbeat
            started = frozen.datetime_start
            if started is None or (datetime.datetime.now() - started).total_seconds() < STALE_AFTER_S:
                continue
            worker = "unknown"
        elif _worker_alive(worker) is not False:
            continue
        trial_id = study.trial_id(frozen.number)
        try:
            study.rdb.set_trial_user_attr(trial_id, "interrupted", True)
            study.rdb.set_trial_user_attr(
                trial_id, "error", f"interrupted: the sweep process {worker} died while it ran"
            )
            if not study.rdb.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process recovered it first
        enqueue_retry(study, study.rdb.get_trial(trial_id))
        recovered.append(frozen.number)
    with quiet_optuna():  # other hosts: heartbeat older than STALE_AFTER_S
        before = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    return recovered + sorted(before - after)


def _superseded(trials) -> set[int]:
    """Trials that were interrupted and rerun (they do not count against the budget)."""
    out = {number for number in map(retry_of, trials) if number is not None}
    out |= {t.number for t in trials if t.user_attrs.get("interrupted")}
    return out


def budget_status(trials) -> tuple[int, int]:
    """(finished trials that count, trials running now)."""
    skip = _superseded(trials)
    done = sum(1 for t in trials if t.state.is_finished() and t.number not in skip)
    running = sum(1 for t in trials if t.state.name == "RUNNING")
    return done, running


def best_trial(study):
    """The best COMPLETE trial (ties: the earliest), or None."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
    return max(complete, key=lambda t: (sign * t.value, -t.number))  # ties: the earliest trial
