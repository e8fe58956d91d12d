"""Hyper-parameter sweeps over a recipe, on Optuna: ``grpo-sim sweep SWEEP.yaml``.

A sweep file names a base recipe, the recipe keys to vary and their spaces, the objective and a
trial budget::

    name: demo_lr_grid                      # default: the file's stem (also the Optuna study name)
    base_recipe: ../demo/ps_grpo.yaml       # relative to this file
    output_dir: runs/sweeps/demo_lr_grid    # default runs/sweeps/<name> (relative to the working dir)
    parameters:                             # dotted recipe keys, exactly as for --set
      training.learning_rate: {type: grid, values: [1.0e-4, 3.0e-4, 1.0e-3]}   # or just a list
      training.beta: {type: float, low: 0.0, high: 0.1, step: 0.02}
      training.num_generations: {type: int, low: 2, high: 8, step: 2}
      reward.similarity: {type: choice, values: [bleu2, exact_match]}
      training.max_grad_norm: {type: float, low: 0.1, high: 10, log: true}
    objective:                              # a metric, or a weighted mix; eval: = <trial>/eval/summary.json,
      mix: {"eval:consistency_e2e_exact": 1.0, "eval:accuracy_f1": 1.0}   # train: = last value logged in
      direction: maximize                   # <trial>/metrics.jsonl (objective: {metric: "train:reward"})
    sampler: grid                           # grid | random | tpe (default: grid if every space is a list)
    n_trials: 3                             # budget (COMPLETE + PRUNED + FAIL); default for grid: its size
    seed: 0
    storage: null                           # default sqlite:///<output_dir>/study.db; any database URL
    timeout_s: 3600                         # per trial: SIGTERM, then SIGKILL after launch.kill_grace_s
    launch:                                 # placeholders {python} {recipe} {trial_dir} {trial_number} {name}
      command: ["{python}", "-m", "grpo_sim.cli", "train", "{recipe}", "--output-dir", "{trial_dir}",
                "--resume", "auto"]
      env: {}                               # extra environment for the trial (placeholders allowed)
      kill_grace_s: 30
    pruning:                                # optional: median pruner on a metric logged while training
      {metric: "train:reward", warmup_steps: 20, startup_trials: 2, interval_steps: 1, patience: null}

Every trial is an ordinary training run in ``<output_dir>/trials/trial-NNNN``: the base recipe with
the sampled values is written there as ``trial_recipe.yaml``, validated, and run as a subprocess
(stdout and stderr to ``train.log``); the trainer saves ``recipe.resolved.yaml`` itself. A trial
whose recipe is invalid, whose command fails or is killed, or whose objective cannot be read is
recorded FAIL with the reason and its log, and the sweep goes on.

The study lives in the storage (SQLite by default), so rerunning an interrupted sweep continues it:
finished trials are kept, a trial left RUNNING by a dead sweep process (same host: its process is
gone; another host: no heartbeat for ``STALE_AFTER_S``) is marked FAIL (``interrupted``) and run
again with the same parameters. ``--worker`` joins the study from another process or machine
(point ``storage`` at a shared database) and runs trials until the budget is spent.

At the end (and with ``--report``): a table of the trials, ``trials.csv`` / ``trials.json``,
``best_recipe.yaml`` (ready for ``grpo-sim train``), ``objective.png`` and ``params.png`` in the
output directory.

``python -m grpo_sim.sweep SWEEP.yaml [--report] [--worker] [--n-trials N]`` runs the same command.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import difflib
import io
import itertools
import json
import math
import os
import re
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any, Literal, Optional

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .io import atomic_write_bytes
from .recipe import RecipeError, apply_overrides, load_raw, parse_recipe

SWEEP_ATTR = "grpo_sim_sweep"  # study user attr: what the study was created for (checked on reruns)
RETRY_OF = "grpo_sim:retry_of"  # trial system attr: number of the interrupted trial this one reruns
TRIALS_DIR = "trials"
TRIAL_RECIPE = "trial_recipe.yaml"
TRIAL_LOG = "train.log"
HEARTBEAT_S = 20  # a running trial's heartbeat in the storage ...
STALE_AFTER_S = 120  # ... and how old it may get before another process declares the trial dead
POLL_S = 0.5
PLACEHOLDERS = ("python", "recipe", "trial_dir", "trial_number", "name")
DEFAULT_COMMAND = ["{python}", "-m", "grpo_sim.cli", "train", "{recipe}", "--output-dir", "{trial_dir}",
                   "--resume", "auto"]
_FLOAT_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # YAML 1.1 reads 1e-4 as a string


class SweepError(ValueError):
    """The sweep file (or the study it points at) is unusable; the message says where and what to change."""


class SweepInterrupted(Exception):
    """The sweep process got SIGINT/SIGTERM; the running trial was stopped and will rerun next time."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


# ------------------------------------------------------------------------------------------ schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")



