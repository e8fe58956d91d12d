"""Consistency evaluation (Hamman et al., 2025): retriever, generator and end-to-end
consistency with accuracy, as JSON, tables and plots.

>>> from grpo_sim.eval import evaluate_model
>>> result = evaluate_model("runs/ps_grpo", "data/eval.psets.jsonl", output_dir="runs/ps_grpo/eval",
...                         baseline="runs/base/eval")  # doctest: +SKIP
>>> result["models"]["model"]["consistency_e2e_bleu2"]  # doctest: +SKIP

``grpo-sim eval MODEL DATA --output-dir DIR`` is the command-line entry point
(:func:`grpo_sim.eval.cli.eval_command`).
"""

from .evaluate import evaluate_model
from .generate import (
    GenerationOptions,
    build_eval_prompts,
    generate_predictions,
    load_eval_model,
    resolve_model_dir,
)
from .judge import CORRECTNESS_PROMPT, EQUIVALENCE_PROMPT, JudgeError, JudgeUnreachableError, LLMJudge
from .metrics import (
    DEFAULT_METRICS,
    EMPTY_ANSWER_WARN_RATE,
    LEVELS,
    MODAL_ANSWER_WARN_SHARE,
    EvalError,
    ScoringOptions,
    bootstrap_ci,
    bootstrap_cis,
    check_predictions,
    collapse_warnings,
    cross_set_modal_answer,
    metric_key,
    paired_difference,
    pairwise_consistency,
    read_predictions,
    summarize,
    summarize_with_details,
)
from .report import print_summary_table, render_report
from .results import load_results
from .rows import evaluate_rows

__all__ = [
    "CORRECTNESS_PROMPT",
    "DEFAULT_METRICS",
    "EMPTY_ANSWER_WARN_RATE",
    "EQUIVALENCE_PROMPT",
    "LEVELS",
    "EvalError",
    "GenerationOptions",
    "JudgeError",
    "JudgeUnreachableError",
    "LLMJudge",
    "MODAL_ANSWER_WARN_SHARE",
    "ScoringOptions",
    "bootstrap_ci",
    "bootstrap_cis",
    "build_eval_prompts",
    "check_predictions",
    "collapse_warnings",
    "cross_set_modal_answer",
    "evaluate_model",
    "evaluate_rows",
    "generate_predictions",
    "load_eval_model",
    "load_results",
    "metric_key",
    "paired_difference",
    "pairwise_consistency",
    "print_summary_table",
    "read_predictions",
    "render_report",
    "resolve_model_dir",
    "summarize",
    "summarize_with_details",
]
