"""Where a recipe's relative paths point: data files next to the recipe file, with the current-directory form kept.

``data.train`` / ``data.eval`` given as a relative path are looked up next to the recipe file first (as ``extends``,
``trl_config`` and ``base_recipe`` are), then in the current directory (the form recipes used before, kept working
where the file exists there). A path found neither way is left as written; loading it then fails with a message
naming both places. A ``function`` reward term's module is found next to the recipe too: the recipe's directory is
appended to ``sys.path`` (after the installed packages, so it cannot shadow them), with no ``PYTHONPATH`` to set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["add_recipe_dir_to_path", "data_path_places", "recipe_dir", "resolve_data_path"]


def recipe_dir(source: str | os.PathLike[str] | None) -> Path | None:
    """The directory of the recipe file ``source``; None when it is not a file (a mapping built in code)."""
    if not source:
        return None
    path = Path(source)
    return path.resolve().parent if path.is_file() else None


def _is_local_relative(spec: str) -> bool:
    return bool(spec) and not spec.startswith("hf:") and not os.path.isabs(spec)


def data_path_places(spec: str, source: str | os.PathLike[str] | None) -> list[Path]:
    """The places a relative data path is looked for, in order: next to the recipe, then the current directory."""
    if not _is_local_relative(spec):
        return [Path(spec)]
    folder = recipe_dir(source)
    places = [folder / spec] if folder is not None else []
    cwd = Path.cwd() / spec
    return places + ([cwd] if cwd not in places else [])


def resolve_data_path(spec: str | None, source: str | os.PathLike[str] | None) -> str | None:
    """``spec`` as an absolute path when it is a relative path found next to the recipe (or, failing that, in the
    current directory); anything else (a named source, ``hf:``, an absolute path, a path found nowhere) as given."""
    if spec is None or not _is_local_relative(spec):
        return spec
    for place in data_path_places(spec, source):
        if place.exists():
            return str(place)
    return spec


def add_recipe_dir_to_path(source: str | os.PathLike[str] | None) -> None:
    """Let ``function`` terms import a module that sits next to the recipe file (appended to ``sys.path``)."""
    folder = recipe_dir(source)
    if folder is not None and str(folder) not in sys.path:
        sys.path.append(str(folder))
