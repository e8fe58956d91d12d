"""Every check a run makes before its first write, decided once for all ranks: the recipe, data, batches,
output directory and resume target, and that every machine sees the same output directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..io import atomic_write_text
from ..recipe import Recipe, RecipeError, build_config, format_problems
from ..sources import DATA_SOURCES, MODEL_SOURCES
from .directory import RunError, check_output_dir, resolve_resume, resume_target_problems
from .loading import is_prompt_rows, load_data, training_rows, trim_sets


@dataclass
class StartDecisions:
    """What a run decided before writing anything (the same on every process)."""

    output_dir: Path | None
    must_empty: bool  # delete the directory's contents first (--overwrite, or the leftovers of a start)
    checkpoint: str | None  # resume from here; None = step 0
    num_processes: int
    train_sets: list = field(default_factory=list)
    eval_sets: list | None = None
    paraphrases_per_set: int | None = None  # n, from the data (or the recipe when the data was not read)
    plan: Any = None  # grpo_sim.plan.BatchPlan, None when n is unknown
    train_dataset: Any = None  # the trainer's rows (a datasets.Dataset) built from train_sets, when they were read


def _problems_of(exc: Exception, source: str) -> list[str]:
    problems = getattr(exc, "problems", None)
    if problems and all(isinstance(p, str) for p in problems):
        return list(problems)
    return [str(exc).removeprefix(f"{source}: ")]


def _data_problem(split: str, exc: Exception) -> str:
    message = str(exc)
    return message if message.startswith(f"data.{split}") else f"data.{split}: {message}"


def _prompt_data_problems(recipe: Recipe, rows: list[dict[str, Any]]) -> list[str]:
    """Terms that need paraphrase sets, and reference columns the ordinary rows lack."""
    problems = []
    for k, term in enumerate(recipe.reward_terms()):
        kind = term.get("type")
        if kind in ("consistency", "agreement"):
            problems.append(
                f"rewards[{k}] ({kind}): compares the paraphrases of a set, but data.train "
                f"({recipe.data.train}) holds ordinary prompts without paraphrase sets; drop the term or "
                "train on paraphrase-set data"
            )
        elif kind == "reference":
            column = term.get("column") or "answers"
            present = sorted(set().union(*rows))
            if column in present and all(row.get(column) is None for row in rows):  # absent: check_trainer_columns
                problems.append(
                    f"rewards[{k}] (reference): no row of data.train has references in {column!r}; map "
                    "the reference column with data.columns.answers (or set the term's column); columns present: "
                    + ", ".join(c for c in present if c != column)
                )
    if recipe.reward.advantage == "set":
        problems.append(
            "reward.advantage: 'set' needs paraphrase sets; ordinary prompts use 'paraphrase' (one group "
            "per prompt, as TRL) or 'batch'"
        )
    return problems


@dataclass
class StartContext:
    """What the start checks read (the recipe and the launch) and what they decide and find.

    Every check of :data:`START_CHECKS` takes one and appends to ``problems``; later checks read what earlier ones
    decided (the data the batch check counts, the rows the column check looks at).
    """

    recipe: Recipe
    output_dir: Path | None
    resume: str | None
    overwrite: bool
    num_machines: int
    read_data: bool
    check_batches: bool
    config: Any
    gpu_memory: str | None  # the GPU memory the memory check sizes for (check --gpu-memory), else measured/recipe
    accelerate_config: str | None  # the launch's accelerate config (check --accelerate-config)
    running: bool  # train's own start (sizes the running launch); False for check
    decisions: StartDecisions
    problems: list[str] = field(default_factory=list)
    data_ok: bool = True  # data.train was read without problems (False also when it was not read)


def check_config(ctx: StartContext) -> None:
    """GRPOConfig accepts the recipe (built here unless the run built it already)."""
    if ctx.config is None:
        try:
            ctx.config = build_config(ctx.recipe, ctx.output_dir or Path("grpo-sim-check"), ctx.decisions.num_processes)
        except RecipeError as exc:
            ctx.problems.extend(_problems_of(exc, ctx.recipe._source))
    if ctx.decisions.num_processes is None:
        ctx.decisions.num_processes = ctx.config.world_size if ctx.config is not None else 1


def check_model(ctx: StartContext) -> None:
    """model.name_or_path can be loaded: a local directory with a config, a hub id (in the cache when offline), or a
    registered model source."""
    from ..models.startup import model_location_problem

    model = ctx.recipe.model.name_or_path
    if model in MODEL_SOURCES:
        return
    problem = model_location_problem(model, ctx.recipe.model.revision)
    if problem is not None:
        ctx.problems.append(problem)


def check_run_directory(ctx: StartContext) -> None:
    """The output directory may be used as asked and the resume target is a checkpoint of this kind of run."""
    output_dir = ctx.output_dir
    if output_dir is None:
        return
    try:
        ctx.decisions.must_empty = check_output_dir(output_dir, ctx.resume, ctx.overwrite)
        ctx.decisions.checkpoint = resolve_resume(output_dir, ctx.resume)
    except RunError as exc:
        ctx.problems.append(str(exc))
    if ctx.decisions.checkpoint is not None:
        ctx.problems.extend(resume_target_problems(Path(ctx.decisions.checkpoint), ctx.recipe, ctx.resume))
    existing = next((p for p in (output_dir, *output_dir.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        ctx.problems.append(f"output directory {output_dir}: {existing} is not writable; choose another --output-dir")


def check_train_data(ctx: StartContext) -> None:
    """data.train reads (every problem of the file), its sets lay out as the trainer needs, the terms fit it."""
    from ..sampler import build_set_layout

    recipe, decisions = ctx.recipe, ctx.decisions
    source = DATA_SOURCES.get(recipe.data.train)
    decisions.paraphrases_per_set = recipe.data.paraphrases_per_set or (
        source.paraphrases_per_set(recipe) if source else None
    )
    if not ctx.read_data:
        ctx.data_ok = False
        return
    try:
        sets = trim_sets(
            load_data(recipe.data.train, recipe, "train"),
            recipe.data.paraphrases_per_set,
            recipe.data.max_train_sets,
        )
        if is_prompt_rows(sets):  # ordinary prompts: one TRL group per prompt, a "set" of one
            decisions.train_sets, decisions.paraphrases_per_set = sets, 1
            ctx.problems.extend(_prompt_data_problems(recipe, sets))
        else:
            rows = [(s.set_id, p.paraphrase_id) for s in sets for p in s.paraphrases]
            layout = build_set_layout([r[0] for r in rows], [r[1] for r in rows], f"data.train ({recipe.data.train})")
            decisions.train_sets, decisions.paraphrases_per_set = sets, layout.paraphrases_per_set
    except ValueError as exc:  # RecipeError, DataError, SetLayoutError
        ctx.problems.append(_data_problem("train", exc))
        ctx.data_ok = False


def check_eval_data(ctx: StartContext) -> None:
    """data.eval reads (evaluation scores every wording: paraphrases_per_set shapes training batches only)."""
    recipe = ctx.recipe
    if not ctx.read_data or not recipe.data.eval:
        return
    try:
        ctx.decisions.eval_sets = trim_sets(
            load_data(recipe.data.eval, recipe, "eval"), None, recipe.data.max_eval_sets
        )
    except ValueError as exc:
        ctx.problems.append(_data_problem("eval", exc))


def check_trainer_columns(ctx: StartContext) -> None:
    """The trainer's own column check on the rows it will get (reference terms read their column from them)."""
    if not ctx.data_ok or not ctx.decisions.train_sets or ctx.config is None:
        return
    from ..reward_terms import parse_reward_terms
    from ..trainer import PSGRPOTrainer, has_paraphrase_sets

    recipe = ctx.recipe
    try:
        dataset = training_rows(ctx.decisions.train_sets, recipe)
    except ValueError as exc:
        ctx.problems.append(_data_problem("train", exc))
        return
    columns = dataset.column_names
    terms = parse_reward_terms(recipe.reward_terms(), check=False)
    missing = False
    for k, term in enumerate(terms):
        column = term.column or ctx.config.answers_column
        if term.type == "reference" and column not in columns:
            missing = True
            ctx.problems.append(
                f"rewards[{k}] ({term.name}): column {column!r} is not in data.train ({recipe.data.train}); its "
                f"rows have {', '.join(repr(c) for c in columns)}: set the term's column to one of them"
                + (" or map it with data.columns.answers" if is_prompt_rows(ctx.decisions.train_sets) else "")
            )
    if missing:
        return  # said above, in the recipe's words
    try:
        PSGRPOTrainer._check_columns(dataset, ctx.config, "data.train", terms, has_paraphrase_sets(dataset, ctx.config))
    except ValueError as exc:
        ctx.problems.append(str(exc))
    ctx.decisions.train_dataset = dataset


