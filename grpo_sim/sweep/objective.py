"""Reading a finished or running trial's metrics: the objective, and new points for the pruner."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..validation import did_you_mean
from .spec import Objective


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
                raise ObjectiveError(
                    f"{metric}: {summary_path} was not written (is data.eval set and evaluation.enabled true?)"
                )
            keys = [k for k, v in summary.items() if _number(v) is not None] if isinstance(summary, dict) else []
            raise ObjectiveError(
                f"{metric}: no number {key!r} in {summary_path}{did_you_mean(key, keys)} "
                f"(has: {', '.join(sorted(keys)[:12])})"
            )
    rows = _read_metrics_rows(trial_dir / "metrics.jsonl")
    for row in reversed(rows):
        value = _number(row.get(key))
        if value is not None:
            return value
    keys = sorted({k for r in rows for k, v in r.items() if _number(v) is not None})
    raise ObjectiveError(
        f"{metric}: never logged in {trial_dir / 'metrics.jsonl'}{did_you_mean(key, keys)}"
        + (f" (logged: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''})" if keys else "")
    )


def read_objective(objective: Objective, trial_dir: Path) -> tuple[float, dict[str, float]]:
    parts = {metric: read_metric(metric, trial_dir) for metric, _ in objective.terms()}
    value = sum(weight * parts[metric] for metric, weight in objective.terms())
    if not math.isfinite(value):
        raise ObjectiveError(f"objective is {value} ({parts})")
    return value, parts


class MetricWatcher:
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
