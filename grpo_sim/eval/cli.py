"""``grpo-sim eval``: consistency + accuracy evaluation from the command line.

Registered by the main CLI as ``app.command("eval")(eval_command)``. Examples::

    grpo-sim eval runs/ps_grpo data/eval.psets.jsonl -o runs/ps_grpo/eval --baseline runs/base/eval
    grpo-sim eval Qwen/Qwen2.5-0.5B-Instruct data/eval.psets.jsonl -o runs/base/eval --batch-size 64
    grpo-sim eval --replay runs/ps_grpo/eval/predictions.jsonl data/eval.psets.jsonl -o rescored
    grpo-sim eval runs/ps_grpo data.jsonl --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct

Bad input ends with exit code 2 and a one-line ``error: ...`` naming the file, row and field
(set ``GRPO_SIM_DEBUG=1`` to see the traceback instead).
"""

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

__all__ = ["eval_command", "parse_metrics"]

_DEFAULT_METRICS = "bleu2,rouge_l,exact_match,embedding"


def parse_metrics(text: str) -> List[str]:
    """Split ``--metrics``: comma-separated registry specs; a comma-separated parameter of the
    previous spec stays with it (``"bleu2,embedding:model=/m,device=cpu"`` is two metrics).
    Use ``;`` as the separator to be explicit (``"a=bleu2;embedding:model=/m,device=cpu"``)."""
    text = text.strip()
    if ";" in text:
        parts = [p.strip() for p in text.split(";") if p.strip()]
    else:
        parts = []
        for piece in (p.strip() for p in text.split(",")):
            if not piece:
                continue
            if parts and ":" in parts[-1] and "=" in piece and ":" not in piece and "=" in parts[-1]:
                parts[-1] = parts[-1] + "," + piece
            else:
                parts.append(piece)
    if not parts:
        raise ValueError("--metrics: give at least one similarity name (e.g. bleu2,rouge_l,exact_match,embedding)")
    return parts


def _one_line(exc: BaseException) -> str:
    from ..data.schema import DataError

    if isinstance(exc, DataError) and exc.problems:
        text = str(exc).splitlines()
        first = text[1].strip() if len(text) > 1 else text[0]
        more = len(exc.problems) - 1
        return first + (f" (and {more} more problem(s))" if more > 0 else "")
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and msg.startswith("'"):
        msg = msg.strip("'")
    return " ".join(line.strip() for line in msg.splitlines() if line.strip())