class ParamSpec(_Strict):
    """One recipe key's space. ``grid``/``choice``: a list; ``float``/``int``: [low, high] (log or step)."""

    type: Literal["grid", "choice", "float", "int"]
    values: Optional[list[Any]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            return {"type": "grid", "values": list(data)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ParamSpec":
        if self.type in ("grid", "choice"):
            if not self.values:
                raise ValueError(f"type {self.type} needs a non-empty 'values' list")
            extra = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
            if extra:
                raise ValueError(f"type {self.type} takes 'values' only, not {', '.join(extra)}")
            values = []
            for value in self.values:
                if isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
                    value = float(value)
                if not isinstance(value, (bool, int, float, str, type(None))):
                    raise ValueError(f"values must be numbers, strings, booleans or null, got {value!r} "
                                     "(set lists/mappings as separate recipe keys)")
                values.append(value)
            self.values = values
            return self
        if self.values is not None:
            raise ValueError(f"type {self.type} is a range: give low and high, not values (or use type: grid)")
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} needs both low and high")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"type int needs an integer {key}, got {value}")
        return self

    def grid_values(self) -> list[Any] | None:
        """The points this space contributes to a grid (None: a continuous range, not griddable)."""
        if self.values is not None:
            return list(self.values)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def suggest(self, trial, name: str) -> Any:
        if self.values is not None:
            return trial.suggest_categorical(name, self.values)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class Objective(_Strict):
    """``metric`` or ``mix`` (weights); keys ``eval:<summary key>``, ``train:<logged key>`` or a bare key."""

    metric: Optional[str] = None
    mix: Optional[dict[str, float]] = None
    direction: Literal["maximize", "minimize"] = "maximize"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"metric": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_of(self) -> "Objective":
        if (self.metric is None) == (self.mix is None):
            raise ValueError("give exactly one of metric (one key) or mix (key: weight mapping)")
        if self.mix is not None and not self.mix:
            raise ValueError("mix needs at least one key: weight")
        for key in self.terms():
            _check_metric_key(key[0])
        return self

    def terms(self) -> list[tuple[str, float]]:
        return [(self.metric, 1.0)] if self.metric is not None else list((self.mix or {}).items())

    def describe(self) -> str:
        if self.metric is not None:
            return self.metric
        return " + ".join(f"{w:g} x {k}" for k, w in (self.mix or {}).items())


class Pruning(_Strict):
    """Median pruning on a metric from metrics.jsonl, checked while the trial trains."""

    metric: str = Field(..., description="a train: metric, e.g. train:reward")
    direction: Optional[Literal["maximize", "minimize"]] = Field(None, description="default: the objective's")
    warmup_steps: int = Field(0, ge=0, description="never prune before this training step")
    startup_trials: int = Field(2, ge=0, description="finished trials needed before pruning starts")
    interval_steps: int = Field(1, ge=1)
    patience: Optional[int] = Field(None, ge=1, description="prune only after this many bad checks in a row")

    @field_validator("metric")
    @classmethod
    def _train_metric(cls, value: str) -> str:
        _check_metric_key(value)
        if value.startswith("eval:"):
            raise ValueError("pruning watches the training log while it runs: use a train: metric")
        return value if value.startswith("train:") else f"train:{value}"


class Launch(_Strict):
    command: list[str] = Field(default_factory=lambda: list(DEFAULT_COMMAND))
    env: dict[str, str] = Field(default_factory=dict)
    kill_grace_s: float = Field(30.0, ge=0, description="SIGTERM to SIGKILL (the trainer saves a checkpoint)")

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value


class SweepFile(_Strict):
    name: Optional[str] = Field(None, description="study name (default: the sweep file's stem)")
    base_recipe: str = Field(..., description="recipe to vary, relative to the sweep file")
    output_dir: Optional[str] = None
    parameters: dict[str, ParamSpec] = Field(..., min_length=1)
    objective: Objective
    sampler: Optional[Literal["grid", "random", "tpe"]] = None
    n_trials: Optional[int] = Field(None, ge=1)
    seed: int = 0
    storage: Optional[str] = None
    launch: Launch = Field(default_factory=Launch)
    timeout_s: Optional[float] = Field(None, gt=0)
    pruning: Optional[Pruning] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("use letters, digits, '_', '-' and '.' (it names the study and a directory)")
        return value


def _check_metric_key(key: str) -> None:
    source, sep, name = key.partition(":")
    if sep and source not in ("eval", "train"):
        hint = _did_you_mean(source, ["eval", "train"])
        raise ValueError(f"{key!r}: the source prefix must be 'eval:' (eval/summary.json) or 'train:' "
                         f"(metrics.jsonl){hint}")
    if sep and not name:
        raise ValueError(f"{key!r}: no metric name after '{source}:'")
    if not key.strip():
        raise ValueError("empty metric name")


# ------------------------------------------------------------------------------------------ errors
def _did_you_mean(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _known_keys(loc: tuple) -> list[str]:
    node: Any = SweepFile
    for part in loc:
        if typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
            continue
        model = _model_of(node)
        field = model.model_fields.get(part) if model else None
        if field is None:
            return []
        node = field.annotation
        if typing.get_origin(node) is typing.Union:  # Optional[X]
            node = next((a for a in typing.get_args(node) if a is not type(None)), node)
    model = _model_of(node) if typing.get_origin(node) is not dict else None
    return list(model.model_fields) if model else []


def _loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        part = str(part)
        text += f"[{part}]" if ("." in part or ":" in part or not part) else (f".{part}" if text else part)
    return text or "top level"


def _format_validation(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            hint = _did_you_mean(str(loc[-1]), _known_keys(loc[:-1]))
            problems.append(f"{_loc_text(loc)}: unknown key in {_loc_text(loc[:-1])}{hint}")
        elif err["type"] == "missing":
            problems.append(f"{_loc_text(loc)}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            got = "" if isinstance(shown, dict) else f" (got {shown!r})"
            problems.append(f"{_loc_text(loc)}: {msg}{got}")
    return problems


# ------------------------------------------------------------------------------------------ loading
@dataclasses.dataclass
class Sweep:
    """A validated sweep file, with every default resolved."""

    path: Path
    spec: SweepFile
    name: str
    output_dir: Path
    storage: str
    base_recipe: Path
    base_raw: dict[str, Any]
    sampler: str
    n_trials: int
    grid: dict[str, list[Any]] | None

    @property
    def trials_dir(self) -> Path:
        return self.output_dir / TRIALS_DIR

    def trial_raw(self, params: dict[str, Any]) -> dict[str, Any]:
        """The base recipe with ``params`` set (values typed, as the sampler gives them)."""
        overrides = [f"{key}={_yaml_inline(value)}" for key, value in params.items()]
        return apply_overrides(self.base_raw, overrides, source=f"{self.path}: parameters")

    def fingerprint(self) -> dict[str, Any]:
        spec = self.spec
        return json.loads(json.dumps({
            "parameters": {k: v.model_dump(exclude_defaults=True) for k, v in spec.parameters.items()},
            "objective": spec.objective.model_dump(exclude_defaults=True),
            "direction": spec.objective.direction,
            "sampler": self.sampler,
        }, sort_keys=True, default=str))


def _yaml_inline(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def load_sweep(path: str | os.PathLike[str], n_trials: int | None = None) -> Sweep:
    """Read and validate a sweep file (and its base recipe). Raises SweepError listing every problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"sweep file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping (base_recipe, parameters, objective, ...), "
                         f"got {type(data).__name__}")
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        problems = _format_validation(exc)
        raise SweepError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)) from None

    problems: list[str] = []
    name = spec.name or re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    output_dir = Path(spec.output_dir or f"runs/sweeps/{name}").expanduser().resolve()
    storage = spec.storage or f"sqlite:///{output_dir / 'study.db'}"
    if "://" not in storage:
        problems.append(f"storage: {storage!r} is not a database URL (e.g. sqlite:///runs/study.db, "
                        "postgresql://user:pass@host/db, mysql+pymysql://...)")

    base_path = Path(spec.base_recipe).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    base_raw: dict[str, Any] = {}
    if not base_path.exists():
        problems.append(f"base_recipe: {spec.base_recipe!r} does not exist (looked for {base_path}; "
                        "the path is relative to the sweep file)")
    else:
        try:
            base_raw = load_raw(base_path)
        except RecipeError as exc:
            problems.append(f"base_recipe: {exc}")

    sampler = spec.sampler or ("grid" if all(p.values is not None for p in spec.parameters.values()) else "tpe")
    grid = None
    budget = n_trials or spec.n_trials
    if sampler == "grid":
        grid = {}
        for key, param in spec.parameters.items():
            points = param.grid_values()
            if points is None:
                problems.append(f"parameters[{key}]: sampler grid needs a list of values or a range with a step; "
                                "a continuous float range needs sampler random or tpe")
            else:
                grid[key] = points
        size = math.prod(len(v) for v in grid.values()) if grid else 0
        budget = min(budget or size, size)
    elif budget is None:
        problems.append(f"n_trials: required with sampler {sampler} (the number of trials to run)")
    problems += _check_launch(spec.launch)
    if base_raw:
        problems += _check_parameters(spec, base_raw, base_path)
    if problems:
        raise SweepError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return Sweep(path=path, spec=spec, name=name, output_dir=output_dir, storage=storage,
                 base_recipe=base_path, base_raw=base_raw, sampler=sampler, n_trials=int(budget or 0), grid=grid)


def _check_launch(launch: Launch) -> list[str]:
    problems = []
    if not launch.command:
        problems.append("launch.command: empty")
    items = [(f"launch.command[{i}]", arg) for i, arg in enumerate(launch.command)]
    items += [(f"launch.env[{k}]", v) for k, v in launch.env.items()]
    for where, text in items:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:
            problems.append(f"{where}: {text!r}: {exc} (write {{{{ and }}}} for literal braces)")
            continue
        for field in fields:
            if field not in PLACEHOLDERS:
                problems.append(f"{where}: unknown placeholder {{{field}}}{_did_you_mean(field, PLACEHOLDERS)} "
                                f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; "
                                "write {{ and }} for literal braces)")
    command = launch.command
    joined = " ".join(command)
    runs_train = ("grpo_sim.train" in command or
                  any(("grpo_sim.cli" in a or a.endswith("grpo-sim")) and "train" in command[i + 1:]
                      for i, a in enumerate(command)))
    if runs_train and "{trial_dir}" in joined and "--resume" not in command:
        problems.append("launch.command: the trial directory already holds trial_recipe.yaml and train.log when "
                        "the command starts, so the train command needs '--resume', 'auto' (it then starts "
                        "from step 0 in that directory)")
    return problems


_STRUCTURAL = ("unknown key", "unknown top-level key", "not a GRPOConfig", "set it as", "not a section")


def _first_values(spec: SweepFile) -> dict[str, Any]:
    out = {}
    for key, param in spec.parameters.items():
        if param.values is not None:
            out[key] = param.values[0]
        else:
            out[key] = int(param.low) if param.type == "int" else float(param.low)
    return out


def _check_parameters(spec: SweepFile, base_raw: dict[str, Any], base_path: Path) -> list[str]:
    """Parameter keys must exist in the recipe schema; the base recipe must be valid apart from them."""
    keys = list(spec.parameters)
    overrides = [f"{k}={_yaml_inline(v)}" for k, v in _first_values(spec).items()]
    try:
        raw = apply_overrides(base_raw, overrides, source="parameter")
    except RecipeError as exc:
        return [f"parameters: {exc}"]
    try:
        recipe = parse_recipe(raw, source=str(base_path))
    except RecipeError as exc:
        problems = []
        for line in str(exc).splitlines()[1:]:
            line = line.strip().removeprefix("- ")
            where, _, msg = line.partition(": ")
            related = [k for k in keys if k == where or k.startswith(where + ".") or where.startswith(k + ".")]
            if related and any(s in msg for s in _STRUCTURAL):
                problems.append(f"parameters[{related[0]}]: not a recipe key: {line}")
            elif not related:
                problems.append(f"base_recipe {base_path}: {line}")
            # a value problem of a parameter's first value: that trial fails, the sweep goes on
        return problems
    problems = []
    uses_eval = any(k.startswith("eval:") for k, _ in spec.objective.terms())
    if uses_eval and not ({"data.eval", "evaluation.enabled"} & set(keys)):
        if not recipe.data.eval or not recipe.evaluation.enabled:
            problems.append("objective: uses eval: metrics, but the base recipe does not evaluate "
                            "(set data.eval and evaluation.enabled: true), or use train: metrics")
    return problems


# ------------------------------------------------------------------------------------------ optuna glue
def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@contextlib.contextmanager
def _quiet():
    """Silence Optuna's experimental-feature and heartbeat-outside-optimize warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
        warnings.filterwarnings("ignore", category=_optuna().exceptions.ExperimentalWarning)
        yield


def _grid_sampler_class():
    optuna = _optuna()

    class SweepGridSampler(optuna.samplers.GridSampler):
        """GridSampler in the declared order, driven by ask/tell: the sweep loop decides when to stop."""

        def __init__(self, search_space, seed=None):
            super().__init__(search_space, seed)
            if hasattr(self, "_all_grids") and hasattr(self, "_search_space"):
                self._all_grids = list(itertools.product(*self._search_space.values()))

        def after_trial(self, study, trial, state, values):  # GridSampler calls study.stop() here,
            pass  # which only works inside study.optimize

    return SweepGridSampler


def _make_sampler(sweep: Sweep, offset: int):
    optuna = _optuna()
    seed = sweep.spec.seed
    if sweep.sampler == "grid":  # the grid's point order must be the same in every process: fixed seed
        return _grid_sampler_class()(sweep.grid, seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed + offset)
    startup = min(10, max(2, sweep.n_trials // 4))
    return optuna.samplers.TPESampler(seed=seed + offset, n_startup_trials=startup)


def _make_pruner(sweep: Sweep):
    optuna = _optuna()
    pruning = sweep.spec.pruning
    if pruning is None:
        return optuna.pruners.NopPruner()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials,
                                         n_warmup_steps=pruning.warmup_steps,
                                         interval_steps=pruning.interval_steps)
    if pruning.patience:
        pruner = optuna.pruners.PatientPruner(pruner, patience=pruning.patience)
    return pruner


def _storage(sweep: Sweep, must_exist: bool = False):
    optuna = _optuna()
    url = sweep.storage
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and db != ":memory:":
            if must_exist and not Path(db).exists():
                raise SweepError(f"{sweep.path}: no study yet ({db} does not exist); run "
                                 f"`grpo-sim sweep {sweep.path}` first")
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    for attempt in range(4):  # workers starting together may race to create the tables
        try:
            with _quiet():
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=STALE_AFTER_S,
                    heartbeat_stale_trial_callback=_enqueue_retry)
        except Exception as exc:  # bad URL, missing driver, unreachable server
            if attempt == 3 or not re.search(r"already exists|locked|UNIQUE", str(exc)):
                raise SweepError(f"{sweep.path}: storage {url!r}: {exc}") from None
            time.sleep(0.5 + attempt)


def open_study(sweep: Sweep, create: bool = True, sampler_offset: int = 0):
    """Create or load the sweep's study and check it was made for this sweep definition."""
    optuna = _optuna()
    storage = _storage(sweep, must_exist=not create)
    try:
        if create:
            study = optuna.create_study(storage=storage, study_name=sweep.name, load_if_exists=True,
                                        direction=sweep.spec.objective.direction,
                                        sampler=optuna.samplers.RandomSampler(), pruner=_make_pruner(sweep))
        else:
            study = optuna.load_study(study_name=sweep.name, storage=storage, pruner=_make_pruner(sweep))
    except KeyError:
        raise SweepError(f"{sweep.path}: storage {sweep.storage} has no study named {sweep.name!r}; run "
                         f"`grpo-sim sweep {sweep.path}` first") from None
    except Exception as exc:
        raise SweepError(f"{sweep.path}: cannot open study {sweep.name!r} in {sweep.storage}: {exc}") from None
    mine = sweep.fingerprint()
    stored = study.user_attrs.get(SWEEP_ATTR)
    if stored is None and create:
        study.set_user_attr(SWEEP_ATTR, {**mine, "base_recipe": str(sweep.base_recipe),
                                         "base_recipe_sha256": _base_digest(sweep)})
    elif stored is not None:
        differ = [k for k in mine if stored.get(k) != mine[k]]
        if differ:
            raise SweepError(
                f"{sweep.path}: study {sweep.name!r} in {sweep.storage} was started with different "
                f"{', '.join(differ)} (stored: {json.dumps({k: stored.get(k) for k in differ})}). Rerun with the "
                "original settings, or give this sweep another name or output_dir/storage.")
    if study.direction.name.lower() != sweep.spec.objective.direction:
        raise SweepError(f"{sweep.path}: study {sweep.name!r} maximizes/minimizes differently "
                         f"({study.direction.name.lower()}); give this sweep another name")
    study.sampler = _make_sampler(sweep, sampler_offset + len(study.get_trials(deepcopy=False)))
    return study


def _base_digest(sweep: Sweep) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(sweep.base_raw, sort_keys=True, default=str).encode()).hexdigest()


def _enqueue_retry(study, frozen) -> None:
    """Queue a rerun of an interrupted trial with the same parameters (and grid point)."""
    optuna = _optuna()
    system_attrs = {k: v for k, v in frozen.system_attrs.items() if k in ("grid_id", "search_space")}
    system_attrs["fixed_params"] = dict(frozen.params)
    system_attrs[RETRY_OF] = frozen.number
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, system_attrs=system_attrs,
                                              user_attrs={"retry_of": frozen.number}))


# ------------------------------------------------------------------------------------------ workers
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
    optuna = _optuna()
    storage = study._storage
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
        try:
            storage.set_trial_user_attr(frozen._trial_id, "interrupted", True)
            storage.set_trial_user_attr(frozen._trial_id, "error",
                                        f"interrupted: the sweep process {worker} died while it ran")
            if not storage.set_trial_state_values(frozen._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process recovered it first
        _enqueue_retry(study, storage.get_trial(frozen._trial_id))
        recovered.append(frozen.number)
    with _quiet():  # other hosts: heartbeat older than STALE_AFTER_S
        before = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    return recovered + sorted(before - after)


def _superseded(trials) -> set[int]:
    """Trials that were interrupted and rerun (they do not count against the budget)."""
    out = {t.system_attrs[RETRY_OF] for t in trials if RETRY_OF in t.system_attrs}
    out |= {t.number for t in trials if t.user_attrs.get("interrupted")}
    return out


def budget_status(trials) -> tuple[int, int]:
    """(finished trials that count, trials running now)."""
    skip = _superseded(trials)
    done = sum(1 for t in trials if t.state.is_finished() and t.number not in skip)
    running = sum(1 for t in trials if t.state.name == "RUNNING")
    return done, running


# ------------------------------------------------------------------------------------------ objective
class ObjectiveError(RuntimeError):
    pass


def _read_metrics_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _lookup(mapping: dict[str, Any], key: str) -> Any:
    if key in mapping:
        return mapping[key]
    node: Any = mapping
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_metric(metric: str, trial_dir: Path) -> float:
    """``eval:K`` from eval/summary.json, ``train:K`` = last value of K in metrics.jsonl, bare K: either."""
    source, sep, key = metric.partition(":")
    if not sep:
        source, key = "any", metric
    if source in ("eval", "any"):
        summary_path = trial_dir / "eval" / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        if isinstance(summary, dict):
            value = _number(_lookup(summary, key))
            if value is not None:
                return value
        if source == "eval":
            if summary is None:
                raise ObjectiveError(f"{metric}: {summary_path} was not written (is data.eval set and "
                                     "evaluation.enabled true?)")
            keys = [k for k, v in summary.items() if _number(v) is not None] if isinstance(summary, dict) else []
            raise ObjectiveError(f"{metric}: no number {key!r} in {summary_path}{_did_you_mean(key, keys)} "
                                 f"(has: {', '.join(sorted(keys)[:12])})")
    rows = _read_metrics_rows(trial_dir / "metrics.jsonl")
    for row in reversed(rows):
        value = _number(row.get(key))
        if value is not None:
            return value
    keys = sorted({k for r in rows for k, v in r.items() if _number(v) is not None})
    raise ObjectiveError(f"{metric}: never logged in {trial_dir / 'metrics.jsonl'}{_did_you_mean(key, keys)}"
                         + (f" (logged: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''})" if keys else ""))


def read_objective(objective: Objective, trial_dir: Path) -> tuple[float, dict[str, float]]:
    parts = {metric: read_metric(metric, trial_dir) for metric, _ in objective.terms()}
    value = sum(weight * parts[metric] for metric, weight in objective.terms())
    if not math.isfinite(value):
        raise ObjectiveError(f"objective is {value} ({parts})")
    return value, parts


class _MetricWatcher:
    """New (step, value) points of one key in a growing metrics.jsonl."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self.offset = 0
        self.partial = b""

    def poll(self) -> list[tuple[int, float]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        points = []
        for line in lines:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            value = _number(row.get(self.key)) if isinstance(row, dict) else None
            if value is not None and isinstance(row.get("step"), int):
                points.append((row["step"], value))
        return points


# ------------------------------------------------------------------------------------------ one trial
_CHILD_SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: die with the sweep
except Exception:
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


class _Signals:
    """SIGTERM/SIGINT while a sweep runs: stop at the next safe point (the running trial is stopped and
    queued again). A second signal raises KeyboardInterrupt at once."""

    signum: int | None = None

    def __enter__(self):
        self.previous: dict[int, Any] = {}
        _Signals.signum = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        _Signals.signum = None

    @staticmethod
    def _handle(signum, frame):
        if _Signals.signum is not None:
            raise KeyboardInterrupt
        _Signals.signum = signum

    @staticmethod
    def check() -> None:
        if _Signals.signum is not None:
            raise SweepInterrupted(_Signals.signum)


def run_trial(sweep: Sweep, study, trial, log=print) -> TrialOutcome:
    """Run one asked trial end to end and tell the study. Re-raises SweepInterrupted after recording it."""
    optuna = _optuna()
    storage = study._storage
    number = trial.number
    trial_dir = sweep.trials_dir / f"trial-{number:04d}"
    log_path = trial_dir / TRIAL_LOG
    recipe_path = trial_dir / TRIAL_RECIPE
    storage.record_heartbeat(trial._trial_id)
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
            text = (f"# grpo-sim sweep {sweep.name!r}, trial {number}: {sweep.base_recipe} with {shown}\n"
                    + yaml.safe_dump(raw, sort_keys=False))
            _atomic_write(recipe_path, text)
            parse_recipe(raw, source=str(recipe_path))
            _Signals.check()
        except RecipeError as exc:
            outcome = TrialOutcome("FAIL", error=f"invalid recipe: {exc}")
        else:
            outcome = _launch(sweep, study, trial, trial_dir, recipe_path, log_path, start)
    except (SweepInterrupted, KeyboardInterrupt) as exc:
        interrupted: BaseException | None = exc
        why = exc if isinstance(exc, SweepInterrupted) else "interrupted"
        outcome = TrialOutcome("FAIL", error=f"interrupted: the sweep was stopped ({why}) while it ran")
    else:
        interrupted = None
    attrs: dict[str, Any] = {"duration_s": round(time.time() - start, 3), "returncode": outcome.returncode,
                             "error": outcome.error, "objective_parts": outcome.parts,
                             "interrupted": True if interrupted is not None else None}
    try:
        for key, value in attrs.items():
            if value is not None:
                trial.set_user_attr(key, value)
        if outcome.state == "COMPLETE":
            study.tell(trial, outcome.value)
        else:
            study.tell(trial, state=getattr(optuna.trial.TrialState, outcome.state))
    except optuna.exceptions.UpdateFinishedTrialError:  # declared dead by another worker (no heartbeat)
        outcome = TrialOutcome("FAIL", error="another worker marked this trial failed (its heartbeat was late); "
                                             "the result was dropped")
        interrupted = None
    if interrupted is not None:
        _enqueue_retry(study, study._storage.get_trial(trial._trial_id))
        raise interrupted
    return outcome


def _command(sweep: Sweep, recipe_path: Path, trial_dir: Path, number: int) -> tuple[list[str], dict[str, str]]:
    values = {"python": sys.executable, "recipe": str(recipe_path), "trial_dir": str(trial_dir),
              "trial_number": str(number), "name": sweep.name}
    argv = [arg.format(**values) for arg in sweep.spec.launch.command]
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPO_SIM_SWEEP=sweep.name, GRPO_SIM_SWEEP_TRIAL=str(number))
    env.update({k: v.format(**values) for k, v in sweep.spec.launch.env.items()})
    return argv, env


def _launch(sweep: Sweep, study, trial, trial_dir: Path, recipe_path: Path, log_path: Path,
            start: float) -> TrialOutcome:
    storage = study._storage
    spec = sweep.spec
    argv, env = _command(sweep, recipe_path, trial_dir, trial.number)
    trial.set_user_attr("command", argv)
    pruning = spec.pruning
    watcher = _MetricWatcher(trial_dir / "metrics.jsonl", pruning.metric.partition(":")[2]) if pruning else None
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
            proc = subprocess.Popen([*shim, *argv], stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        except OSError as exc:
            return TrialOutcome("FAIL", error=f"cannot start {argv[0]!r}: {exc}")
        try:
            while True:
                try:
                    returncode = proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    returncode = None
                if time.time() - last_beat >= HEARTBEAT_S:
                    storage.record_heartbeat(trial._trial_id)
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
                _Signals.check()
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
        return TrialOutcome("PRUNED", returncode=returncode, pruned_step=pruned_step,
                            error=f"pruned at step {pruned_step} ({pruning.metric})")
    if timed_out:
        return TrialOutcome("FAIL", returncode=returncode, error=f"timed out after {spec.timeout_s:g} s")
    if returncode != 0:
        how = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0 and -returncode in
               signal.valid_signals() else f"exit code {returncode}")
        tail = _log_tail(log_path, skip)
        return TrialOutcome("FAIL", returncode=returncode, error=f"{how}" + (f": {tail}" if tail else ""))
    try:
        value, parts = read_objective(spec.objective, trial_dir)
    except (ObjectiveError, OSError, json.JSONDecodeError) as exc:
        return TrialOutcome("FAIL", returncode=0, error=f"objective: {exc}")
    return TrialOutcome("COMPLETE", value=value, returncode=0, parts=parts)


# ------------------------------------------------------------------------------------------ the sweep
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


def run_sweep(sweep: Sweep | str | os.PathLike[str], worker: bool = False, n_trials: int | None = None,
              report: bool = True, log=None) -> SweepResult:
    """Run (or continue) a sweep until its budget is spent. ``worker``: join it, write no report."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, n_trials=n_trials)
    elif n_trials is not None:
        sweep = dataclasses.replace(sweep, n_trials=min(n_trials, sweep.n_trials) if sweep.grid else n_trials)
    log = log or _stderr_log
    sweep.output_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(sweep, create=True, sampler_offset=(os.getpid() if worker else 0))
    stored = study.user_attrs.get(SWEEP_ATTR) or {}
    if stored.get("base_recipe_sha256") not in (None, _base_digest(sweep)):
        log(f"note: {sweep.base_recipe} changed since this study started; new trials use the current version")
    ran: list[int] = []
    interrupted: SweepInterrupted | None = None
    with _Signals():
        try:
            recovered = recover_stale(study)
            if recovered:
                log(f"trial(s) {', '.join(map(str, recovered))} were interrupted; running them again")
            while True:
                trials = study.get_trials(deepcopy=False)
                done, running = budget_status(trials)
                if done + running >= sweep.n_trials:
                    break
                _Signals.check()
                with _quiet():  # "heartbeat is supposed to be used with Study.optimize": we beat ourselves
                    trial = study.ask()
                outcome = run_trial(sweep, study, trial, log=lambda m, d=done: log(f"[{d + 1}/{sweep.n_trials}] {m}"))
                ran.append(trial.number)
                log(_outcome_line(trial.number, outcome, sweep))
                recover_stale(study)
        except SweepInterrupted as exc:
            interrupted = exc
        except KeyboardInterrupt:
            interrupted = SweepInterrupted(signal.SIGINT)
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(1 for t in trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    best = _best(study)
    result = SweepResult(sweep.name, sweep.output_dir, sweep.storage, ran, counts,
                         best.number if best else None, best.value if best else None)
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


def _best(study):
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if study.direction.name == "MAXIMIZE" else -1.0
    return max(complete, key=lambda t: (sign * t.value, -t.number))  # ties: the earliest trial


# ------------------------------------------------------------------------------------------ report
@dataclasses.dataclass
class ReportFiles:
    trials_csv: Path
    trials_json: Path
    best_recipe: Path | None
    objective_plot: Path | None
    params_plot: Path | None
    rows: list[dict[str, Any]]


def _atomic_write(path: Path, data: str | bytes) -> None:
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


def trial_rows(study) -> list[dict[str, Any]]:
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.system_attrs[RETRY_OF]: t.number for t in trials if RETRY_OF in t.system_attrs}
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
        if RETRY_OF in t.system_attrs:
            note = (note + "; " if note else "") + f"rerun of trial {t.system_attrs[RETRY_OF]}"
        rows.append({
            "number": t.number, "state": t.state.name,
            "objective": t.value if t.state.name == "COMPLETE" else None,
            "params": dict(t.params), "duration_s": duration,
            "objective_parts": attrs.get("objective_parts"), "returncode": attrs.get("returncode"),
            "trial_dir": attrs.get("trial_dir"), "log": attrs.get("log"), "error": attrs.get("error"),
            "note": note, "worker": attrs.get("worker"),
            "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())} or None,
        })
    return rows


def write_report(sweep: Sweep, study=None, print_table: bool = True) -> ReportFiles:
    """Table on stdout, trials.csv/json, best_recipe.yaml and plots in the sweep's output directory."""
    if study is None:
        study = open_study(sweep, create=False)
    out = sweep.output_dir
    rows = trial_rows(study)
    best = _best(study)
    names = list(sweep.spec.parameters)
    _atomic_write(out / "trials.json", json.dumps({
        "sweep": str(sweep.path), "name": sweep.name, "storage": sweep.storage,
        "objective": sweep.spec.objective.describe(), "direction": sweep.spec.objective.direction,
        "best_trial": best.number if best else None, "trials": rows}, indent=2, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["number", "state", "objective", *names, "duration_s", "trial_dir", "log", "note"])
    for r in rows:
        writer.writerow([r["number"], r["state"], "" if r["objective"] is None else r["objective"],
                         *[r["params"].get(n, "") for n in names], r["duration_s"], r["trial_dir"], r["log"],
                         r["note"]])
    _atomic_write(out / "trials.csv", buf.getvalue())
    best_path = _write_best_recipe(sweep, best) if best else None
    objective_plot = params_plot = None
    if any(r["objective"] is not None for r in rows):
        try:
            objective_plot = _plot_objective(sweep, rows, out / "objective.png")
            params_plot = _plot_params(sweep, study, rows, out / "params.png")
        except ImportError:  # matplotlib is optional
            pass
    files = ReportFiles(out / "trials.csv", out / "trials.json", best_path, objective_plot, params_plot, rows)
    if print_table:
        _print_table(sweep, rows, best, files)
    return files


def _write_best_recipe(sweep: Sweep, best) -> Path:
    trial_recipe = Path(best.user_attrs.get("trial_dir", "")) / TRIAL_RECIPE
    if trial_recipe.is_file():  # exactly what the best trial ran
        raw = yaml.safe_load(trial_recipe.read_text())
    else:
        raw = sweep.trial_raw(dict(best.params))
    shown = ", ".join(f"{k}={v}" for k, v in best.params.items())
    path = sweep.output_dir / "best_recipe.yaml"
    header = (f"# Best trial of sweep {sweep.name!r} ({sweep.path}): trial {best.number}, "
              f"objective {best.value:.6g} ({sweep.spec.objective.describe()}, {sweep.spec.objective.direction})\n"
              f"# base recipe {sweep.base_recipe} with {shown}\n"
              f"# run it:  grpo-sim train {path}\n")
    _atomic_write(path, header + yaml.safe_dump(raw, sort_keys=False))
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
        table.add_row(str(r["number"]), *[_fmt(r["params"].get(n)) for n in names], _fmt(r["objective"]), status,
                      "" if r["duration_s"] is None else f"{r['duration_s']:.0f} s", note)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    lines = [f"trials: {files.trials_csv}, {files.trials_json}"]
    if files.best_recipe:
        lines.append(f"best: trial {best.number}, objective {best.value:.6g} -> {files.best_recipe}")
    else:
        lines.append("best: no trial completed yet")
    if files.objective_plot:
        lines.append(f"plots: {files.objective_plot}" + (f", {files.params_plot}" if files.params_plot else ""))
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _save_figure(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _atomic_write(path, buf.getvalue())
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
                importances = _optuna().importance.get_param_importances(study)
        except Exception:  # too few distinct values, a single completed point, ...
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


# ------------------------------------------------------------------------------------------ command
def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def sweep_command(
    sweep_file: Path = typer.Argument(..., help="sweep YAML (see recipes/sweeps/)"),
    report: bool = typer.Option(False, "--report", help="only print the trials table and write the report files"),
    worker: bool = typer.Option(False, "--worker", help="join the study (shared storage) and run trials until the "
                                                        "budget is spent; no report"),
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

        Console(stderr=True).print(f"[yellow]sweep stopped ({stop})[/yellow]; the running trial will run again. "
                                   f"Continue with:\n  grpo-sim sweep {sweep_file}", highlight=False)
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
