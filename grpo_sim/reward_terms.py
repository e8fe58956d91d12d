"""Reward terms: what a recipe's ``rewards:`` list and ``PSGRPOConfig.reward_terms`` hold.

A term is a mapping with a ``type`` and a ``weight``; the total reward is TRL's weighted sum of the
terms (``multi_objective_aggregation`` chooses how), each logged as ``rewards/<name>/mean``:

* ``consistency``: the PS-GRPO cross-paraphrase similarity reward (``similarity``, optional
  ``relaxed: {kappa, samples}``); needs paraphrase-set data;
* ``reference``: similarity of each completion to a reference column (``similarity``, ``column``:
  default the config's ``answers_column``; a list of references scores the best one);
* ``agreement``: Co-Reward's majority vote across the other paraphrases of the set; needs sets;
* ``function``: a TRL reward function by dotted path (``my_pkg.rewards:format_reward`` or
  ``my_pkg.rewards.format_reward``), called exactly as TRL calls reward functions, with ``kwargs``
  bound as keyword arguments.

``name`` (default: the type, or the function's name) must be unique: it is the log key.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

TERM_TYPES = ("consistency", "reference", "agreement", "function")
#: terms scored across the paraphrases of a set: they need paraphrase-set data
SET_TERM_TYPES = ("consistency", "agreement")
_KEYS = {
    "consistency": {"similarity", "relaxed"},
    "reference": {"similarity", "column"},
    "agreement": {"ignore_empty"},
    "function": {"function", "kwargs"},
}
_COMMON_KEYS = {"type", "name", "weight"}


@dataclass(frozen=True)
class RewardTerm:
    type: str
    name: str
    weight: float = 1.0
    similarity: str | None = None
    relaxed: dict[str, int] | None = None
    column: str | None = None
    ignore_empty: bool = True
    function: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_sets(self) -> bool:
        return self.type in SET_TERM_TYPES

    def as_dict(self) -> dict[str, Any]:
        """The mapping form (as in a recipe), with only the keys this type uses."""
        out = {k: v for k, v in asdict(self).items() if k in _COMMON_KEYS | _KEYS[self.type]}
        return out


def load_reward_function(path: str) -> Callable:
    """``pkg.module:function`` or ``pkg.module.function`` -> the callable (ValueError says what is wrong)."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"function must be a dotted path like 'my_pkg.rewards:format_reward', got {path!r}")
    module_name, colon, attr = path.partition(":")
    if not colon:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"function {path!r}: expected 'my_pkg.module:function' (or 'my_pkg.module.function')")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(_import_failure(path, module_name, exc)) from None  # an import inside the module
        raise ValueError(
            f"function {path!r}: cannot import module {module_name!r} ({exc}); is it installed, on PYTHONPATH, "
            "or a .py file next to the recipe?"
        ) from None
    except Exception as exc:  # the module itself fails while importing: a syntax error, an error at module level
        raise ValueError(_import_failure(path, module_name, exc)) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"function {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"function {path!r}: {attr!r} is not callable")
    return obj


def _import_failure(path: str, module_name: str, exc: BaseException) -> str:
    """One line for a module that fails while importing: which module, its file, the failing line and the error."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
        error = f"SyntaxError: {exc.msg}"
    else:  # the deepest frame in the module's own file (a json.loads at module level fails inside json)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
        origin = _module_file(module_name)
        frames = [f for f in frames if f.filename == origin] or frames
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        error = f"{type(exc).__name__}: {exc}"
    return f"function {path!r}: importing module {module_name!r} failed at {where} ({error}); fix the module"


def _module_file(module_name: str) -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


class RewardFunctionError(ValueError):
    """A user's reward function (a ``function`` term) raised, or returned what TRL cannot use.

    The message names the term, the function, the training step and the user's own frame (file:line);
    ``checkpoint`` is filled in by the run (the newest complete checkpoint, None before the first).
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.checkpoint: str | None = None
        self.output_dir: str | None = None

    def __str__(self) -> str:
        if self.output_dir is None:
            return self.message
        where = (
            f"the last checkpoint is {self.checkpoint} (after fixing the function: --resume auto)"
            if self.checkpoint
            else f"no checkpoint was saved yet in {self.output_dir}"
        )
        return f"{self.message}\n{where}"


def _user_frame(exc: BaseException, function: Callable) -> str:
    """``file:line in name: source line`` of the deepest frame in the function's own file (else the deepest)."""
    import inspect
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)[1:]  # [0] is the wrapper that called the function
    try:
        own = inspect.getsourcefile(function)
    except TypeError:
        own = None
    mine = [f for f in frames if own is not None and f.filename == own]
    frame = (mine or frames or [None])[-1]
    if frame is None:
        return "?"
    line = f": {frame.line.strip()}" if frame.line else ""
    return f"{frame.filename}:{frame.lineno} in {frame.name}{line}"


def reward_call_failure(name: str, function: Callable, path: str, exc: BaseException, step: int | None) -> str:
    at = f" at step {step}" if step is not None else ""
    return (
        f"reward term {name!r} (function {path}) raised{at}: {type(exc).__name__}: {exc}\n"
        f"  in {_user_frame(exc, function)}\n"
        "(the full traceback: rerun with GRPO_SIM_DEBUG=1)"
    )