def check_batch_arithmetic(ctx: StartContext) -> None:
    """The batch settings hold whole paraphrase sets for this launch, and data.train fills one generation batch."""
    from ..plan import plan_batches

    recipe, decisions, n = ctx.recipe, ctx.decisions, ctx.decisions.paraphrases_per_set
    if not ctx.check_batches or n is None or not (ctx.data_ok or recipe.data.paraphrases_per_set):
        return
    config = ctx.config
    launch_config = config if config is not None and config.world_size == decisions.num_processes else None
    plan = plan_batches(
        recipe,
        num_processes=decisions.num_processes,
        num_machines=ctx.num_machines,
        paraphrases_per_set=n,
        config=launch_config,
        ordinary=is_prompt_rows(decisions.train_sets) if decisions.train_sets else None,
    )
    decisions.plan = plan
    if plan.problems:
        ctx.problems.append(
            f"batch settings do not fit {decisions.num_processes} process(es):\n"
            + "\n".join(f"- {p}" for p in plan.problems)
        )
    elif ctx.data_ok and ctx.read_data and plan.generation_batch:
        sets_per_batch = plan.generation_batch // (n * plan.num_generations)
        if len(decisions.train_sets) < sets_per_batch:
            unit = "prompt" if plan.ordinary else "set"
            ctx.problems.append(
                f"data.train holds {len(decisions.train_sets)} {unit}(s), but one generation batch "
                f"takes {sets_per_batch} {'prompts' if plan.ordinary else 'whole sets'} "
                f"({plan.generation_batch} completions): add {unit}s, raise data.max_train_sets, or lower the batch"
            )


