"""The ``grpo-sim`` command.

    grpo-sim train RECIPE [--set key.path=value ...] [--output-dir DIR] [--resume auto|PATH] [--overwrite]
    grpo-sim sft RECIPE [--set ...] [--output-dir DIR] [--resume auto|PATH] [--overwrite]
                                                supervised warm start; OUTPUT/final feeds `train`
    grpo-sim model init --data FILE --out DIR   a tiny policy for your own data
    grpo-sim demo [--output-dir DIR] [--quick]
    grpo-sim check RECIPE [--set ...] [-p N]    every check train makes before it starts (recipe, data,
                                                batches for N processes), without loading a model

After the recipe, TRL-style flags (``--learning_rate 2e-6``) act as ``--set`` overrides (grpo_sim.trl_config).

Bad input prints one clear error (file, key, what to change) and exits with status 2; no traceback.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .distributed import process_rank

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GRPO fine-tuning with similarity rewards (PS-GRPO) on Hugging Face TRL.",
)
console = Console(stderr=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """What a command reports as one clear line (exit 2): bad input (our errors are ValueErrors naming the file and
    key), a missing file, a run that cannot go on as asked. Anything else is a bug and keeps its traceback (a plain
    RuntimeError included)."""
    from .runner import RunError
    from .trainer import RolloutServerLost

    return (ValueError, FileNotFoundError, RunError, RolloutServerLost)


#: set to 1 (or pass grpo-sim --debug) to see the full traceback behind every one-line error
DEBUG_ENV = "GRPO_SIM_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def fail(message: str, code: int = 2) -> None:
    """Print one clear error and exit with ``code``; with GRPO_SIM_DEBUG=1 the traceback being handled first."""
    import sys

    if debug_enabled() and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _quiet_on_non_main() -> None:
    rank = process_rank()
    level = logging.INFO if rank == 0 else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "bm25s", "filelock", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if rank != 0:
        import transformers

        transformers.logging.set_verbosity_error()


#: the degeneration figures of an evaluation on ordinary rows shown in the run summary
ROW_DEGENERATION_KEYS = ("empty_answer_rate", "repetitive_answer_rate", "modal_answer_share")


def _summary_table(result, title: str = "grpo-sim run") -> Table:
    table = Table(title=f"{title}: {result.output_dir}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("steps", str(result.global_step))
    table.add_row("wall time", f"{result.seconds:.0f} s")
    for key in (
        "loss",
        "reward",
        "rewards/consistency/mean",
        "rewards/accuracy/mean",
        "ps_grpo/agreement",
        "ps_grpo/frac_empty",
        "ps_grpo/frac_sets_identical",
        "ps_grpo/frac_repetitive",
        "completions/mean_length",
    ):
        if key in result.last_metrics and result.last_metrics[key] is not None:
            table.add_row(key + " (last log)", f"{result.last_metrics[key]:.4f}")
    if result.evaluation and result.evaluation.get("kind") == "rows":  # ordinary rows: answers vs references
        for key, value in result.evaluation.items():
            if key.startswith(("reference_", "accuracy_")) and isinstance(value, float) or key in ROW_DEGENERATION_KEYS:
                table.add_row(f"eval {key}", f"{value:.4f}")
        for warning in result.evaluation.get("warnings", []):
            table.add_row(Text("WARNING", style="bold red"), Text(warning, style="bold red", justify="left"))
    elif result.evaluation:
        from .eval.report import COLLAPSE_KEYS, collapse_lines, result_warnings

        evaluation = result.evaluation
        accuracy = [
            k
            for k in ("accuracy_em", "accuracy_f1", "accuracy_rouge_l", "accuracy_bleu2", "accuracy_embedding")
            if k in evaluation
        ]
        if evaluation.get("answer_form") != "long":
            accuracy = [k for k in accuracy if k in ("accuracy_em", "accuracy_f1")]
        # the collapse figures sit right under consistency: consistency alone is fooled by one degenerate answer
        for key in (
            *accuracy,
            "consistency_e2e_exact",
            "consistency_e2e_bleu2",
            "consistency_e2e_embedding",
            *COLLAPSE_KEYS,
        ):
            if evaluation.get(key) is not None:
                table.add_row(f"eval {key}", f"{evaluation[key]:.4f}")
        for line in collapse_lines(evaluation):
            what, value = line.split(": ", 1)
            table.add_row(f"eval {what}", Text(value, justify="left"))
        for warning in result_warnings(evaluation):
            table.add_row(Text("WARNING", style="bold red"), Text(warning, style="bold red", justify="left"))
    for key, name in ((result.evaluation or {}).get("config") or {}).get("encoders", {}).items():
        table.add_row(f"eval encoder of {key}", Text(name, justify="left"))
    table.add_row("final model", str(result.final_model))
    if result.final_adapter is not None:
        table.add_row("LoRA adapter (merged into the final model)", str(result.final_adapter))
    if result.evaluation:
        table.add_row("evaluation", str(result.output_dir / "eval"))
    if result.pushed_to:
        table.add_row("pushed to the hub", result.pushed_to)
    return table


def load_recipe_reporting_all(path: Path, overrides: list[str] | None, **start):
    """Load a recipe; when it has problems, also run the start checks on what could be read of it
    (data, batch arithmetic; the run directory when ``output_dir`` is among ``start``) and raise one
    RecipeError listing every problem at once."""
    from .recipe import RecipeError, apply_overrides, check_recipe, format_problems, load_raw
    from .runner import cpu_defaults, run_directory, start_problems

    recipe, problems = check_recipe(apply_overrides(load_raw(path), overrides), source=str(path))
    if problems:
        if recipe is not None:
            if "output_dir" in start:
                start = {**start, "output_dir": run_directory(recipe, start["output_dir"])}
            # a bad batch key was dropped (its default stands in): batch advice would be about numbers nobody set
            batch_keys = (
                "num_generations",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "steps_per_generation",
                "generation_batch_size",
            )
            start["check_batches"] = not any(p.startswith(f"training.{k}:") for p in problems for k in batch_keys)
            _, more = start_problems(cpu_defaults(recipe), **start)
            problems += [p for p in more if p not in problems and not _repeats_a_reward_problem(p, problems)]
        raise RecipeError(format_problems(str(path), problems), problems)
    assert recipe is not None
    return recipe


def _repeats_a_reward_problem(problem: str, problems: list[str]) -> bool:
    """GRPOConfig refusing reward terms the recipe check already named (``rewards[1].function: ...``): the same
    problem in the config's words (``training settings rejected by GRPOConfig: reward_terms[1].function: ...``)."""
    prefix = "training settings rejected by GRPOConfig: "
    if not problem.startswith(prefix):
        return False
    lines = problem.removeprefix(prefix).splitlines()
    return all(line.replace("reward_terms[", "rewards[", 1) in problems for line in lines)