def eval_command(
    model: Annotated[
        Optional[str],
        typer.Argument(
            help="Model: local directory, hub id, or training output dir (LoRA adapters / checkpoint-N). "
            "With --replay, omit it and give only DATA.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Argument(
            help="Paraphrase-set JSONL (the project's format), or ordinary rows {question or prompt, answers} "
            "(answers scored against the references). Optional with --replay.",
            show_default=False,
        ),
    ] = None,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "-o",
            help="Directory for predictions.jsonl, per_set.jsonl, summary.json, report.md and plots.",
        ),
    ] = Path("eval_results"),
    baseline: Annotated[
        Optional[str],
        typer.Option(
            "--baseline",
            help="Compare against: a model (path/hub id/training dir) or an earlier output directory, "
            "summary.json or predictions.jsonl.",
        ),
    ] = None,
    replay: Annotated[
        Optional[Path], typer.Option("--replay", help="Score an existing predictions.jsonl without running any model.")
    ] = None,
    levels: Annotated[
        str,
        typer.Option(
            "--levels",
            help="Comma-separated: e2e, generator (retriever consistency is computed whenever passage ids exist).",
        ),
    ] = "e2e,generator",
    metrics: Annotated[
        str, typer.Option("--metrics", help="Similarity registry specs, comma-separated; 'alias=spec' names a key.")
    ] = _DEFAULT_METRICS,
    template: Annotated[
        str, typer.Option("--template", help="Prompt template name or format string.")
    ] = "rag_short_answer",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature (with --sample).")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling (with --sample).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling and the bootstrap.")] = 0,
    backend: Annotated[str, typer.Option("--backend", help="hf (batched transformers generate) or vllm.")] = "hf",
    device: Annotated[
        Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    ] = None,
    dtype: Annotated[
        Optional[str], typer.Option("--dtype", help="Model dtype, e.g. bfloat16 (default: the checkpoint's).")
    ] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap replicates for the 95% intervals.")] = 1000,
    max_sets: Annotated[
        Optional[int], typer.Option("--max-sets", min=1, help="Evaluate only the first N sets.")
    ] = None,
    embedding_model: Annotated[
        Optional[str],
        typer.Option(
            "--embedding-model", help="Sentence-transformers model for 'embedding' (default: packaged MiniLM)."
        ),
    ] = None,
    judge_url: Annotated[
        Optional[str],
        typer.Option(
            "--judge-url",
            help="OpenAI-compatible endpoint for LLM-judge consistency/accuracy, e.g. http://127.0.0.1:8000/v1.",
        ),
    ] = None,
    judge_model: Annotated[
        Optional[str], typer.Option("--judge-model", help="Model name at the judge endpoint.")
    ] = None,
    judge_cache: Annotated[
        Optional[Path], typer.Option("--judge-cache", help="Judge reply cache (default: OUTPUT_DIR/judge_cache.json).")
    ] = None,
    judge_timeout: Annotated[float, typer.Option("--judge-timeout", help="Seconds per judge request.")] = 60.0,
    judge_retries: Annotated[int, typer.Option("--judge-retries", min=0, help="Retries per judge request.")] = 4,
    judge_max_tokens: Annotated[
        int,
        typer.Option(
            "--judge-max-tokens", min=1, help="Reply budget per judge request (raise it for reasoning models)."
        ),
    ] = 8,
    prompt_column: Annotated[
        Optional[str],
        typer.Option(
            "--prompt-column",
            help="Ordinary rows: the prompt column (default: 'prompt' when the rows have one, else 'question').",
        ),
    ] = None,
    answers_column: Annotated[
        str, typer.Option("--answers-column", help="Ordinary rows: the references column.")
    ] = "answers",
    system_prompt: Annotated[
        Optional[str], typer.Option("--system-prompt", help="Ordinary rows: a system message put first.")
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write the PNG plots.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no table.")] = False,
) -> None:
    """Evaluate retriever, generator and end-to-end consistency with accuracy; write tables, plots and JSON."""
    import os

    from .judge import JudgeError

    try:
        _run(**locals())
    except typer.Exit:
        raise
    except (ValueError, OSError, ImportError, JudgeError) as exc:  # bad input / unreachable endpoint
        if os.environ.get("GRPO_SIM_DEBUG"):
            raise
        typer.echo(f"error: {_one_line(exc)}", err=True)
        raise typer.Exit(2)


def _run(
    model: Optional[str],
    data: Optional[Path],
    output_dir: Path,
    baseline: Optional[str],
    replay: Optional[Path],
    levels: str,
    metrics: str,
    template: str,
    max_new_tokens: int,
    batch_size: int,
    sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    backend: str,
    device: Optional[str],
    dtype: Optional[str],
    n_boot: int,
    max_sets: Optional[int],
    embedding_model: Optional[str],
    judge_url: Optional[str],
    judge_model: Optional[str],
    judge_cache: Optional[Path],
    judge_timeout: float,
    judge_retries: int,
    judge_max_tokens: int,
    plots: bool,
    quiet: bool,
    prompt_column: Optional[str] = None,
    answers_column: str = "answers",
    system_prompt: Optional[str] = None,
    **_: Any,
) -> None:
    from .evaluate import evaluate_model
    from .judge import LLMJudge
    from .predictions import EvalError
    from .report import print_summary_table

    if replay is not None:
        if model is not None and data is not None:
            raise EvalError(
                "--replay scores an existing predictions file without a model: give only the data "
                "file (or nothing), not a model"
            )
        if model is not None and data is None:
            data, model = Path(model), None
        if not replay.is_file():
            raise FileNotFoundError(f"{replay}: predictions file given to --replay not found")
    else:
        if model is None or data is None:
            raise EvalError("give a MODEL and the DATA file (or --replay PREDICTIONS to score existing predictions)")
    if data is not None and not data.is_file():
        raise FileNotFoundError(f"{data}: data file not found (expected a paraphrase-set JSONL file)")
    if backend not in ("hf", "vllm"):
        raise EvalError(f"--backend must be 'hf' or 'vllm', got {backend!r}")
    from ..validation import dtype_name

    dtype = dtype_name(dtype, "--dtype")  # bf16, fp16, fp32 or a torch name; a typo fails before any model loads
    if replay is None and data is not None and _holds_prompt_rows(data):
        _run_rows(**locals())
        return
    judge = None
    if judge_url or judge_model:
        if not (judge_url and judge_model):
            raise EvalError("the LLM judge needs both --judge-url and --judge-model")
        judge = LLMJudge(
            judge_url,
            judge_model,
            cache_path=judge_cache or output_dir / "judge_cache.json",
            timeout=judge_timeout,
            max_retries=judge_retries,
            max_tokens=judge_max_tokens,
        )
    result = evaluate_model(
        model,
        str(data) if data is not None else None,
        output_dir=output_dir,
        levels=levels,
        baseline=baseline,
        predictions=str(replay) if replay is not None else None,
        metrics=parse_metrics(metrics),
        template=template,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        do_sample=sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        backend=backend,
        device=device,
        dtype=dtype,
        n_boot=n_boot,
        embedding_model=embedding_model,
        judge=judge,
        max_sets=max_sets,
        progress=not quiet,
        plots=plots,
    )
    if not quiet:
        print_summary_table(result)
        typer.echo(f"wrote {len(result.get('files', {}))} files to {output_dir}")


