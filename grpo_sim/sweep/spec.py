"""The sweep file: its schema, validation against the base recipe, and the resolved :class:`Sweep`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import string
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..recipe import RecipeError, apply_overrides, load_raw, parse_recipe
from ..validation import DuplicateKeyError, did_you_mean, format_validation, load_yaml

TRIALS_DIR = "trials"
TRIAL_RECIPE = "trial_recipe.yaml"
TRIAL_LOG = "train.log"
PLACEHOLDERS = ("python", "recipe", "trial_dir", "trial_number", "name")
DEFAULT_COMMAND = [
    "{python}",
    "-m",
    "grpo_sim.cli",
    "train",
    "{recipe}",
    "--output-dir",
    "{trial_dir}",
    "--resume",
    "auto",
]
_FLOAT_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")  # YAML 1.1 reads 1e-4 as a string


class SweepError(ValueError):
    """The sweep file (or the study it points at) is unusable; the message says where and what to change."""


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
                    raise ValueError(
                        f"values must be numbers, strings, booleans or null, got {value!r} "
                        "(set lists/mappings as separate recipe keys)"
                    )
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

    def distribution(self):
        """The optuna distribution :meth:`suggest` draws from (for samplers that choose whole points)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.values is not None:
            return CategoricalDistribution(self.values)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

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
        hint = did_you_mean(source, ["eval", "train"])
        raise ValueError(
            f"{key!r}: the source prefix must be 'eval:' (eval/summary.json) or 'train:' (metrics.jsonl){hint}"
        )
    if sep and not name:
        raise ValueError(f"{key!r}: no metric name after '{source}:'")
    if not key.strip():
        raise ValueError("empty metric name")


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
        return json.loads(
            json.dumps(
                {
                    "parameters": {k: v.model_dump(exclude_defaults=True) for k, v in spec.parameters.items()},
                    "objective": spec.objective.model_dump(exclude_defaults=True),
                    "direction": spec.objective.direction,
                    "sampler": self.sampler,
                },
                sort_keys=True,
                default=str,
            )
        )


def _yaml_inline(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def load_sweep(path: str | os.PathLike[str], n_trials: int | None = None) -> Sweep:
    """Read and validate a sweep file (and its base recipe). Raises SweepError listing every problem."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
    except DuplicateKeyError as exc:
        raise SweepError(f"{path}, {exc}") from None
    except FileNotFoundError:
        raise SweepError(f"sweep file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SweepError(
            f"{path}: a sweep file must be a mapping (base_recipe, parameters, objective, ...), "
            f"got {type(data).__name__}"
        )
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        problems = format_validation(exc, SweepFile)
        raise SweepError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)) from None

    problems: list[str] = []
    name = spec.name or re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)
    output_dir = Path(spec.output_dir or f"runs/sweeps/{name}").expanduser().resolve()
    storage = spec.storage or f"sqlite:///{output_dir / 'study.db'}"
    if "://" not in storage:
        problems.append(
            f"storage: {storage!r} is not a database URL (e.g. sqlite:///runs/study.db, "
            "postgresql://user:pass@host/db, mysql+pymysql://...)"
        )

    base_path = Path(spec.base_recipe).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    base_raw: dict[str, Any] = {}
    if not base_path.exists():
        problems.append(
            f"base_recipe: {spec.base_recipe!r} does not exist (looked for {base_path}; "
            "the path is relative to the sweep file)"
        )
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
                problems.append(
                    f"parameters[{key}]: sampler grid needs a list of values or a range with a step; "
                    "a continuous float range needs sampler random or tpe"
                )
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
    return Sweep(
        path=path,
        spec=spec,
        name=name,
        output_dir=output_dir,
        storage=storage,
        base_recipe=base_path,
        base_raw=base_raw,
        sampler=sampler,
        n_trials=int(budget or 0),
        grid=grid,
    )


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
                problems.append(
                    f"{where}: unknown placeholder {{{field}}}{did_you_mean(field, PLACEHOLDERS)} "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}; "
                    "write {{ and }} for literal braces)"
                )
    command = launch.command
    joined = " ".join(command)
    runs_train = "grpo_sim.train" in command or any(
        ("grpo_sim.cli" in a or a.endswith("grpo-sim")) and "train" in command[i + 1 :] for i, a in enumerate(command)
    )
    if runs_train and "{trial_dir}" in joined and "--resume" not in command:
        problems.append(
            "launch.command: the trial directory already holds trial_recipe.yaml and train.log when "
            "the command starts, so the train command needs '--resume', 'auto' (it then starts "
            "from step 0 in that directory)"
        )
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
            problems.append(
                "objective: uses eval: metrics, but the base recipe does not evaluate "
                "(set data.eval and evaluation.enabled: true), or use train: metrics"
            )
    return problems