def check_memory(ctx: StartContext) -> None:
    """The launch fits the GPU memory (sized from the config and data checked above; only when they are sound)."""
    if ctx.problems:
        return
    from ..plan_memory import check_memory_fits

    ctx.problems += check_memory_fits(
        ctx.recipe,
        ctx.config,
        ctx.decisions.train_sets,
        ctx.decisions.num_processes,
        ctx.gpu_memory,
        ctx.accelerate_config,
        getattr(ctx.decisions.plan, "generation_batch", None),
        running=ctx.running,
    )


#: Every check a run makes before it loads weights, in order; ``grpo-sim check`` and ``train`` both run exactly this
#: list (:func:`start_problems`), so that ``check`` passes when ``train`` can start. Adding a check is one line here:
#: a function taking a :class:`StartContext` and appending to its ``problems``. The checks that need the weights
#: (the tokenizer reads the data) run after loading: :func:`grpo_sim.models.startup.policy_start_checks`.
START_CHECKS: list[Callable[[StartContext], None]] = [
    check_config,
    check_model,
    check_run_directory,
    check_train_data,
    check_eval_data,
    check_trainer_columns,
    check_batch_arithmetic,
    check_memory,
]


def start_problems(
    recipe: Recipe,
    output_dir: Path | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    num_processes: int | None = None,
    num_machines: int = 1,
    read_data: bool = True,
    check_batches: bool = True,
    config=None,
    gpu_memory: str | None = None,
    accelerate_config: str | None = None,
) -> tuple[StartDecisions, list[str]]:
    """Every check a run can make before it loads weights (:data:`START_CHECKS`), and what they decided; reads only.

    GRPOConfig, the model path or hub id, the output directory and the resume target (when ``output_dir`` is
    given), the data (every problem of every file, the set layout and the columns the trainer needs) and the batch
    arithmetic for ``num_processes`` (default: this launch's). ``grpo-sim check`` and ``run_training`` both call it,
    so check passes exactly when train can start. ``check_batches=False`` skips the batch arithmetic (when the batch
    keys themselves are invalid). ``config``: the PSGRPOConfig a run already built from ``recipe`` (else it is built
    here). ``gpu_memory`` / ``accelerate_config``: the launch the memory check sizes (``grpo-sim check``; a run on a
    GPU measures its own).
    """
    ctx = StartContext(
        recipe,
        output_dir,
        resume,
        overwrite,
        num_machines,
        read_data,
        check_batches,
        config,
        gpu_memory,
        accelerate_config,
        config is not None,  # a run's own config (train); check builds one here
        StartDecisions(output_dir, False, None, num_processes),  # type: ignore[arg-type]  # set by check_config
    )
    for check in START_CHECKS:
        check(ctx)
    return ctx.decisions, ctx.problems


def check_start(
    recipe: Recipe,
    output_dir: Path | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    num_processes: int | None = None,
    num_machines: int = 1,
    read_data: bool = True,
    gpu_memory: str | None = None,
    accelerate_config: str | None = None,
) -> StartDecisions:
    """:func:`start_problems`, raising one RecipeError that lists every problem."""
    decisions, problems = start_problems(
        recipe,
        output_dir,
        resume,
        overwrite,
        num_processes,
        num_machines,
        read_data,
        gpu_memory=gpu_memory,
        accelerate_config=accelerate_config,
    )
    if problems:
        raise RecipeError(format_problems(recipe._source, problems), problems)
    return decisions


