"""An evaluation's files and what is read back from them: file names, NaN-safe JSON/JSONL writing (atomic),
:class:`ModelResult`, and earlier results (``summary.json``, ``predictions.jsonl``, ``per_set.jsonl``) loaded
for a baseline."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..io import atomic_write_text
from .bootstrap import bootstrap_cis
from .predictions import EvalError, read_predictions

SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions.jsonl"
PER_SET_FILE = "per_set.jsonl"
REPORT_FILE = "report.md"
BASELINE_PREDICTIONS_FILE = "baseline_predictions.jsonl"
BASELINE_PER_SET_FILE = "baseline_per_set.jsonl"
PLOT_BARS = "plot_summary_bars.png"
PLOT_HIST = "plot_consistency_hist.png"
PLOT_POSITION = "plot_accuracy_by_position.png"
SCHEMA_VERSION = 1


def _json_default(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def json_safe(x: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(json_safe(dict(r)), ensure_ascii=False, default=_json_default) + "\n" for r in rows)
    return atomic_write_text(path, text)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(path)
    rows = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                try:
                    rows.append(json.loads(raw))
                except json.JSONDecodeError as e:
                    raise EvalError(f"{path}: line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
    return rows


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(
        path, json.dumps(json_safe(obj), indent=2, ensure_ascii=False, default=_json_default) + "\n"
    )


@dataclass
class ModelResult:
    """Everything known about one evaluated model."""

    label: str  # "model" or "baseline"
    name: str
    summary: dict[str, Any]
    per_set: list[dict[str, Any]] | None = None
    predictions: list[dict[str, Any]] | None = None
    source: str = "generated"  # generated | replayed | per_set | summary
    notes: list[str] = field(default_factory=list)


def summary_from_per_set(rows: Sequence[Mapping[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """A flat summary (means over sets + bootstrap intervals) rebuilt from ``per_set.jsonl`` rows."""
    skip = {"set_id", "num_paraphrases"}
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if (
                k not in skip
                and k not in keys
                and (v is None or isinstance(v, (int, float)))
                and not isinstance(v, bool)
                and not k.endswith("_by_position")
            ):
                keys.append(k)
    mat = np.array([[np.nan if r.get(k) is None else float(r[k]) for k in keys] for r in rows], dtype=np.float64)
    mat = mat.reshape(len(rows), len(keys))
    cis = bootstrap_cis(mat, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"num_sets": len(rows)}
    for j, k in enumerate(keys):
        col = mat[:, j]
        fin = np.isfinite(col)
        out[k] = float(col[fin].mean()) if fin.any() else None
        out[f"{k}_ci"] = list(cis[j]) if cis[j] is not None and out[k] is not None else None
    return out


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an earlier evaluation left: ``{"summary", "per_set", "predictions"}`` (each may be None).

    ``path`` is an output directory, its ``summary.json``, ``predictions.jsonl`` or ``per_set.jsonl``.
    """
    p = Path(path)
    if p.is_dir():
        d = p
        files = {"summary": d / SUMMARY_FILE, "predictions": d / PREDICTIONS_FILE, "per_set": d / PER_SET_FILE}
    else:
        d = p.parent
        files = {"summary": d / SUMMARY_FILE, "predictions": d / PREDICTIONS_FILE, "per_set": d / PER_SET_FILE}
        if p.suffix == ".json":
            files["summary"] = p
        elif p.suffix == ".jsonl":
            rows = read_jsonl(p)
            is_pred = bool(rows) and isinstance(rows[0], dict) and "answer" in rows[0]
            files["predictions" if is_pred else "per_set"] = p
            if is_pred:
                files["per_set"] = d / "__none__"
        else:
            raise EvalError(
                f"{p}: expected an evaluation output directory, summary.json, predictions.jsonl or per_set.jsonl"
            )
    out: dict[str, Any] = {"summary": None, "per_set": None, "predictions": None, "path": str(p)}
    if files["summary"].is_file():
        try:
            data = json.loads(files["summary"].read_text(encoding="utf-8"))
        except ValueError as exc:
            raise EvalError(f"{files['summary']}: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and "models" in data:
            data = data["models"].get("model") or next(iter(data["models"].values()), None)
        out["summary"] = data
    if files["predictions"].is_file():
        out["predictions"] = read_predictions(files["predictions"])
    if files["per_set"].is_file():
        out["per_set"] = read_jsonl(files["per_set"])
    if out["summary"] is None and out["predictions"] is None and out["per_set"] is None:
        raise EvalError(f"{p}: no {SUMMARY_FILE}, {PREDICTIONS_FILE} or {PER_SET_FILE} found")
    return out


def is_results_path(spec: Any) -> bool:
    if not isinstance(spec, (str, os.PathLike)):
        return False
    p = Path(spec)
    if p.is_file():
        return p.suffix in (".json", ".jsonl")
    if p.is_dir():
        is_model = (p / "config.json").is_file() or (p / "adapter_config.json").is_file() or any(p.glob("checkpoint-*"))
        has_results = (p / SUMMARY_FILE).is_file() or (p / PREDICTIONS_FILE).is_file()
        return has_results and not is_model
    return False