def _with_trl_flags(overrides: list[str] | None, extra: list[str]) -> list[str]:
    """``--set`` overrides plus TRL-style flags after the recipe (``--learning_rate 2e-6`` ->
    ``training.learning_rate=2e-6``, ``--model_name_or_path X`` -> ``model.name_or_path=X``); the flags win."""
    from .trl_config import flags_to_overrides

    return [*(overrides or []), *flags_to_overrides(extra)]


def _report_stop(stop, command: str, recipe: Path, set_: Optional[list[str]]) -> None:
    """A signal stopped the run after saving: say where, and the command that resumes it; exit 128 + signal."""
    import shlex

    where = stop.checkpoint or "no checkpoint (stopped before the first step finished)"
    argv = ["grpo-sim", command, str(recipe), "--output-dir", str(stop.output_dir), "--resume", "auto"]
    argv += [word for s in set_ or [] for word in ("--set", s)]
    console.print(
        f"[yellow]stopped by {stop.signal_name}[/yellow]; saved {escape(where)}.\nResume with:", soft_wrap=True
    )
    # one line, shell-quoted, never wrapped (a log file is 80 columns to rich): it must copy-paste as it is
    console.print("  " + shlex.join(argv), soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(stop.exit_code)


def train_command(
    recipe: Path = typer.Argument(..., help="YAML recipe (see recipes/)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override: key.path=value (repeatable)"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="run directory"),
    resume: Optional[str] = typer.Option(None, "--resume", help="'auto' (newest complete checkpoint) or a path"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete a non-empty output directory first"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="where the demo warm start is cached"),
    ctx: typer.Context = None,  # type: ignore[assignment]  # last: grpo_sim.train calls this positionally
) -> None:
    """Train with PS-GRPO from a YAML recipe (TRL-style flags such as --learning_rate 2e-6 act as --set)."""
    _quiet_on_non_main()
    from .runner import Interrupted, run_training

    try:
        set_ = _with_trl_flags(set_, ctx.args if ctx else [])
        parsed = load_recipe_reporting_all(recipe, set_, output_dir=output_dir, resume=resume, overwrite=overwrite)
        result = run_training(parsed, output_dir=output_dir, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
    except Interrupted as stop:
        _report_stop(stop, "train", recipe, set_)
    except user_errors() as exc:
        fail(str(exc))
    if process_rank() == 0:
        Console().print(_summary_table(result))


def sft_command(
    recipe: Path = typer.Argument(..., help="YAML recipe (its data.train, data.prompt and sft: section)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override: key.path=value (repeatable)"),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "-o", help="run directory (default: sft.output_dir, else runs/NAME-sft)"
    ),
    resume: Optional[str] = typer.Option(None, "--resume", help="'auto' (newest complete checkpoint) or a path"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete a non-empty output directory first"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="where the demo warm start is cached"),
) -> None:
    """Supervised warm start (TRL SFTTrainer) on the recipe's training sets: each wording with its passages ->
    the gold answer. Its OUTPUT/final is the model for `grpo-sim train` (model.name_or_path)."""
    _quiet_on_non_main()
    from .recipe import load_recipe
    from .runner import Interrupted
    from .sft import run_sft

    try:
        parsed = load_recipe(recipe, set_)
        result = run_sft(parsed, output_dir=output_dir, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
    except Interrupted as stop:
        _report_stop(stop, "sft", recipe, set_)
    except user_errors() as exc:
        fail(str(exc))
    if process_rank() == 0:
        Console().print(_summary_table(result, title="grpo-sim sft"))
        console.print(f"train from it with: model.name_or_path: {result.final_model}", soft_wrap=True)


def check_command(
    recipe: Path = typer.Argument(..., help="YAML recipe"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override: key.path=value (repeatable)"),
    num_processes: Optional[int] = typer.Option(
        None,
        "--num-processes",
        "-p",
        min=1,
        help="training processes over all machines (for the batch arithmetic; default: hardware.num_processes or 1)",
    ),
    num_machines: int = typer.Option(1, "--num-machines", "-m", min=1, help="machines (nodes)"),
    no_data: bool = typer.Option(
        False,
        "--no-data",
        help="do not read the data files (e.g. they live on the cluster); n then comes from data.paraphrases_per_set",
    ),
    gpu_memory: Optional[str] = typer.Option(
        None, "--gpu-memory", help="memory of one GPU (80GiB, 24GiB): check that the launch fits (default: hardware)"
    ),
    accelerate_config: Optional[str] = typer.Option(
        None, "--accelerate-config", help="the launch's accelerate config (strategy) for the memory check"
    ),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Run every check `train` makes before it starts: recipe keys, types and ranges, similarities, prompt
    template, GRPOConfig, the data files, the batch arithmetic and whether the launch fits its GPUs' memory (with
    --gpu-memory, the recipe's hardware section, or this machine's GPU); report all problems at once."""
    from .runner import check_start, cpu_defaults, is_prompt_rows

    start: dict[str, Any] = dict(num_processes=num_processes or 1, num_machines=num_machines, read_data=not no_data)
    try:
        set_ = _with_trl_flags(set_, ctx.args if ctx else [])
        parsed = load_recipe_reporting_all(recipe, set_, **start)
        num_processes = start["num_processes"] = num_processes or parsed.hardware.num_processes or 1
        memory = dict(gpu_memory=gpu_memory, accelerate_config=accelerate_config)
        decisions = check_start(cpu_defaults(parsed), **start, **memory)
    except user_errors() as exc:
        missing_data = any(
            p.startswith(("data.train:", "data.eval:")) and "does not exist" in p for p in getattr(exc, "problems", [])
        )
        fail(
            str(exc)
            + (
                "\n(data that lives elsewhere, e.g. on the cluster: grpo-sim check --no-data checks the rest)"
                if missing_data
                else ""
            )
        )
    Console().print(parsed.dump_yaml(), highlight=False, markup=False)
    if decisions.plan is None:
        console.print(
            "[yellow]note:[/yellow] batch arithmetic against whole paraphrase sets not checked: the "
            "number of paraphrases per set is unknown without the data (set data.paraphrases_per_set)",
            soft_wrap=True,
        )
    if no_data:
        data = ""
    elif is_prompt_rows(decisions.train_sets):  # ordinary rows: one group per prompt
        data = f"{len(decisions.train_sets)} training prompts, "
    else:
        data = f"{len(decisions.train_sets)} training sets x {decisions.paraphrases_per_set} paraphrases, "
    advantage = decisions.plan.advantage_row() if decisions.plan is not None else None
    if advantage is not None:
        data += f"{advantage[0]} {advantage[1]}, "
    console.print(
        f"[green]{recipe}: valid[/green] ({data}batches fit {num_processes} process(es))"
        if decisions.plan is not None
        else f"[green]{recipe}: valid[/green]",
        soft_wrap=True,
    )


def plan_command(
    recipe: Path = typer.Argument(..., help="YAML recipe"),
    num_processes: Optional[int] = typer.Option(
        None,
        "--num-processes",
        "-p",
        help="training processes over all machines (default: hardware.num_processes or 1)",
    ),
    num_machines: int = typer.Option(1, "--num-machines", "-m", help="machines (nodes)"),
    paraphrases_per_set: Optional[int] = typer.Option(
        None, "--paraphrases-per-set", "-n", help="n, when it cannot be read from the data"
    ),
    vllm_data_parallel: int = typer.Option(1, "--vllm-data-parallel", help="the vLLM server's data parallel size"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="override: key.path=value (repeatable)"),
    accelerate_config: Optional[str] = typer.Option(
        None,
        "--accelerate-config",
        "-c",
        help="the launch's accelerate config: its strategy (DDP, ZeRO-2/3, FSDP) sizes the memory table "
        "(default: hardware.accelerate_config)",
    ),
    gpu_memory: Optional[str] = typer.Option(
        None, "--gpu-memory", help="memory of one GPU: 80GiB, 24GiB (default: hardware.gpu_memory, else torch.cuda)"
    ),
    prompt_tokens: Optional[int] = typer.Option(
        None, "--prompt-tokens", help="longest prompt in tokens (default: from the data, else vllm_max_model_length)"
    ),
    ctx: typer.Context = None,  # type: ignore[assignment]
) -> None:
    """Print the batch arithmetic of a recipe for a launch, its divisibility problems and vLLM settings TRL rejects,
    and the memory of one training GPU (terms, total against the GPU's memory)."""
    from .plan import plan_batches
    from .plan_memory import plan_memory, read_prompt_tokens
    from .recipe import load_recipe

    try:
        overrides = _with_trl_flags(set_, ctx.args if ctx else [])
        parsed = load_recipe(recipe, overrides)
        num_processes = num_processes or parsed.hardware.num_processes or 1
        plan = plan_batches(parsed, num_processes, num_machines, paraphrases_per_set, vllm_data_parallel)
        memory = plan_memory(
            parsed,
            num_processes,
            accelerate_config,
            gpu_memory,
            prompt_tokens if prompt_tokens is not None else read_prompt_tokens(parsed),
            plan.generation_batch,
        )
    except user_errors() as exc:
        fail(str(exc))
    table = Table(title=f"batch plan: {recipe} on {num_processes} process(es)")
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in plan.rows():
        table.add_row(what, value)
    out = Console()
    out.print(table)
    for note in plan.notes:
        out.print(f"[cyan]note:[/cyan] {escape(note)}", soft_wrap=True)
    if memory.estimate is not None:
        print_memory_table(out, memory, f"memory per training GPU: {recipe} on {num_processes} process(es)")
    for note in memory.notes:
        out.print(f"[cyan]note:[/cyan] {escape(note)}", soft_wrap=True)
    for warning in plan.warnings + memory.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {escape(warning)}", soft_wrap=True)
    if plan.problems or memory.problems:
        for problem in plan.problems + memory.problems:
            console.print(f"[bold red]problem:[/bold red] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(2)
    out.print(f"[green]{plan.fits_message()}[/green]")
    if memory.estimate is not None and memory.estimate.fits() is not None:
        out.print(f"[green]memory fits: {memory.estimate.total / 2**30:.1f} GiB per training GPU[/green]")


def print_memory_table(out: Console, memory, title: str) -> None:
    """The memory table of :func:`grpo_sim.plan_memory.plan_memory`: terms, total, GPU; where the inputs came from."""
    table = Table(title=title)
    table.add_column("term")
    table.add_column("per GPU", justify="right")
    table.add_column("how")
    for what, size, how in memory.estimate.rows():
        table.add_row(what, size, escape(how))
    out.print(table)
    launch = memory.estimate.launch
    inputs = [
        f"model {launch.shape.name} ({launch.shape.params / 1e9:.2f}B params)",
        f"strategy {launch.strategy} on {launch.num_gpus} GPU(s)",
        f"batch {launch.batch} x ({launch.prompt_tokens} prompt + {launch.completion_tokens} completion) tokens",
    ]
    inputs += [f"{what}: {where}" for what, where in memory.source.items()]
    out.print(f"[cyan]memory inputs:[/cyan] {escape('; '.join(inputs))}", soft_wrap=True)


def demo_command(
    task: str = typer.Option(
        "short",
        "--task",
        help="short (one-word answers, the default demo) or longform (sentence answers with several acceptable "
        "phrasings: consistency and accuracy come apart)",
    ),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", "-o", help="where results go (default runs/demo, or runs/demo-longform)"
    ),
    quick: bool = typer.Option(False, "--quick", help="a small smoke version (about a minute)"),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="warm-start cache (default: next to the output dir, .cache/)"
    ),
    reward_labels: str = typer.Option(
        "gold",
        "--reward-labels",
        help="what GRPO's accuracy reward scores against: gold (verified answers) or warmstart "
        "(the warm start's own noisy labels)",
    ),
    seed: int = typer.Option(0, "--seed", help="seeds the data, the warm start and every arm"),
    seeds: Optional[str] = typer.Option(
        None,
        "--seeds",
        help="several seeds, e.g. 0,1,2: one run per seed in OUTPUT_DIR/seed-<k> and a combined "
        "table (seeds.md, seeds.json) with the spread across seeds",
    ),
    jobs: int = typer.Option(
        2, "--jobs", "-j", min=1, help="arms (and warm starts) trained at a time, one process and one torch thread each"
    ),
) -> None:
    """The embedded default: PS-GRPO, its label-free and relaxed variants and accuracy-only GRPO on a tiny local
    policy, on CPU."""
    _quiet_on_non_main()
    if task not in DEMO_TASKS:
        fail(f"--task must be one of {', '.join(DEMO_TASKS)}, got {task!r}")
    if task == "longform" and reward_labels != "gold":
        fail(
            "--reward-labels applies to the short demo only (the long-form demo's accuracy reward scores against the "
            "gold phrasings)"
        )
    from .demo import ArmFailed, run_demo, run_seeds
    from .demo.longform import run_longform_demo, run_longform_seeds

    try:
        seed_list = None
        if seeds is not None:
            try:
                seed_list = [int(x) for x in seeds.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"--seeds takes integers separated by commas (e.g. 0,1,2), got {seeds!r}") from None
        if task == "longform":
            out = output_dir or Path("runs/demo-longform")
            if seed_list is not None:
                run_longform_seeds(out, seed_list, quick=quick, cache_dir=cache_dir)
            else:
                run_longform_demo(out, quick=quick, cache_dir=cache_dir, seed=seed)
            return
        out = output_dir or Path("runs/demo")
        if seed_list is not None:
            run_seeds(out, seed_list, quick=quick, cache_dir=cache_dir, reward_labels=reward_labels, workers=jobs)
        else:
            run_demo(out, quick=quick, cache_dir=cache_dir, reward_labels=reward_labels, seed=seed, workers=jobs)
    except user_errors() as exc:
        fail(str(exc))
    except ArmFailed as exc:  # a warm start or arm failed in its worker: its message carries the worker's traceback
        fail(str(exc), code=1)


#: ``grpo-sim demo --task``: the embedded demos
DEMO_TASKS = ("short", "longform")


@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False, "--debug", help=f"show the full traceback behind an error (the same as {DEBUG_ENV}=1)"
    ),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # also seen by the processes a command starts


_TRL_FLAGS = {"allow_extra_args": True, "ignore_unknown_options": True}  # --learning_rate 2e-6, as TRL's scripts
app.command("train", context_settings=_TRL_FLAGS)(train_command)
app.command("sft")(sft_command)
app.command("check", context_settings=_TRL_FLAGS)(check_command)
app.command("demo")(demo_command)
app.command("plan", context_settings=_TRL_FLAGS)(plan_command)


def _register_subcommands() -> None:
    """Commands that live in their feature packages. Their dependencies are required ones: a failing import is a bug
    (or a broken install) and must show as a traceback pointing at it, not as a missing command."""
    from .data.cli import app as data_app
    from .eval.cli import eval_command
    from .models.cli import app as model_app
    from .sweep import sweep_command

    app.command("eval")(eval_command)
    app.command("sweep")(sweep_command)
    app.add_typer(data_app, name="data", help="Import, paraphrase, retrieve and validate paraphrase sets.")
    app.add_typer(model_app, name="model", help="Build a tiny local policy for your own data (no hub needed).")


_register_subcommands()


def _deepspeed_on_cpu_quietly() -> None:
    """Without any accelerator, tell DeepSpeed (imported by transformers when installed) it is on the CPU.

    Otherwise it guesses and prints "Setting accelerator to CPU ... we were unable to detect it" in every run.
    """
    if "DS_ACCELERATOR" in os.environ or importlib.util.find_spec("deepspeed") is None:
        return
    import torch

    if not torch.accelerator.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def main() -> None:
    _deepspeed_on_cpu_quietly()
    app()


if __name__ == "__main__":
    main()
