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
* ``report.md`` -- a collapse warning first when there is one (:func:`grpo_sim.eval.report.result_warnings`), then the
  tables: accuracy, consistency, the collapse figures next to it; ``plot_summary_bars.png``
  (model vs baseline bars with 95%
  intervals), ``plot_consistency_hist.png`` (per-set end-to-end consistency),
  ``plot_accuracy_by_position.png`` (accuracy by paraphrase position).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import __version__
from ..data.schema import ParaphraseSet, _coerce_sets, read_psets
from ..io import atomic_write_text
from .bootstrap import paired_difference
from .generate import GenerationOptions, _vllm_engine, load_eval_model, resolve_model_dir
from .metrics import DEFAULT_METRICS, ScoringOptions, _resolve_metrics, encoders, metric_key, numeric_keys
from .predictions import (
    LEVELS,
    EvalError,
    check_predictions,
    check_sets_for_consistency,
    read_predictions,
    views_from_sets,
)
from .report import make_plots, render_report
from .results import (
    BASELINE_PER_SET_FILE,
    BASELINE_PREDICTIONS_FILE,
    PER_SET_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    SCHEMA_VERSION,
    SUMMARY_FILE,
    ModelResult,
    is_results_path,
    json_safe,
    load_results,
    summary_from_per_set,
    write_json,
    write_jsonl,
)


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
        raise EvalError(
            "levels: give at least one of e2e, generator (retriever consistency is always computed "
            "when the data has passage ids)"
        )
    return gen


def _generate_all(
    model: Any, tokenizer: Any, sets: list[ParaphraseSet], levels: list[str], gen: GenerationOptions
) -> list[dict[str, Any]]:
    preds: list[dict[str, Any]] = []
    for level in levels:
        preds.extend(gen.generate(model, tokenizer, sets, level=level))
    return preds


def _obtain_model(
    model_or_path: Any, tokenizer: Any, backend: str, device: Any, dtype: Any, seed: int
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


def _score(
    label: str,
    name: str,
    sets: list[ParaphraseSet] | None,
    preds: list[dict[str, Any]],
    source: str,
    scoring: ScoringOptions,
) -> ModelResult:
    summary, per_set = scoring.score(sets, preds, source=f"{label} predictions")
    return ModelResult(label, name, {"name": name, **summary}, per_set, preds, source)


def _baseline_result(
    baseline: Any,
    sets: list[ParaphraseSet] | None,
    levels: list[str],
    gen: GenerationOptions,
    scoring: ScoringOptions,
    backend: str,
    device: Any,
    dtype: Any,
) -> ModelResult:
    if is_results_path(baseline):
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
    keys = [
        k for k in numeric_keys(model.summary) if model.summary.get(k) is not None and base.summary.get(k) is not None
    ]
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
        note = "the baseline has no per-set results (summary only): differences of means without intervals, not paired"
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
        check_sets_for_consistency(
            views_from_sets(data), source=str(sets) if isinstance(sets, (str, os.PathLike)) else "data"
        )
    gen = GenerationOptions(
        template=template,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        backend=backend,
        progress=progress,
        system_prompt=system_prompt,
        chat_template_kwargs=chat_template_kwargs,
    )
    scoring = ScoringOptions(
        metrics=tuple(metrics), n_boot=n_boot, seed=seed, embedding_model=embedding_model, judge=judge
    )
    _resolve_metrics(metrics, embedding_model)  # fail on a bad metric before any generation (models load lazily)

    if predictions is not None:
        src = str(predictions) if isinstance(predictions, (str, os.PathLike)) else "predictions"
        rows = (
            read_predictions(predictions)
            if isinstance(predictions, (str, os.PathLike))
            else check_predictions(predictions, source=src)
        )
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
        "decoding": {
            "do_sample": bool(do_sample),
            "temperature": temperature if do_sample else None,
            "top_p": top_p if do_sample else None,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
        },
        "backend": backend,
        "n_boot": n_boot,
        "confidence": 0.95,
        "bootstrap": "percentile, sets resampled with replacement",
        "mode": "replay" if predictions is not None else "generate",
        "judge": {"url": judge.url, "model": judge.model} if judge is not None else None,
        "max_sets": max_sets,
        # the encoder (model @ revision) of every embedding metric, named wherever its figures are shown
        "encoders": encoders(
            {
                metric_key(m)[0]: (
                    {"name": "embedding", "model": embedding_model}
                    if metric_key(m)[1] == "embedding" and embedding_model is not None
                    else metric_key(m)[1]
                )
                for m in metrics
            }
        ),
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
        result["config"]["baseline"] = {
            "spec": str(baseline) if isinstance(baseline, (str, os.PathLike)) else base_res.name,
            "source": base_res.source,
        }
    result = json_safe(result)
    if output_dir is not None:
        result["files"] = write_outputs(output_dir, result, model_res, base_res, plots=plots)
    return result


def write_outputs(
    output_dir: str | os.PathLike[str],
    result: dict[str, Any],
    model_res: ModelResult,
    base_res: ModelResult | None,
    plots: bool = True,
) -> dict[str, str]:
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
