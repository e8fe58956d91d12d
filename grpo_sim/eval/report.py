"""Run an evaluation end to end and write its outputs: JSON, JSONL, a Markdown report, PNG plots.

Output directory (every file written atomically: a temp file in the same directory, then
``os.replace``):

* ``predictions.jsonl`` -- one row per paraphrase and level: ``set_id, paraphrase_id, level,
  question, prompt, passage_ids, answer, answers`` (gold);
* ``per_set.jsonl`` -- one row per set: every per-set value of the summary keys, plus
  ``em_by_position`` / ``f1_by_position`` / ``rouge_l_by_position`` (accuracy of each
  paraphrase, in set order);
* ``summary.json`` -- ``{"schema_version": 1, <the model's flat summary>, "models": {"model":
  {...}, "baseline": {...}}, "comparison": {...} | null, "config": {...}, "files": {...}}``:
  each entry of ``models`` is the flat summary of :func:`grpo_sim.eval.metrics.summarize` plus
  ``name``; the evaluated model's flat summary is repeated at the top level (so
  ``summary["consistency_e2e_bleu2"]`` is the model's number); ``comparison`` holds paired
  differences ``model - baseline`` with intervals;
* ``baseline_predictions.jsonl`` / ``baseline_per_set.jsonl`` when the baseline was generated
  or rescored;
* ``report.md`` -- a collapse warning first when there is one (:func:`result_warnings`), then the
  tables: accuracy, consistency, the collapse figures next to it; ``plot_summary_bars.png``
  (model vs baseline bars with 95%
  intervals), ``plot_consistency_hist.png`` (per-set end-to-end consistency),
  ``plot_accuracy_by_position.png`` (accuracy by paraphrase position).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..data.schema import ParaphraseSet, _coerce_sets, read_psets
from ..io import atomic_write_bytes, atomic_write_text
from .generate import GenerationOptions, _vllm_engine, load_eval_model, resolve_model_dir
from .metrics import (
    DEFAULT_METRICS,
    EMPTY_ANSWER_WARN_RATE,
    MODAL_ANSWER_WARN_SHARE,
    ScoringOptions,
    _resolve_metrics,
    bootstrap_cis,
    collapse_warnings,
    metric_key,
    numeric_keys,
    paired_difference,
)
from .predictions import (
    LEVELS,
    EvalError,
    check_predictions,
    check_sets_for_consistency,
    read_predictions,
    views_from_sets,
)

__all__ = [
    "PREDICTIONS_FILE",
    "PER_SET_FILE",
    "SUMMARY_FILE",
    "REPORT_FILE",
    "ModelResult",
    "atomic_write_bytes",
    "atomic_write_text",
    "evaluate_model",
    "load_results",
    "print_summary_table",
    "render_report",
    "write_jsonl",
    "read_jsonl",
]

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


# --------------------------------------------------------------------------------------------
# Atomic file writing
# --------------------------------------------------------------------------------------------


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


def _clean(x: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(_clean(dict(r)), ensure_ascii=False, default=_json_default) + "\n" for r in rows)
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
    return atomic_write_text(path, json.dumps(_clean(obj), indent=2, ensure_ascii=False, default=_json_default) + "\n")


# --------------------------------------------------------------------------------------------
# One model's results
# --------------------------------------------------------------------------------------------


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


def _load_sets(sets: Any, max_sets: int | None) -> list[ParaphraseSet] | None:
    if sets is None:
        return None
    if isinstance(sets, (str, os.PathLike)):
        out = read_psets(sets)
    else:
        out = _coerce_sets(sets)
    if max_sets is not None:
        if int(max_sets) < 1:
            raise EvalError(f"max_sets must be >= 1, got {max_sets}")
        out = out[: int(max_sets)]
    return out


def _check_levels(levels: Sequence[str]) -> list[str]:
    if isinstance(levels, str):
        levels = [x.strip() for x in levels.split(",") if x.strip()]
    allowed = set(LEVELS) | {"retriever"}
    bad = [x for x in levels if x not in allowed]
    if bad:
        raise EvalError(f"levels: unknown level {bad[0]!r}; use any of e2e, generator, retriever")
    gen = [x for x in LEVELS if x in levels]
    if not gen:
        raise EvalError("levels: give at least one of e2e, generator (retriever consistency is always computed "
                        "when the data has passage ids)")
    return gen


def summary_from_per_set(rows: Sequence[Mapping[str, Any]], n_boot: int, seed: int) -> dict[str, Any]:
    """A flat summary (means over sets + bootstrap intervals) rebuilt from ``per_set.jsonl`` rows."""
    skip = {"set_id", "num_paraphrases"}
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in skip and k not in keys and (v is None or isinstance(v, (int, float))) \
                    and not isinstance(v, bool) and not k.endswith("_by_position"):
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
            raise EvalError(f"{p}: expected an evaluation output directory, summary.json, predictions.jsonl "
                            "or per_set.jsonl")
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


def _is_results_path(spec: Any) -> bool:
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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _generate_all(model: Any, tokenizer: Any, sets: list[ParaphraseSet], levels: list[str], gen: GenerationOptions
                  ) -> list[dict[str, Any]]:
    preds: list[dict[str, Any]] = []
    for level in levels:
        preds.extend(gen.generate(model, tokenizer, sets, level=level))
    return preds


def _obtain_model(model_or_path: Any, tokenizer: Any, backend: str, device: Any, dtype: Any, seed: int
                  ) -> tuple[Any, Any, str]:
    if isinstance(model_or_path, tuple) and len(model_or_path) == 2:
        model_or_path, tokenizer = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        if backend == "vllm":
            from ..models.loading import load_tokenizer

            kind, loc = resolve_model_dir(model_or_path)
            if tokenizer is None:
                tokenizer = load_tokenizer(loc)
            return _vllm_engine(str(model_or_path), seed), tokenizer, str(model_or_path)
        model, tok, desc = load_eval_model(model_or_path, device=device, dtype=dtype)
        return model, tokenizer or tok, desc
    if tokenizer is None:
        raise EvalError("evaluate_model: a model object needs its tokenizer (tokenizer=...)")
    name = getattr(getattr(model_or_path, "config", None), "_name_or_path", None) or type(model_or_path).__name__
    return model_or_path, tokenizer, str(name)


def _score(label: str, name: str, sets: list[ParaphraseSet] | None, preds: list[dict[str, Any]], source: str,
           scoring: ScoringOptions) -> ModelResult:
    summary, per_set = scoring.score(sets, preds, source=f"{label} predictions")
    return ModelResult(label, name, {"name": name, **summary}, per_set, preds, source)


def _baseline_result(baseline: Any, sets: list[ParaphraseSet] | None, levels: list[str], gen: GenerationOptions,
                     scoring: ScoringOptions, backend: str, device: Any, dtype: Any) -> ModelResult:
    if _is_results_path(baseline):
        found = load_results(baseline)
        name = str(baseline)
        if found["summary"] and found["summary"].get("name"):
            name = f"{found['summary']['name']} ({baseline})"
        if found["predictions"] is not None:
            preds = [r for r in found["predictions"] if r["level"] in levels]
            if not preds:
                raise EvalError(f"baseline {baseline}: its predictions have none of the levels {levels}")
            res = _score("baseline", name, sets, preds, "replayed", scoring)
            return res
        if found["per_set"] is not None:
            summary = summary_from_per_set(found["per_set"], scoring.n_boot, scoring.seed)
            return ModelResult("baseline", name, {"name": name, **summary}, found["per_set"], None, "per_set")
        return ModelResult("baseline", name, {"name": name, **found["summary"]}, None, None, "summary")
    if isinstance(baseline, (str, os.PathLike)) and str(baseline).endswith((".json", ".jsonl")):
        raise FileNotFoundError(f"baseline {baseline}: results file not found")
    if sets is None:
        raise EvalError("a baseline model needs the data (paraphrase sets) to generate answers")
    model, tok, desc = _obtain_model(baseline, None, backend, device, dtype, gen.seed)
    preds = _generate_all(model, tok, sets, levels, gen)
    return _score("baseline", desc, sets, preds, "generated", scoring)


def _comparison(model: ModelResult, base: ModelResult, n_boot: int, seed: int) -> dict[str, Any]:
    keys = [k for k in numeric_keys(model.summary) if model.summary.get(k) is not None
            and base.summary.get(k) is not None]
    diffs: dict[str, Any] = {}
    note = None
    for k in keys:
        if model.per_set is not None and base.per_set is not None:
            try:
                diffs[k] = paired_difference(model.per_set, base.per_set, k, n_boot=n_boot, seed=seed)
                continue
            except EvalError:
                pass
        diffs[k] = {"diff": float(model.summary[k]) - float(base.summary[k]), "ci": None, "num_sets": None}
        note = ("the baseline has no per-set results (summary only): differences of means without "
                "intervals, not paired")
    out: dict[str, Any] = {"of": "model", "against": "baseline", "differences": diffs}
    if note:
        out["note"] = note
    return out


def evaluate_model(
    model_or_path: Any,
    sets: Any,
    output_dir: str | os.PathLike[str] | None = None,
    levels: Sequence[str] = ("e2e", "generator"),
    baseline: Any = None,
    *,
    tokenizer: Any = None,
    predictions: Any = None,
    metrics: Sequence[Any] = DEFAULT_METRICS,
    template: str = "rag_short_answer",
    max_new_tokens: int = 32,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    backend: str = "hf",
    device: str | None = None,
    dtype: Any = None,
    n_boot: int = 1000,
    embedding_model: str | None = None,
    judge: Any = None,
    max_sets: int | None = None,
    progress: bool = True,
    plots: bool = True,
    name: str | None = None,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a model (or replay its predictions) and, with ``output_dir``, write every output.

    Args:
        model_or_path: a local model directory, hub id, training output directory (LoRA adapters
            via ``adapter_config.json``, or ``checkpoint-N`` subdirectories), a loaded model
            (with ``tokenizer=``) or a ``(model, tokenizer)`` pair. ``None`` with ``predictions``.
        sets: paraphrase sets or a JSONL path (``None`` in replay mode: sets rebuilt from rows).
        levels: any of ``"e2e"``, ``"generator"`` (retriever consistency needs no model).
        baseline: a model spec as ``model_or_path``, or an earlier output directory /
            ``summary.json`` / ``predictions.jsonl`` / ``per_set.jsonl``. Earlier predictions are
            rescored with this run's metrics and sets; differences are paired over sets.
        predictions: replay mode: prediction rows or a ``predictions.jsonl`` path; no model runs.
        metrics: similarity registry specs (``alias=spec`` to name a key).
        n_boot: bootstrap replicates for every interval (0: no intervals).
        judge: an :class:`~grpo_sim.eval.judge.LLMJudge` for judge consistency / accuracy.
        system_prompt, chat_template_kwargs: the training prompts' system message and chat template arguments
            (a recipe's ``data.system_prompt`` and ``model.chat_template_kwargs``).

    Returns the ``summary.json`` content (see the module docstring): the model's flat summary
    keys (``result["accuracy_em"]``, ``result["consistency_e2e_bleu2_ci"]`` ...) plus ``models``,
    ``comparison``, ``config`` and, with ``output_dir``, ``files``.
    """
    gen_levels = _check_levels(levels)
    data = _load_sets(sets, max_sets)
    if data is not None:
        check_sets_for_consistency(views_from_sets(data), source=str(sets) if isinstance(sets, (str, os.PathLike))
                                   else "data")
    gen = GenerationOptions(template=template, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            do_sample=do_sample, temperature=temperature, top_p=top_p, seed=seed, backend=backend,
                            progress=progress, system_prompt=system_prompt, chat_template_kwargs=chat_template_kwargs)
    scoring = ScoringOptions(metrics=tuple(metrics), n_boot=n_boot, seed=seed, embedding_model=embedding_model,
                             judge=judge)
    _resolve_metrics(metrics, embedding_model)  # fail on a bad metric before any generation (models load lazily)

    if predictions is not None:
        src = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions"
        rows = read_predictions(predictions) if isinstance(predictions, (str, os.PathLike)) else \
            check_predictions(predictions, source=src)
        rows = [r for r in rows if r["level"] in gen_levels]
        if not rows:
            raise EvalError(f"{src}: no predictions of the levels {gen_levels}")
        if data is not None and max_sets is not None:
            keep = {s.set_id for s in data}
            rows = [r for r in rows if r["set_id"] in keep]
        label_name = name or (str(model_or_path) if model_or_path is not None else f"replay of {src}")
        model_res = _score("model", label_name, data, rows, "replayed", scoring)
    else:
        if model_or_path is None:
            raise EvalError("evaluate_model needs a model (or predictions=... to replay a predictions file)")
        if data is None:
            raise EvalError("evaluate_model needs the data (paraphrase sets) to generate answers")
        model, tok, desc = _obtain_model(model_or_path, tokenizer, backend, device, dtype, seed)
        preds = _generate_all(model, tok, data, gen_levels, gen)
        model_res = _score("model", name or desc, data, preds, "generated", scoring)

    base_res = None
    if baseline is not None:
        base_res = _baseline_result(baseline, data, gen_levels, gen, scoring, backend, device, dtype)

    config = {
        "grpo_sim_version": __version__,
        "data": str(sets) if isinstance(sets, (str, os.PathLike)) else None,
        "levels": gen_levels,
        "metrics": [metric_key(m)[0] for m in metrics],
        "metric_specs": [m if isinstance(m, (str, dict)) else repr(m) for m in metrics],
        "template": template,
        "decoding": {"do_sample": bool(do_sample), "temperature": temperature if do_sample else None,
                     "top_p": top_p if do_sample else None, "max_new_tokens": max_new_tokens, "seed": seed},
        "backend": backend,
        "n_boot": n_boot,
        "confidence": 0.95,
        "bootstrap": "percentile, sets resampled with replacement",
        "mode": "replay" if predictions is not None else "generate",
        "judge": {"url": judge.url, "model": judge.model} if judge is not None else None,
        "max_sets": max_sets,
    }
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        **model_res.summary,  # the evaluated model's numbers, flat, at the top level too
        "models": {"model": model_res.summary},
        "comparison": None,
        "config": config,
    }
    if base_res is not None:
        result["models"]["baseline"] = base_res.summary
        result["comparison"] = _comparison(model_res, base_res, n_boot, seed)
        result["config"]["baseline"] = {"spec": str(baseline) if isinstance(baseline, (str, os.PathLike)) else
                                        base_res.name, "source": base_res.source}
    result = _clean(result)
    if output_dir is not None:
        result["files"] = write_outputs(output_dir, result, model_res, base_res, plots=plots)
    return result


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def write_outputs(output_dir: str | os.PathLike[str], result: dict[str, Any], model_res: ModelResult,
                  base_res: ModelResult | None, plots: bool = True) -> dict[str, str]:
    """Write every output file of one evaluation; returns ``{kind: file name}``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if model_res.predictions is not None:
        write_jsonl(out / PREDICTIONS_FILE, model_res.predictions)
        files["predictions"] = PREDICTIONS_FILE
    if model_res.per_set is not None:
        write_jsonl(out / PER_SET_FILE, model_res.per_set)
        files["per_set"] = PER_SET_FILE
    if base_res is not None and base_res.predictions is not None:
        write_jsonl(out / BASELINE_PREDICTIONS_FILE, base_res.predictions)
        files["baseline_predictions"] = BASELINE_PREDICTIONS_FILE
    if base_res is not None and base_res.per_set is not None:
        write_jsonl(out / BASELINE_PER_SET_FILE, base_res.per_set)
        files["baseline_per_set"] = BASELINE_PER_SET_FILE
    if plots:
        files.update(make_plots(out, result, model_res, base_res))
    files["summary"] = SUMMARY_FILE
    files["report"] = REPORT_FILE
    result["files"] = files
    atomic_write_text(out / REPORT_FILE, render_report(result))
    write_json(out / SUMMARY_FILE, result)
    return files


_LEVEL_TITLES = {"e2e": "end-to-end", "generator": "generator", "retriever": "retriever"}
_OTHER_TITLES = {"empty_answer_rate": "empty answers (share)",
                 "cross_set_modal_answer_share": "one answer across different sets (share)"}
_ACC_TITLES = {"accuracy_em": "exact match (EM)", "accuracy_f1": "token F1", "accuracy_rouge_l": "ROUGE-L",
               "accuracy_bleu2": "BLEU-2 to the references", "accuracy_embedding": "embedding to the references",
               "accuracy_judge": "LLM judge"}
#: the collapse figures, shown right after consistency wherever consistency is shown
COLLAPSE_KEYS = ("empty_answer_rate", "cross_set_modal_answer_share")


def _label(key: str) -> str:
    if key in _OTHER_TITLES:
        return _OTHER_TITLES[key]
    if key in _ACC_TITLES:
        return f"accuracy: {_ACC_TITLES[key]}"
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] == "consistency":
        return f"{_LEVEL_TITLES.get(parts[1], parts[1])} consistency: {parts[2]}"
    return key


def _fmt(v: Any, ci: Any = None, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    s = f"{v:+.3f}" if signed else f"{v:.3f}"
    if ci:
        s += f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if signed else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return s


def _table_rows(result: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    models = result["models"]
    m = models["model"]
    b = models.get("baseline")
    diffs = (result.get("comparison") or {}).get("differences", {})
    rows = []
    for k in numeric_keys(m):
        rows.append((
            k,
            _fmt(m.get(k), m.get(f"{k}_ci")),
            _fmt(b.get(k), b.get(f"{k}_ci")) if b is not None else None,
            _fmt(diffs[k]["diff"], diffs[k].get("ci"), signed=True) if k in diffs else
            ("n/a" if b is not None else None),
        ))
    return rows


def result_warnings(result: Mapping[str, Any]) -> list[str]:
    """Collapse warnings of every model in ``result`` (named), plus one about the comparison when the
    evaluated model collapses: its consistency gain over the baseline is then no evidence."""
    models = result.get("models") or {"model": result}
    out: list[str] = []
    for label, summ in models.items():
        out += collapse_warnings(summ, who=label)
    model_warned = bool(collapse_warnings(models.get("model") or {}))
    if model_warned and result.get("comparison"):
        out.append("comparison: the model's consistency differences against the baseline come with collapse "
                   "figures over the warning level; they do not show more consistent answers")
    return out


def collapse_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line on the most common answer across different sets (empty when there is none)."""
    answer = summary.get("cross_set_modal_answer")
    if answer is None:
        return []
    gold = summary.get("cross_set_modal_answer_gold_sets")
    shown = "(empty)" if answer == "" else repr(answer)
    return [f"most common answer across different sets: {shown}, given in {summary.get('cross_set_modal_answer_sets')}"
            f" sets" + (f" (the gold answer of {gold} of them)" if gold is not None else "")]


