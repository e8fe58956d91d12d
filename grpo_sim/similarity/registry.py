"""Resolve similarity specs (names, parameterised specs, dotted import paths) to metrics.

Accepted specs:

* a registered name: ``"bleu2"``, ``"rouge_l"``, ``"exact_match"``, ``"token_f1"``, ``"chrf"``,
  ``"embedding"``, ``"bmas"`` ...
* a name with parameters: ``"bleu:n=3"``, ``"embedding:model=/path/to/model,device=cuda"``
  or a mapping ``{"name": "bleu", "n": 3}``;
* a user function by dotted import path: ``"my_pkg.my_module:my_sim"`` where
  ``my_sim(texts_a, texts_b) -> matrix`` (len(a) x len(b), values in [0, 1]);
* a :class:`~grpo_sim.similarity.base.Similarity` instance or a plain callable.

The built-in metrics register themselves when ``grpo_sim.similarity`` imports ``lexical`` and ``embedding``;
this module imports none of them (no import cycle), and Python imports the package before any of its modules.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping

from .base import CallableSimilarity, Similarity

_FACTORIES: dict[str, Callable[..., Similarity]] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def _claim(name: str, factory: Callable[..., Similarity], replace: bool) -> None:
    """Refuse a second metric under a taken name (a plugin must not silently swap out another's metric)."""
    current = _FACTORIES.get(name)
    if current is None or replace or current is factory:
        return
    same_definition = (getattr(current, "__module__", None), getattr(current, "__qualname__", None)) == (
        getattr(factory, "__module__", None),
        getattr(factory, "__qualname__", None),
    )
    if not same_definition:  # the same class re-registered by a reloaded module is not a clash
        raise ValueError(
            f"similarity {name!r} is already registered "
            f"({current.__module__}.{current.__qualname__}); choose another name, or pass "
            "replace=True to register() to override it on purpose"
        )


def register(name: str, replace: bool = False, **defaults: Any) -> Callable:
    """Decorator registering a metric factory under ``name`` (with optional preset parameters).

    A name can be registered once; ``replace=True`` overrides an existing metric on purpose.
    """

    def deco(factory: Callable[..., Similarity]) -> Callable[..., Similarity]:
        _claim(name, factory, replace)
        _FACTORIES[name] = factory
        _DEFAULTS[name] = defaults
        return factory

    return deco


def register_alias(name: str, target: str, replace: bool = False, **defaults: Any) -> None:
    """``name`` builds ``target``'s metric with ``defaults`` preset (``bleu2`` = ``bleu`` with n=2)."""
    _claim(name, _FACTORIES[target], replace)
    _FACTORIES[name] = _FACTORIES[target]
    _DEFAULTS[name] = defaults


def available() -> list[str]:
    """Names of every registered similarity metric."""
    return sorted(_FACTORIES)


def _parse_value(raw: str) -> Any:
    low = raw.lower()
    if low in {"true", "false"}:
        return low == "true"
    if low in {"none", "null"}:
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, params = spec.partition(":")
    kwargs: dict[str, Any] = {}
    if params:
        for item in params.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(
                    f"similarity spec {spec!r}: parameter {item!r} is not key=value "
                    "(example: 'bleu:n=3' or 'embedding:model=/path,device=cpu')"
                )
            kwargs[key.strip()] = _parse_value(value.strip())
    return name.strip(), kwargs


def _import_callable(path: str) -> Callable:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"similarity {path!r}: cannot import module {module_name!r} ({exc})") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"similarity {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj) and issubclass(obj, Similarity):
        return obj()
    if not callable(obj):
        raise ValueError(f"similarity {path!r}: {attr!r} is not callable")
    return obj


def get_similarity(spec: Any) -> Similarity:
    """Turn any accepted spec into a :class:`Similarity` (see the module docstring)."""
    if isinstance(spec, Similarity):
        return spec
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "name" not in params:
            raise ValueError(f"similarity mapping {spec!r} needs a 'name' key, e.g. {{'name': 'bleu', 'n': 2}}")
        name = params.pop("name")
        return _build(str(name), params, str(spec))
    if isinstance(spec, str):
        if ":" in spec and "." in spec.partition(":")[0] and "=" not in spec.partition(":")[2]:
            obj = _import_callable(spec)
            return obj if isinstance(obj, Similarity) else CallableSimilarity(obj, name=spec)
        name, kwargs = _parse_spec(spec)
        return _build(name, kwargs, spec)
    if callable(spec):
        return CallableSimilarity(spec)
    raise ValueError(
        f"cannot interpret {spec!r} as a similarity: give a name ({', '.join(available())}), "
        "a 'module:function' path, or a callable"
    )


def _build(name: str, kwargs: dict[str, Any], spec: str) -> Similarity:
    if name not in _FACTORIES:
        import difflib

        close = difflib.get_close_matches(name, _FACTORIES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown similarity {name!r}.{hint} Known: {', '.join(sorted(_FACTORIES))}; "
            "or give a user function as 'my_pkg.my_module:my_sim'."
        )
    params = {**_DEFAULTS[name], **kwargs}
    try:
        metric = _FACTORIES[name](**params)
    except TypeError as exc:
        raise ValueError(f"similarity {spec!r}: bad parameters {kwargs} ({exc})") from exc
    return metric
