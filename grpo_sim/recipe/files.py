"""Recipe files: YAML read with clear errors, ``extends`` (deep-merged, cycles refused), ``trl_config`` (a flat
TRL / open-r1 config mapped into sections) and ``--set key.path=value`` overrides."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from ..validation import DuplicateKeyError, RecipeError, format_problems, load_yaml


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except IsADirectoryError:
        raise RecipeError(f"recipe file {path} is a directory: give the YAML file inside it") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(
            f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); a recipe is YAML text"
        ) from None
    except OSError as exc:
        raise RecipeError(f"recipe file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        data = load_yaml(text)
    except DuplicateKeyError as exc:
        raise RecipeError(f"{path}, {exc}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:
        raise RecipeError(f"{path}: not valid YAML (nested too deeply)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: a recipe must be a mapping of sections (model, data, reward, training), got {type(data).__name__}"
        )
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; nested mappings merge; ``null`` in ``over`` replaces (e.g. drops lora)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it ``extends`` (paths relative to the extending file)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise RecipeError(f"{path}: 'extends' forms a cycle: {chain}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    trl_config = data.pop("trl_config", None)
    base: dict[str, Any] = {}
    if parent is not None:
        base = load_raw(_referenced_file(path, "extends", parent, "another recipe"), (*_seen, path))
    if trl_config is not None:
        base = deep_merge(
            base,
            _trl_sections(
                _referenced_file(path, "trl_config", trl_config, "a TRL GRPO config"),
                recipe_has_rewards="rewards" in data or "rewards" in base,
            ),
        )
    return deep_merge(base, data) if base else data


def _referenced_file(path: Path, key: str, value: Any, what: str) -> Path:
    """A file a recipe names (``extends``, ``trl_config``), relative to the recipe's own directory."""
    if not isinstance(value, str):
        raise RecipeError(f"{path}: {key} must be a path to {what}, got {value!r}")
    target = (path.parent / value) if not os.path.isabs(value) else Path(value)
    if not target.exists():
        raise RecipeError(f"{path}: {key} {value!r}, but {target} does not exist")
    return target


def _trl_sections(path: Path, recipe_has_rewards: bool) -> dict[str, Any]:
    """A flat TRL / open-r1 GRPO config (GRPOConfig + ScriptArguments + ModelConfig keys) as recipe sections."""
    from ..trl_config import sections_from_flat

    sections, problems = sections_from_flat(_read_yaml(path), str(path), recipe_has_rewards)
    if problems:
        raise RecipeError(format_problems(str(path), [p.removeprefix(f"{path}: ") for p in problems]), problems)
    return sections


def apply_overrides(data: dict[str, Any], overrides: list[str] | None, source: str = "--set") -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (numbers, bools, lists, null)."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise RecipeError(f"{source} {item!r}: expected key.path=value, e.g. training.learning_rate=1e-5")
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except DuplicateKeyError as exc:
            raise RecipeError(f"{source} {item!r}: {str(exc).removeprefix('line 1: ')}") from None
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"{source} {item!r}: {where} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return data
