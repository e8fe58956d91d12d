"""``grpo-sim model ...``: build a policy for one's own data (offline, CPU-sized)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Build a tiny local policy for your own data (no hub needed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("init")
def init_cmd(
    data: list[Path] = typer.Option(
        ..., "--data", "-d", help="paraphrase-set JSONL the model will see (repeat: train, eval)"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="model directory to write (model.name_or_path)"),
    corpus: Optional[list[Path]] = typer.Option(
        None, "--corpus", "-c", help="passage corpus JSONL (repeatable): its words join the vocabulary"
    ),
    prompt: str = typer.Option(
        "rag_short_answer",
        "--prompt",
        help="the recipe's data.prompt (template name or "
        "format string): prompts are measured as the trainer formats them",
    ),
    max_completion_length: int = typer.Option(
        32,
        "--max-completion-length",
        min=1,
        help="completion budget in tokens (training.max_completion_length, evaluation.max_new_tokens)",
    ),
    hidden_size: Optional[int] = typer.Option(None, "--hidden-size", min=8, help="override the size rule"),
    layers: Optional[int] = typer.Option(None, "--layers", min=1, help="override the size rule"),
    heads: Optional[int] = typer.Option(None, "--heads", min=1, help="override the size rule"),
    seed: int = typer.Option(0, "--seed", help="initialisation seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out"),
) -> None:
    """Train a word-level tokenizer on your data and build a randomly initialised tiny Qwen2 sized for it.

    Sizes come from the number of training tokens, positions from the longest formatted prompt plus the
    completion budget (docs/own-data.md). Warm-start it with `grpo-sim sft`, then train with `grpo-sim train`.
    """
    from ..data.schema import DataError
    from .from_data import describe, init_model, plan_model

    try:
        plan, tokenizer = plan_model(
            data,
            corpus or [],
            prompt=prompt,
            max_completion_length=max_completion_length,
            hidden_size=hidden_size,
            num_layers=layers,
            num_heads=heads,
            seed=seed,
        )
        init_model(out, plan, tokenizer, overwrite=overwrite)
    except (DataError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    for line in describe(plan):
        typer.echo(line)
    typer.echo(f"wrote {out} (model.name_or_path: {out})")