def render_report(result: dict[str, Any]) -> str:
    """``report.md``: accuracy and consistency tables (value [95% CI]), notes and plots."""
    m = result["models"]["model"]
    b = result["models"].get("baseline")
    cfg = result.get("config", {})
    dec = cfg.get("decoding", {})
    lines = ["# Consistency evaluation", ""]
    lines.append(f"- model: `{m.get('name')}`")
    if b is not None:
        lines.append(f"- baseline: `{b.get('name')}`")
    if cfg.get("data"):
        lines.append(f"- data: `{cfg['data']}`")
    lines.append(f"- {m.get('num_sets')} paraphrase sets, {m.get('num_paraphrases')} paraphrases"
                 f" ({m.get('num_sets_with_gold', 0)} sets with gold answers;"
                 f" answer form: {m.get('answer_form') or 'n/a'})")
    decoding = ("greedy" if not dec.get("do_sample")
                else f"sampling (temperature {dec.get('temperature')}, top-p {dec.get('top_p')})")
    lines.append(f"- decoding: {decoding}, max {dec.get('max_new_tokens')} new tokens, seed {dec.get('seed')}; "
                 f"mode: {cfg.get('mode')}")
    lines.append(f"- every number: mean over sets in [0, 1] with a {int(100 * cfg.get('confidence', 0.95))}% "
                 f"percentile bootstrap interval over sets ({cfg.get('n_boot')} replicates); differences are "
                 "paired over sets (model - baseline)")
    lines.append("")
    warnings = result_warnings(result)
    if warnings:
        lines += ["## Warning: possible collapse", ""] + [f"> **warning:** {w}  " for w in warnings] + [""]
    rows = _table_rows(result)
    has_b = b is not None
    header = "| metric | model |" + (" baseline | difference |" if has_b else "")
    sep = "|---|---|" + ("---|---|" if has_b else "")
    for title, pred in (("Accuracy", lambda k: k.startswith("accuracy_")),
                        ("Consistency", lambda k: k.startswith("consistency_")),
                        ("Collapse figures (read with consistency)", lambda k: k in COLLAPSE_KEYS),
                        ("Other", lambda k: not k.startswith(("accuracy_", "consistency_"))
                         and k not in COLLAPSE_KEYS)):
        sel = [r for r in rows if pred(r[0])]
        if not sel:
            continue
        lines += [f"## {title}", "", header, sep]
        for k, mv, bv, dv in sel:
            lines.append(f"| {_label(k)} | {mv} |" + (f" {bv} | {dv} |" if has_b else ""))
        lines.append("")
        if title.startswith("Collapse"):
            for label, summ in (("model", m), ("baseline", b)):
                if summ is not None:
                    lines += [f"- {label}: {line}" for line in collapse_lines(summ)]
            lines += [f"- high values mean consistency may be bought with a degenerate answer; warnings at "
                      f"{100 * EMPTY_ANSWER_WARN_RATE:.0f}% empty and {100 * MODAL_ANSWER_WARN_SHARE:.0f}% one "
                      "answer across different sets", ""]
    notes = [f"- {k[:-5]}: {v}" for k, v in m.items() if k.endswith("_note") and v]
    if (result.get("comparison") or {}).get("note"):
        notes.append(f"- comparison: {result['comparison']['note']}")
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    files = result.get("files") or {}
    plots = [(PLOT_BARS, "Summary with 95% intervals"), (PLOT_HIST, "Per-set end-to-end consistency"),
             (PLOT_POSITION, "Accuracy by paraphrase position")]
    present = [(f, t) for f, t in plots if f in files.values()]
    if present:
        lines += ["## Plots", ""]
        for f, t in present:
            lines += [f"![{t}]({f})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _savefig(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def make_plots(out: Path, result: dict[str, Any], model_res: ModelResult, base_res: ModelResult | None
               ) -> dict[str, str]:
    """The PNG plots (matplotlib, Agg backend); returns ``{kind: file name}`` of those written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    files: dict[str, str] = {}
    entries = [("model", model_res)] + ([("baseline", base_res)] if base_res is not None else [])
    m = result["models"]["model"]
    keys = [k for k in numeric_keys(m) if m.get(k) is not None]
    colors = {"model": "#1f77b4", "baseline": "#aaaaaa"}

    # 1. bars with intervals (before/after when a baseline exists)
    if keys:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(keys) + 2), 4.2))
        width = 0.8 / len(entries)
        x = np.arange(len(keys))
        order = ([("baseline", base_res)] if base_res is not None else []) + [("model", model_res)]
        for j, (label, res) in enumerate(order):
            summ = res.summary
            vals = np.array([summ.get(k) if summ.get(k) is not None else np.nan for k in keys], dtype=float)
            err = np.zeros((2, len(keys)))
            for i, k in enumerate(keys):
                ci = summ.get(f"{k}_ci")
                if ci and np.isfinite(vals[i]):
                    err[:, i] = [max(0.0, vals[i] - ci[0]), max(0.0, ci[1] - vals[i])]
            name = ("before (baseline)" if label == "baseline"
                    else ("after (model)" if base_res is not None else "model"))
            ax.bar(x + (j - (len(order) - 1) / 2) * width, np.nan_to_num(vals), width, yerr=err, capsize=3,
                   label=name, color=colors[label])
        ax.set_xticks(x)
        ax.set_xticklabels([k.replace("consistency_", "cons_").replace("accuracy_", "acc_") for k in keys],
                           rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean over sets (95% CI)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title("Accuracy and consistency")
        _savefig(fig, out / PLOT_BARS)
        plt.close(fig)
        files["plot_bars"] = PLOT_BARS

    # 2. distribution of per-set end-to-end consistency (first metric)
    cons_keys = [k for k in keys if k.startswith("consistency_e2e_")] or \
        [k for k in keys if k.startswith("consistency_generator_")]
    if cons_keys and model_res.per_set is not None:
        key = cons_keys[0]
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = np.linspace(0, 1, 21)
        for label, res in entries:
            if res.per_set is None:
                continue
            vals = [r.get(key) for r in res.per_set if r.get(key) is not None]
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{label} (n={len(vals)})", color=colors[label])
        ax.set_xlabel(key)
        ax.set_ylabel("sets")
        ax.set_title("Per-set consistency")
        ax.legend(fontsize=8)
        _savefig(fig, out / PLOT_HIST)
        plt.close(fig)
        files["plot_hist"] = PLOT_HIST

    # 3. accuracy by paraphrase position
    long_form = m.get("answer_form") == "long"
    position_fields = (("rouge_l_by_position", "-o"),) if long_form else (("em_by_position", "-o"),
                                                                          ("f1_by_position", "--s"))
    if model_res.per_set is not None and any(r.get(position_fields[0][0]) for r in model_res.per_set):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, res in entries:
            if res.per_set is None:
                continue
            for field_name, style in position_fields:
                series = [r.get(field_name) or [] for r in res.per_set]
                width = max((len(s) for s in series), default=0)
                if not width:
                    continue
                means = []
                for pos in range(width):
                    vals = [s[pos] for s in series if len(s) > pos and s[pos] is not None]
                    means.append(float(np.mean(vals)) if vals else np.nan)
                ax.plot(np.arange(width), means, style, color=colors[label],
                        label=f"{label} {field_name[:-len('_by_position')].replace('_', '-').upper()}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("paraphrase position in set (0 = canonical)")
        ax.set_ylabel("accuracy (mean over sets)")
        ax.set_ylim(0, 1.05)
        ax.set_title("Accuracy by paraphrase position")
        ax.legend(fontsize=8)
        _savefig(fig, out / PLOT_POSITION)
        plt.close(fig)
        files["plot_position"] = PLOT_POSITION
    return files


def print_summary_table(result: dict[str, Any], console: Any = None) -> None:
    """A rich table of every summary number (value [95% CI]; baseline and paired difference)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    m = result["models"]["model"]
    b = result["models"].get("baseline")
    title = f"{m.get('name')}: {m.get('num_sets')} sets"
    table = Table(title=title, show_lines=False)
    table.add_column("metric")
    table.add_column("model [95% CI]", justify="right")
    if b is not None:
        table.add_column("baseline [95% CI]", justify="right")
        table.add_column("difference [95% CI]", justify="right")
    rows = _table_rows(result)
    order = [r for r in rows if r[0].startswith(("accuracy_", "consistency_"))] + \
        [r for r in rows if r[0] in COLLAPSE_KEYS] + \
        [r for r in rows if not r[0].startswith(("accuracy_", "consistency_")) and r[0] not in COLLAPSE_KEYS]
    for k, mv, bv, dv in order:
        table.add_row(_label(k), mv, *([bv, dv] if b is not None else []))
    console.print(table)
    for label, summ in (("model", m), ("baseline", b)):
        for line in collapse_lines(summ or {}):
            console.print(f"{label}: {escape(line)}", highlight=False)
    for k, v in m.items():
        if k.endswith("_note") and v:
            console.print(f"[dim]note ({k[:-5]}): {escape(str(v))}[/dim]")
    for warning in result_warnings(result):
        console.print(f"[bold red]warning:[/bold red] {escape(warning)}", highlight=False, soft_wrap=True)
