"""Percentile bootstrap intervals over sets (every summary number's 95% interval) and paired differences
between two evaluations of the same sets. Pure numpy; deterministic for a seed."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .predictions import EvalError


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, K)`` bootstrap means of the columns of ``values`` (``(n, K)``, NaN = missing).

    Each replicate resamples the ``n`` rows with replacement (multinomial counts, the same
    draw for every column, so intervals of different keys come from the same replicates) and
    averages the finite entries of each column; a replicate with no finite entry gives NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    n, k = values.shape
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    mask = finite.astype(np.float64)
    rng = np.random.default_rng(seed)
    pvals = np.full(n, 1.0 / n)
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    out = np.empty((n_boot, k), dtype=np.float64)
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        counts = rng.multinomial(n, pvals, size=m).astype(np.float64)  # (m, n)
        num = counts @ filled
        den = counts @ mask
        with np.errstate(invalid="ignore", divide="ignore"):
            out[done : done + m] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        done += m
    return out


def _percentile_interval(reps: np.ndarray, confidence: float) -> tuple[float, float] | None:
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_cis(
    values: np.ndarray, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> list[tuple[float, float] | None]:
    """Percentile bootstrap intervals of the mean of every column of ``values`` (``(n, K)``;
    NaN entries are missing and left out of each replicate's mean). ``None`` for a column
    with no finite entry or when ``n_boot == 0``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"bootstrap_cis needs a 2-d (sets x keys) array, got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if n_boot == 0 or values.shape[0] == 0:
        return [None] * values.shape[1]
    reps = _bootstrap_means(values, n_boot, seed)
    return [_percentile_interval(reps[:, j], confidence) for j in range(values.shape[1])]


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (one value per set).

    ``n_boot`` replicates each resample the values with replacement; the interval is the
    ``(1 - confidence) / 2`` and ``1 - (1 - confidence) / 2`` percentiles (numpy's linear
    interpolation) of the replicate means. NaN values are ignored. Deterministic for a seed.
    """
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1, 1)
    arr = arr[np.isfinite(arr[:, 0])]
    return bootstrap_cis(arr, n_boot=n_boot, seed=seed, confidence=confidence)[0]


def _per_set_map(rows: Any, key: str) -> dict[str, float]:
    if isinstance(rows, Mapping):
        return {str(k): (float(v) if v is not None else math.nan) for k, v in rows.items()}
    out: dict[str, float] = {}
    for k, row in enumerate(rows):
        if "set_id" not in row:
            raise EvalError(f"per-set row {k}: missing field 'set_id'")
        value = row.get(key)
        out[str(row["set_id"])] = float(value) if value is not None else math.nan
    return out


def paired_difference(
    per_set_a: Any, per_set_b: Any, key: str, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Paired difference ``mean(a - b)`` of ``key`` over the sets both sides scored.

    ``per_set_a`` / ``per_set_b``: per-set rows (dicts with ``set_id`` and ``key``, as in
    ``per_set.jsonl``) or mappings ``set_id -> value``. Sets are matched by ``set_id``; sets
    where either value is missing are left out. Returns ``{"diff", "ci", "num_sets"}`` with a
    percentile bootstrap interval over the matched sets (``ci`` is ``None`` when ``n_boot=0``).
    """
    a = _per_set_map(per_set_a, key)
    b = _per_set_map(per_set_b, key)
    common = [s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])]
    if not common:
        raise EvalError(
            f"paired difference of '{key}': no set has a value on both sides "
            f"({len(a)} and {len(b)} sets; are they from the same dataset?)"
        )
    d = np.asarray([a[s] - b[s] for s in common], dtype=np.float64)
    ci = bootstrap_ci(d, n_boot=n_boot, seed=seed, confidence=confidence)
    return {"diff": float(d.mean()), "ci": list(ci) if ci is not None else None, "num_sets": len(common)}