def _holds_prompt_rows(data: Path) -> bool:
    """Whether a JSONL data file holds ordinary rows (its first row has no ``paraphrases``)."""
    from ..data.prompts import looks_like_paraphrase_sets, read_jsonl_rows

    if data.suffix in (".gz", ".bz2", ".xz", ".zst"):
        return False
    try:
        rows = read_jsonl_rows(data)
    except ValueError:  # a broken file: the paraphrase-set reader names every problem
        return False
    return bool(rows) and not looks_like_paraphrase_sets(rows[0])


def _run_rows(
    model: str,
    data: Path,
    output_dir: Path,
    baseline: Optional[str],
    metrics: str,
    max_new_tokens: int,
    batch_size: int,
    sample: bool,
    seed: int,
    backend: str,
    n_boot: int,
    max_sets: Optional[int],
    embedding_model: Optional[str],
    judge_url: Optional[str],
    prompt_column: Optional[str],
    answers_column: str,
    system_prompt: Optional[str],
    quiet: bool,
    **_: Any,
) -> None:
    """Ordinary rows: greedy answers scored against the references exactly as the end-of-train evaluation scores
    them (:func:`grpo_sim.eval.rows.evaluate_rows`; each metric as ``accuracy_<metric>``)."""
    from ..data.prompts import prompt_rows, read_jsonl_rows
    from .metrics import metric_key
    from .predictions import EvalError
    from .rows import evaluate_rows

    unsupported = [
        flag
        for flag, given in (
            ("--baseline", baseline),
            ("--sample", sample),
            ("--backend vllm", backend != "hf"),
            ("--judge-url", judge_url),
        )
        if given
    ]
    if unsupported:
        raise EvalError(
            f"{data} holds ordinary rows (no paraphrase sets): {', '.join(unsupported)} applies to paraphrase sets "
            "only; evaluate each model on its own and compare the reports"
        )
    raw = read_jsonl_rows(data)
    column = prompt_column or ("prompt" if "prompt" in raw[0] else "question")
    rows = prompt_rows(raw, str(data), {"prompt": column, "answers": answers_column}, system_prompt, max_sets)
    similarities = {}
    for spec in parse_metrics(metrics):
        key, resolved = metric_key(spec)
        if resolved == "embedding" and embedding_model is not None:
            resolved = f"embedding:model={embedding_model}"
        similarities[f"accuracy_{key}"] = (resolved, "answers")
    summary = evaluate_rows(
        model,
        rows,
        similarities,
        output_dir,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        n_boot=n_boot,
        seed=seed,
        progress=not quiet,
    )
    if not quiet:
        typer.echo(f"{len(rows)} ordinary rows of {data} (prompt column {column!r}), greedy answers:")
        for key in similarities:
            value = summary.get(key)
            typer.echo(f"  {key}: {'n/a' if value is None else f'{value:.4f}'}")
        for key in ("empty_answer_rate", "repetitive_answer_rate", "modal_answer_share"):
            typer.echo(f"  {key}: {summary[key]:.4f}")
        for warning in summary["warnings"]:
            typer.echo(f"warning: {warning}")
        typer.echo(f"wrote {len(summary.get('files', {}))} files to {output_dir}")