def check_reward_values(values: Any, count: int, name: str, path: str, step: int | None) -> list[float | None]:
    """TRL's contract for a reward function's return value: a list of one float (or None: no reward for that
    completion) per completion. RewardFunctionError names the term and the function when it is not kept."""
    import numbers

    at = f" at step {step}" if step is not None else ""
    what = f"reward term {name!r} (function {path}) returned"
    fix = f"; return a list of {count} floats (None for no reward), one per completion, in order"
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise RewardFunctionError(f"{what} {type(values).__name__} {str(values)[:60]!r}{at}{fix}")
    values = list(values)
    if len(values) != count:
        raise RewardFunctionError(f"{what} {len(values)} values for {count} completions{at}{fix}")
    for k, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RewardFunctionError(
                f"{what} {type(value).__name__} {str(value)[:40]!r} at position {k}{at}: not a number{fix}"
            )
    return [None if v is None else float(v) for v in values]


def _function_name(path: str) -> str:
    return path.replace(":", ".").rsplit(".", 1)[-1]


def parse_reward_term(raw: Any, where: str = "rewards[0]", check: bool = True) -> RewardTerm:
    """One term from its mapping form; ValueError names ``where`` and the key. ``check`` resolves
    similarity specs and imports functions (so a typo fails before any model loads)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a reward term is a mapping with a 'type' ({', '.join(TERM_TYPES)}), got {raw!r}")
    kind = raw.get("type")
    if kind not in TERM_TYPES:
        raise ValueError(f"{where}.type: must be one of {', '.join(TERM_TYPES)}, got {kind!r}")
    unknown = set(raw) - _COMMON_KEYS - _KEYS[kind]
    if unknown:
        allowed = ", ".join(sorted(_COMMON_KEYS | _KEYS[kind]))
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} for a {kind} term (allowed: {allowed})")
    weight = raw.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or weight != weight
        or weight in (float("inf"), float("-inf"))
    ):
        raise ValueError(f"{where}.weight: must be a finite number, got {weight!r}")
    values: dict[str, Any] = {"type": kind, "weight": float(weight)}
    if kind in ("consistency", "reference"):
        similarity = raw.get("similarity", "bleu2" if kind == "consistency" else "token_f1")
        if check:
            from .similarity import get_similarity

            try:
                get_similarity(similarity)
            except (ValueError, ImportError) as exc:
                raise ValueError(f"{where}.similarity: {exc}") from None
        values["similarity"] = similarity
    if kind == "consistency" and raw.get("relaxed") is not None:
        from .rewards import RelaxedSampling

        try:
            relaxed = RelaxedSampling.parse(raw["relaxed"])
        except ValueError as exc:
            raise ValueError(f"{where}.relaxed: {exc}") from None
        values["relaxed"] = {"kappa": int(relaxed.kappa), "samples": int(relaxed.samples)}
    if kind == "reference":
        column = raw.get("column")
        if column is not None and not isinstance(column, str):
            raise ValueError(f"{where}.column: must be a column name, got {column!r}")
        values["column"] = column
    if kind == "agreement":
        ignore_empty = raw.get("ignore_empty", True)
        if not isinstance(ignore_empty, bool):
            raise ValueError(f"{where}.ignore_empty: must be true or false, got {ignore_empty!r}")
        values["ignore_empty"] = ignore_empty
    if kind == "function":
        path = raw.get("function")
        if path is None:
            raise ValueError(f"{where}.function: required: a dotted path like 'my_pkg.rewards:format_reward'")
        kwargs = raw.get("kwargs") or {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ValueError(f"{where}.kwargs: must be a mapping of keyword arguments, got {kwargs!r}")
        if check:
            try:
                load_reward_function(path)
            except ValueError as exc:
                raise ValueError(f"{where}.function: {exc}") from None
        values["function"] = path
        values["kwargs"] = dict(kwargs)
    name = raw.get("name")
    if name is None:
        name = _function_name(values["function"]) if kind == "function" else kind
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ValueError(f"{where}.name: must be a non-empty name without '/', got {name!r}")
    values["name"] = name
    return RewardTerm(**values)


def parse_reward_terms(raw: Sequence[Any], where: str = "rewards", check: bool = True) -> list[RewardTerm]:
    """Every term of a list; a ValueError lists every problem (one per line), including duplicate names."""
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"{where}: must be a list of reward terms, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{where}: the list is empty; give at least one reward term")
    terms, problems = [], []
    for k, item in enumerate(raw):
        try:
            terms.append(parse_reward_term(item, f"{where}[{k}]", check))
        except ValueError as exc:
            problems.append(str(exc))
    seen: dict[str, int] = {}
    for k, term in enumerate(terms):
        if term.name in seen:
            problems.append(
                f"{where}: two terms are named {term.name!r} (logged as rewards/{term.name}/mean); "
                "give one of them another name"
            )
        seen[term.name] = k
    if problems:
        raise ValueError("\n".join(problems))
    return terms


def legacy_reward_terms(
    similarity: str = "bleu2",
    consistency_weight: float = 1.0,
    accuracy_weight: float = 0.0,
    accuracy_metric: str = "token_f1",
    relaxed_kappa: int | None = None,
    relaxed_samples: int = 1,
) -> list[dict[str, Any]]:
    """The terms the pre-term settings meant: consistency (if weighted) + accuracy vs gold (if weighted).

    Accuracy is a ``reference`` term named ``accuracy`` on the gold answers, so its log key is unchanged.
    """
    terms: list[dict[str, Any]] = []
    if consistency_weight != 0:
        relaxed = None if relaxed_kappa is None else {"kappa": relaxed_kappa, "samples": relaxed_samples}
        terms.append(
            {
                "type": "consistency",
                "name": "consistency",
                "weight": float(consistency_weight),
                "similarity": similarity,
                "relaxed": relaxed,
            }
        )
    if accuracy_weight != 0:
        terms.append(
            {
                "type": "reference",
                "name": "accuracy",
                "weight": float(accuracy_weight),
                "similarity": accuracy_metric,
                "column": None,
            }
        )
    return terms
