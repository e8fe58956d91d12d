"""Errors in the files a user writes (recipes, sweep files): one line per problem, with a key path and a
did-you-mean hint for unknown keys."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ValidationError


class RecipeError(ValueError):
    """A recipe (or an override) is invalid; the message names the file and every bad key.

    ``problems`` lists them one by one (empty when the error is a single sentence).
    """

    def __init__(self, message: str, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


def format_problems(source: str, problems: Sequence[str]) -> str:
    """``SOURCE: N problem(s):`` and one indented line per problem (multi-line problems stay indented)."""
    items = ["\n    ".join(str(p).splitlines()) for p in problems]
    return f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(items)


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def known_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model section at ``loc`` (a pydantic error location under ``root``) accepts."""
    node: Any = root
    for part in loc:
        node = _without_none(node)
        origin = typing.get_origin(node)
        if origin is dict:
            node = typing.get_args(node)[1]
            continue
        if origin is list:
            node = typing.get_args(node)[0]
            continue
        model = _model_of(node)
        field = model.model_fields.get(str(part)) if model else None
        if field is None:
            return []
        node = field.annotation
    node = _without_none(node)
    model = _model_of(node) if typing.get_origin(node) not in (dict, list) else None
    return list(model.model_fields) if model else []


def location_text(loc: tuple) -> str:
    """``a.b.c``; a key that holds '.' or ':' (a dotted recipe key, ``eval:x``) in brackets: ``parameters[a.b]``."""
    text = ""
    for part in loc:
        part = str(part)
        text += f"[{part}]" if ("." in part or ":" in part or not part) else (f".{part}" if text else part)
    return text or "top level"


def format_validation(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem in ``exc`` (raised validating ``root``): where, what, and the value given."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), known_keys(root, loc[:-1]))
            problems.append(f"{location_text(loc)}: unknown key in {location_text(loc[:-1])}{hint}")
        elif err["type"] == "missing":
            problems.append(f"{location_text(loc)}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = err.get("input")
            got = "" if isinstance(shown, dict) else f" (got {shown!r})"  # a whole section is noise
            problems.append(f"{location_text(loc)}: {msg}{got}")
    return problems


# ------------------------------------------------------------------------------------------ YAML, one loader
class DuplicateKeyError(ValueError):
    """A YAML mapping gives the same key twice (PyYAML would silently keep the later value)."""


def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses a key given twice in one mapping, naming both lines."""

    def construct_mapping(loader, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: later keys override on purpose
                    continue
                key = loader.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise DuplicateKeyError(
                        f"line {line}: key {key!r} is given twice in the same mapping (first at line {first}); "
                        "YAML would keep only the later value: remove one of them"
                    )
                seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return UniqueKeyLoader


_LOADER: Any = None


def load_yaml(text: str) -> Any:
    """Parse YAML text as ``yaml.safe_load`` does, but refuse a key given twice in one mapping
    (:class:`DuplicateKeyError`, naming the key and both lines). The one YAML reader of every file a user writes:
    recipes, their ``extends`` and ``trl_config`` files, sweep files, ``--set`` values."""
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _unique_key_loader()
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass


# ------------------------------------------------------------------------------------------ dtype names
#: every spelling of a dtype a user may write (recipes, model_init_kwargs, --dtype), and the torch name it means
DTYPE_ALIASES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def dtype_name(value: Any, where: str = "dtype") -> Any:
    """The torch name of a dtype spelled any usual way (``bf16``, ``fp16``, ``fp32``, ``torch.bfloat16``, ...);
    ``None`` and torch dtypes pass through. ValueError names ``where`` and the accepted spellings."""
    if value is None or not isinstance(value, str):
        if value is None or type(value).__name__ == "dtype":  # torch.dtype, without importing torch here
            return value
        raise ValueError(f"{where}: must be a dtype name ({', '.join(DTYPE_ALIASES)}), got {value!r}")
    key = value.strip().lower().removeprefix("torch.")
    if key not in DTYPE_ALIASES:
        raise ValueError(
            f"{where}: unknown dtype {value!r}; use one of {', '.join(DTYPE_ALIASES)}{did_you_mean(key, DTYPE_ALIASES)}"
        )
    return DTYPE_ALIASES[key]