# ------------------------------------------------------------------------------------ one decision for all ranks
def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(value: Any) -> list[Any]:
    import torch.distributed as dist

    rank, world = _world()
    if world == 1:
        return [value]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, value)
    return out


def _broadcast_from_rank0(value: Any) -> Any:
    import torch.distributed as dist

    if _world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _this_machine() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getcwd()}"


def agree_on_start(
    recipe: Recipe, output_dir: Path, resume: str | None, overwrite: bool, config=None
) -> StartDecisions:
    """:func:`check_start` decided once for every machine.

    Every process reads and checks its own data (it trains on it), but the output directory and the checkpoint to
    resume from are decided by global rank 0 and broadcast: with node-local disks each machine would otherwise
    pick its own step (a DeepSpeed load then hangs) or its own verdict (one rank fails while the others wait at a
    barrier for the process-group timeout). Problems found on any rank are raised on every rank, so every process
    exits with the same message. ``config``: the run's PSGRPOConfig (None: it could not be built, which is the same
    on every rank and reported with the other problems).
    """
    if config is not None:
        config.distributed_state  # noqa: B018 - initialises the process group: the decisions below are collective
    rank, world = _world()
    decides = rank == 0
    decisions, problems = start_problems(recipe, output_dir if decides else None, resume, overwrite, config=config)
    if world > 1:
        gathered = _all_gather((problems, _this_machine()))
        seen: set[str] = set()
        problems = []
        for other, (rank_problems, machine) in enumerate(gathered):
            for problem in rank_problems:
                if problem not in seen:
                    seen.add(problem)
                    problems.append(problem if other == 0 else f"{problem} (on rank {other}, {machine})")
        # a checkpoint inside the output directory travels by name: each machine finds it in its own directory
        checkpoint = decisions.checkpoint
        if checkpoint is not None and Path(checkpoint).parent == output_dir:
            checkpoint = Path(checkpoint).name
        must_empty, checkpoint = _broadcast_from_rank0((decisions.must_empty, checkpoint))
        if checkpoint is not None and not os.path.isabs(checkpoint) and os.sep not in checkpoint:
            checkpoint = str(output_dir / checkpoint)
        decisions.must_empty, decisions.checkpoint, decisions.output_dir = must_empty, checkpoint, output_dir
    if problems:
        raise RecipeError(format_problems(recipe._source, problems), problems)
    return decisions


PROBE_FILE = ".grpo_sim_rank0_probe"


def check_output_dir_is_shared(output_dir: Path, checkpoint: str | None, save_on_each_node: bool = False) -> None:
    """Every rank must see what rank 0 wrote into the output directory (and the checkpoint it resumes from).

    Checkpoints, metrics, resume and the final model are decided and written on rank 0; a machine whose
    ``--output-dir`` is its own local disk would train on but never find them (a relative path launched from
    different directories does the same). Fails on every rank at once, before any model loads. With
    ``save_on_each_node`` (each machine saves its own copy) only the checkpoint to resume from must be visible.
    """
    import secrets

    rank, world = _world()
    if world == 1:
        return
    token = _broadcast_from_rank0(secrets.token_hex(8) if rank == 0 else None)
    probe = output_dir / PROBE_FILE
    if rank == 0:
        atomic_write_text(probe, token)
    import torch.distributed as dist

    dist.barrier()
    try:
        sees_probe = probe.read_text() == token
    except OSError:
        sees_probe = False
    sees_checkpoint = checkpoint is None or (Path(checkpoint) / "trainer_state.json").exists()
    views = _all_gather((sees_probe or save_on_each_node, sees_checkpoint, _this_machine()))
    dist.barrier()  # every rank has looked before rank 0 removes the probe
    if rank == 0:
        probe.unlink(missing_ok=True)
    blind = [f"rank {r} ({machine})" for r, (sees, _, machine) in enumerate(views) if not sees]
    if blind:
        raise RunError(
            f"output directory {output_dir} is not shared between the machines: {', '.join(blind)} cannot see what "
            f"rank 0 ({views[0][2]}) wrote there. Checkpoints, resume and the final model are decided on rank 0, so "
            "every machine must see the same directory: put --output-dir on a shared filesystem and pass it as an "
            "absolute path (a relative one resolves against each machine's working directory), or set "
            "training.save_on_each_node: true if each machine is meant to keep its own copy."
        )
    missing = [f"rank {r} ({machine})" for r, (_, sees, machine) in enumerate(views) if not sees]
    if missing:
        raise RunError(
            f"--resume: rank 0 resumes from {checkpoint}, which {', '.join(missing)} cannot see; every "
            "machine needs that checkpoint (a shared --output-dir)"
        )
