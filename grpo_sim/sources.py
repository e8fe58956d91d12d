"""Named data and model sources: what a recipe names instead of a path or a hub id.

The runner, ``grpo-sim check`` and ``grpo-sim plan`` look a name up here (``DATA_SOURCES`` / ``MODEL_SOURCES``)
without knowing who provides it. A source is registered by the package that owns it, in one of two ways:

* an entry point in the group ``grpo_sim.sources`` (pyproject.toml: ``[project.entry-points."grpo_sim.sources"]``,
  ``my-data = "my_pkg.sources:MY_DATA"``): the entry point's name is the source's name, its object a
  :class:`DataSource` or a :class:`ModelSource`. It is loaded the first time a recipe names it, so an installed
  package adds a source without touching grpo-sim. The bundled demo registers ``demo`` and
  ``grpo-sim:demo-warmstart`` this way (grpo-sim's own pyproject.toml).
* :func:`register_data_source` / :func:`register_model_source` from the owning package's code.

A name is registered once: a second registration (or an entry point of the same name) is an error unless
``replace=True`` says it is meant. A data source declares its options as a pydantic model; a recipe gives them as
``data.source_options`` and the source's model checks them (:func:`source_option_problems`). This module is the
bottom of the run layer: it imports no other grpo_sim module (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ValidationError

#: the entry-point group packages register their sources in
ENTRY_POINT_GROUP = "grpo_sim.sources"


class SourceError(ValueError):
    """A source that cannot be registered or loaded (a duplicate name, an entry point that is not a source)."""


@dataclass(frozen=True)
class DataSource:
    #: (recipe, split 'train' | 'eval') -> paraphrase sets or ordinary rows, as runner.load_data returns them
    load: Callable[[Any, str], list]
    #: recipe -> n (paraphrases per set), known without loading the data
    paraphrases_per_set: Callable[[Any], int | None]
    #: the source's settings, given in the recipe as data.source_options (None: it takes none)
    options: type[BaseModel] | None = None


@dataclass(frozen=True)
class ModelSource:
    #: (recipe, cache_dir) -> a local model directory, built or fetched as the source does
    resolve: Callable[[Any, Path | None], str]


Source = TypeVar("Source", "DataSource", "ModelSource")


class SourceRegistry(MutableMapping[str, Source], Generic[Source]):
    """name -> source. A name not registered yet is looked up among the installed packages' entry points (group
    ``grpo_sim.sources``) when it is first asked for; iterating loads every entry point of the group."""

    def __init__(self, kind: str, source_type: type):
        self.kind = kind
        self.source_type = source_type
        self._sources: dict[str, Any] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str, source: Any, replace: bool = False, origin: str = "") -> None:
        if not isinstance(source, self.source_type):
            raise SourceError(
                f"{self.kind} source {name!r}{_by(origin)} is a {type(source).__name__}, not a "
                f"grpo_sim.sources.{self.source_type.__name__}"
            )
        existing = self._sources.get(name)
        if existing is not None and existing is not source and not replace:
            raise SourceError(
                f"{self.kind} source {name!r} is already registered{_by(self._origin.get(name, ''))}; a second one"
                f"{_by(origin)} would replace it: pick another name, or pass replace=True to replace it on purpose"
            )
        self._sources[name] = source
        self._origin[name] = origin

    def __getitem__(self, name: str) -> Source:
        if name not in self._sources:
            _load_entry_points(name)
        return self._sources[name]

    def __setitem__(self, name: str, source: Source) -> None:  # a plain set (tests restore entries this way)
        self._sources[name] = source

    def __delitem__(self, name: str) -> None:
        del self._sources[name]
        self._origin.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        _load_entry_points()
        return iter(list(self._sources))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _by(origin: str) -> str:
    return f" (by {origin})" if origin else ""


DATA_SOURCES: SourceRegistry[DataSource] = SourceRegistry("data", DataSource)
MODEL_SOURCES: SourceRegistry[ModelSource] = SourceRegistry("model", ModelSource)


def register_data_source(name: str, source: DataSource, replace: bool = False) -> None:
    """Register a data source under ``name`` (a recipe's ``data.train`` / ``data.eval``); a name taken already is
    an error unless ``replace=True``."""
    DATA_SOURCES.register(name, source, replace)


def register_model_source(name: str, source: ModelSource, replace: bool = False) -> None:
    """Register a model source under ``name`` (a recipe's ``model.name_or_path``); a name taken already is an
    error unless ``replace=True``."""
    MODEL_SOURCES.register(name, source, replace)


_LOADED_ENTRY_POINTS: set[tuple[str, str]] = set()  # (name, object path): each entry point is loaded once


def _entry_points(name: str | None = None) -> Iterator[tuple[str, metadata.EntryPoint]]:
    """(distribution, entry point) of the group, over every distribution's metadata found on sys.path.

    Not ``metadata.entry_points(group=...)``: that keeps one metadata copy per distribution name, and a stale
    ``*.egg-info`` left in a source checkout (on sys.path when a command runs from there) then hides the entry points
    of the installed copy. An entry point found twice (name and object alike) counts once.
    """
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRY_POINT_GROUP or (name is not None and entry_point.name != name):
                continue
            if (entry_point.name, entry_point.value) not in seen:
                seen.add((entry_point.name, entry_point.value))
                yield dist.metadata["Name"] or "?", entry_point


def _load_entry_points(name: str | None = None) -> None:
    """Register the sources the installed packages declare as entry points (only those called ``name``, if given)."""
    for dist, entry_point in _entry_points(name):
        key = (entry_point.name, entry_point.value)
        if key in _LOADED_ENTRY_POINTS:
            continue
        origin = f"package {dist}, entry point {entry_point.name} = {entry_point.value}"
        try:
            source = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, with its error, as one line
            raise SourceError(
                f"source {entry_point.name!r} ({origin}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(source, DataSource):
            DATA_SOURCES.register(entry_point.name, source, origin=origin)
        elif isinstance(source, ModelSource):
            MODEL_SOURCES.register(entry_point.name, source, origin=origin)
        else:
            raise SourceError(
                f"source {entry_point.name!r} ({origin}) is a {type(source).__name__}, not a "
                "grpo_sim.sources.DataSource or ModelSource"
            )
        _LOADED_ENTRY_POINTS.add(key)  # only once registered: a broken one fails the same way every time


def source_options(recipe: Any) -> BaseModel | None:
    """The validated ``data.source_options`` of the data source ``data.train`` names (None when it names none, or
    one without options)."""
    source = DATA_SOURCES.get(recipe.data.train)
    if source is None or source.options is None:
        return None
    return source.options.model_validate(recipe.data.source_options)


def source_option_problems(data: Any) -> tuple[dict[str, Any], list[str]]:
    """(the options with their defaults filled in, every problem naming ``data.source_options.KEY``) of a recipe's
    data section. With problems, the options are what validates without the bad keys (their defaults stand in)."""
    from difflib import get_close_matches

    given = data.source_options
    source = DATA_SOURCES.get(data.train)
    if source is None or source.options is None:
        if not given:
            return {}, []
        takes = sorted(name for name, s in DATA_SOURCES.items() if s.options is not None)
        return {}, [
            f"data.source_options: data.train {data.train!r} is not a registered data source that takes "
            f"options ({', '.join(takes)}); remove data.source_options"
        ]
    try:
        return source.options.model_validate(given).model_dump(mode="json"), []
    except ValidationError as exc:
        problems, bad = [], set()
        known = list(source.options.model_fields)
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            bad.add(key)
            path = ".".join(["data.source_options", *(str(p) for p in err["loc"])])
            if err["type"] == "extra_forbidden":
                close = get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f" (it takes {', '.join(known)})"
                problems.append(f"{path}: not an option of data source {data.train!r}{hint}")
            else:
                problems.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
        kept = {key: value for key, value in given.items() if key not in bad}
        try:
            return source.options.model_validate(kept).model_dump(mode="json"), problems
        except ValidationError:  # a required option is missing: nothing valid to stand in
            return {}, problems
