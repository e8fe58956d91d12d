"""Run a recipe: output directory policy, data, model, trainer, resume, signals, final save.

Used by ``grpo-sim train``, ``python -m grpo_sim.train`` (under ``accelerate launch``) and the demo.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .distributed import is_main_process, outside_zero3_init
from .io import atomic_write_text
from .models.startup import policy_start_checks
from .recipe import Recipe, RecipeError, build_config, format_problems
from .signals import StopSignals
from .sources import DATA_SOURCES, MODEL_SOURCES

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".grpo_sim_complete"
RESOLVED_RECIPE = "recipe.resolved.yaml"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"
#: the trained LoRA adapter when ``model.merge_adapters`` puts the merged model into final/
FINAL_ADAPTER_DIR = "final_adapter"


class RunError(RuntimeError):
    """The run cannot start or continue as asked (output directory, checkpoints)."""


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint."""

    def __init__(self, signum: int, checkpoint: str | None, output_dir: Path):
        self.signum = signum
        self.checkpoint = checkpoint
        self.output_dir = output_dir
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _NothingLeftToTrain(Exception):
    """Raised before the first step of a run resumed at (or past) max_steps: only the final save remains."""


@dataclass
class RunResult:
    output_dir: Path
    final_model: Path | None
    global_step: int
    seconds: float
    last_metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    final_adapter: Path | None = None
    pushed_to: str | None = None


# ------------------------------------------------------------------------------------ checkpoints
def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def find_checkpoints(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoints, newest first. Complete = our marker was written after the save."""
    if not output_dir.is_dir():
        return [], []
    candidates = sorted((p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0),
                        key=_step_of, reverse=True)
    complete = [p for p in candidates if (p / COMPLETE_MARKER).exists()]
    incomplete = [p for p in candidates if not (p / COMPLETE_MARKER).exists()]
    return complete, incomplete


def resolve_resume(output_dir: Path, resume: str | None) -> str | None:
    """Checkpoint path to resume from (``auto`` = newest complete one), or None to start fresh."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise RunError(f"--resume {resume}: no such checkpoint directory")
        if not (path / "trainer_state.json").exists():
            raise RunError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json)")
        return str(path)
    complete, incomplete = find_checkpoints(output_dir)
    newest_complete = _step_of(complete[0]) if complete else -1
    for path in incomplete:
        if _step_of(path) > newest_complete:
            logger.warning("skipping %s: its write did not finish (no %s marker)", path, COMPLETE_MARKER)
    if complete:
        return str(complete[0])
    logger.warning("--resume auto: no complete checkpoint in %s, starting from step 0", output_dir)
    return None


def never_trained(output_dir: Path) -> bool:
    """True if the directory holds only what a start leaves before training (the resolved recipe, empty folders).

    Such a directory is what a failed start (e.g. a model that would not load) leaves behind; its
    rerun may reuse it without --overwrite.
    """
    entries = list(output_dir.iterdir())
    return any(p.name == RESOLVED_RECIPE for p in entries) and all(
        p.name == RESOLVED_RECIPE or (p.is_dir() and not any(p.iterdir())) for p in entries)


def check_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> bool:
    """Refuse to mix runs: a non-empty directory needs --resume or --overwrite. Returns "must empty it".

    Reads only, so every process can run it before any process writes.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise RunError(f"output directory {output_dir} exists and is not a directory")
    existing = [p.name for p in output_dir.iterdir()] if output_dir.is_dir() else []
    if existing and resume is None:
        if never_trained(output_dir):
            logger.info("%s holds only the files of a start that never trained; replacing them", output_dir)
            return True
        if not overwrite:
            shown = ", ".join(sorted(existing)[:5]) + (" ..." if len(existing) > 5 else "")
            raise RunError(
                f"output directory {output_dir} is not empty ({shown}). Continue that run with --resume auto, "
                "start again with --overwrite (deletes it), or choose another --output-dir."
            )
        return True
    return False


# ------------------------------------------------------------------------------------ callbacks
def drop_metrics_after(path: Path, step: int) -> int:
    """Rewrite metrics.jsonl (atomically) without the rows logged after ``step``; returns how many were dropped.

    A resumed run continues from its checkpoint's step, so rows the stopped run logged past it would
    otherwise appear twice (``1..6, 4..8``). A line cut off by a kill is dropped too.
    """
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            row_step = None
        if row_step is None or row_step > step:
            dropped += 1
        else:
            kept.append(line + "\n")
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


class MetricsFileCallback(TrainerCallback):
    """Appends every logged step to metrics.jsonl (main process only) and marks complete checkpoints."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / METRICS_FILE
        self.last: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        # state.global_step is the resumed checkpoint's step here (0 for a fresh start)
        if state.is_world_process_zero:
            dropped = drop_metrics_after(self.path, state.global_step)
            if dropped:
                logger.info("%s: dropped %d row(s) logged after step %d (training continues from there)",
                            self.path, dropped, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch, **logs}
        if "reward" in logs or "loss" in logs:  # keep the last training log, not the end-of-run summary
            self.last = row
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row, default=float) + "\n")

    def on_save(self, args, state, control, **kwargs):
        # with save_on_each_node every machine writes (and resumes from) its own copy
        if state.is_local_process_zero if args.save_on_each_node else state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                atomic_write_text(checkpoint / COMPLETE_MARKER, json.dumps({"step": state.global_step}))


class RecipeToTrackersCallback(TrainerCallback):
    """Puts the resolved recipe into the experiment trackers' run config (wandb), next to TRL's args."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or "wandb" not in (args.report_to or []):
            return
        try:
            import wandb
        except ImportError:
            return
        if wandb.run is not None:
            wandb.config.update({"grpo_sim_recipe": self.recipe.resolved_dict(),
                                 "grpo_sim_recipe_file": self.recipe._source}, allow_val_change=True)


class GracefulStopCallback(StopSignals, TrainerCallback):
    """SIGTERM/SIGINT: finish the current step, save a checkpoint, stop. A second SIGINT aborts.

    A signal during the last step stops nothing: that step ends the run anyway, so the run finishes
    normally (final save, evaluation) instead of leaving a checkpoint at max_steps to resume from.
    """

    def __init__(self):
        super().__init__(abort_on_repeat=(signal.SIGINT,), on_signal=self._announce)
        self.stopped_at: int | None = None  # the step training stopped after, when a signal stopped it

    @staticmethod
    def _announce(signum: int) -> None:
        if is_main_process():
            print(f"\n[grpo-sim] {signal.Signals(signum).name} received: saving a checkpoint after this step "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def _stop_requested(self) -> bool:
        flag = self.signum is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # every rank must stop at the same step
            import torch

            tensor = torch.tensor([1.0 if flag else 0.0])
            if dist.get_backend() == "nccl":
                tensor = tensor.cuda()
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item() > 0)
            if flag and self.signum is None:
                self.signum = signal.SIGTERM
        return flag

    def on_step_end(self, args, state, control, **kwargs):
        stop = self._stop_requested()  # every rank joins the all-reduce at every step
        if stop and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


class NothingLeftToTrainCallback(TrainerCallback):
    """Resumed at max_steps (a run killed after its last checkpoint, before final/): train no further step.

    transformers checks max_steps only after a step, so it would train one step past it. The checkpoint's
    weights are loaded before on_train_begin; stopping there leaves exactly the state to save as final.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise _NothingLeftToTrain


# ------------------------------------------------------------------------------------ data + model
def _hf_rows(spec: str, recipe: Recipe, split: str):
    """``hf:NAME[:SPLIT]``: a Hub dataset (``data.config`` its configuration) or a ``save_to_disk`` directory."""
    import datasets

    name, _, hf_split = spec[3:].partition(":")
    try:
        if Path(name).is_dir():
            rows = datasets.load_from_disk(name)
            if isinstance(rows, datasets.DatasetDict):
                rows = rows[hf_split or split]
            return rows
        return datasets.load_dataset(name, recipe.data.config, split=hf_split or split)
    except (OSError, ValueError, KeyError, datasets.exceptions.DatasetsError) as exc:
        # the hub or the network, a missing split (KeyError of a DatasetDict), a bad name: "cannot read data.<split>"
        raise RecipeError(f"data.{split}: cannot load {spec} ({type(exc).__name__}: {exc})") from None


def load_data(spec: str, recipe: Recipe, split: str):
    """Paraphrase sets (a list of ParaphraseSet) or ordinary prompt rows (a list of dicts), as data.format says
    (auto: rows with 'paraphrases' are sets), from a JSONL path, a save_to_disk directory, 'hf:NAME[:SPLIT]' or
    the bundled demo."""
    from .data.prompts import looks_like_paraphrase_sets, prompt_rows, read_jsonl_rows
    from .data.schema import load_psets

    data = recipe.data
    if spec in DATA_SOURCES:  # a named source (data.train: demo)
        return DATA_SOURCES[spec].load(recipe, split)
    if spec.startswith("hf:"):
        source: Any = _hf_rows(spec, recipe, split)
        first = source[0] if len(source) else {}
    else:
        path = Path(spec)
        if not path.exists():
            where = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
            raise RecipeError(f"data.{split}: {spec} does not exist{where}")
        source = path
        if data.format == "paraphrase_sets" or path.is_dir() or path.suffix in (".gz", ".bz2", ".xz", ".zst"):
            first = {"paraphrases": None}
        else:
            try:
                first = next(iter(read_jsonl_rows(path)), {"paraphrases": None})
            except ValueError:  # a broken file: the paraphrase-set reader names every problem
                first = {"paraphrases": None}
    sets = data.format == "paraphrase_sets" or (data.format == "auto" and looks_like_paraphrase_sets(first))
    if sets:
        return load_psets(source)
    rows = source if not isinstance(source, Path) else read_jsonl_rows(source)
    limit = data.max_train_sets if split == "train" else data.max_eval_sets
    return prompt_rows(rows, spec, data.columns, data.system_prompt, limit)


def is_prompt_rows(items) -> bool:
    return bool(items) and isinstance(items[0], dict)


def load_sets(spec: str, recipe: Recipe, split: str):
    """Paraphrase sets (see :func:`load_data`); ordinary rows are an error here."""
    items = load_data(spec, recipe, split)
    if is_prompt_rows(items):
        raise RecipeError(f"data.{split}: {spec} holds ordinary prompts, not paraphrase sets")
    return items


def trim_sets(sets, paraphrases_per_set: int | None, max_sets: int | None):
    from .data.ops import keep_first_paraphrases, sets_shorter_than

    if is_prompt_rows(sets):
        return sets  # ordinary rows: load_data applied the limit
    if paraphrases_per_set is not None:
        short = [s.set_id for s in sets_shorter_than(sets, paraphrases_per_set)]
        if short:
            raise RecipeError(f"data.paraphrases_per_set={paraphrases_per_set}, but {len(short)} set(s) have fewer "
                              f"paraphrases (e.g. {short[:3]}); lower it or drop them: grpo-sim data filter FILE "
                              f"--out FILTERED --paraphrases-per-set {paraphrases_per_set}")
        sets = keep_first_paraphrases(sets, paraphrases_per_set)
    return sets[:max_sets] if max_sets else sets


def training_rows(sets, recipe: Recipe):
    """The trainer's dataset: one row per paraphrase of every set, or the ordinary rows as they are."""
    from datasets import Dataset

    from .data.schema import to_training_rows

    if is_prompt_rows(sets):
        return Dataset.from_list(sets)
    from .data.prompts import with_system_prompt

    rows = to_training_rows(sets, recipe.data.prompt)
    for row in rows:
        row["prompt"] = with_system_prompt(row["prompt"], recipe.data.system_prompt)
    return Dataset.from_list(rows)


def resolve_model_path(recipe: Recipe, cache_dir: Path | None = None) -> str:
    source = MODEL_SOURCES.get(recipe.model.name_or_path)  # a named source (grpo-sim:demo-warmstart)
    return source.resolve(recipe, cache_dir) if source else recipe.model.name_or_path


def _load_policy(recipe: Recipe, cache_dir: Path | None = None):
    """(model, tokenizer) as the recipe asks: model.dtype (``auto``: the checkpoint's dtype), attention."""
    from .models.loading import load_policy

    path = resolve_model_path(recipe, cache_dir)
    kwargs = recipe.model.init_kwargs()  # the same arguments TRL gets for the reference model
    dtype = kwargs.pop("dtype", None)
    try:
        return load_policy(path, dtype=dtype, **kwargs)
    except OSError as exc:
        raise RecipeError(f"{recipe._source}: model.name_or_path {path!r} could not be loaded: {exc}") from None


def optimizer_sees_loaded_weights(recipe: Recipe, config) -> bool:
    """Whether AdamW would update the parameters in the dtype they were loaded in (plain DDP or one device).

    Not with LoRA (peft keeps adapters in float32, ``autocast_adapter_dtype``; under ZeRO-3 TRL keeps them
    bf16 and DeepSpeed holds the masters), not under DeepSpeed (fp32 master weights in its optimizer) and
    not under FSDP with mixed precision (accelerate upcasts the sharded parameters to float32).
    """
    if recipe.model.lora is not None or getattr(config, "deepspeed_plugin", None) is not None:
        return False
    fsdp = bool(getattr(config, "fsdp_plugin_args", None)) or \
        os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
    return not (fsdp and getattr(config, "mixed_precision", "no") != "no")


def load_model(recipe: Recipe, cache_dir: Path | None = None, config=None):
    """``(model, tokenizer, final_dtype)``.

    A bf16/fp16 model whose weights AdamW would update directly (see :func:`optimizer_sees_loaded_weights`)
    is upcast to float32 master weights: at lr 1e-6 almost every bf16 update rounds away (10 steps changed
    2% of the weights). ``training.bf16`` (mixed precision) still runs the compute in bf16. ``final_dtype``
    is then the loaded dtype, which final/ is saved in (checkpoints keep the float32 masters, so resuming
    is exact); otherwise None (saved as trained).
    """
    import torch

    model, tokenizer = _load_policy(recipe, cache_dir)
    low_precision = {p.dtype for p in model.parameters() if p.dtype in (torch.bfloat16, torch.float16)}
    if not low_precision or config is None or not optimizer_sees_loaded_weights(recipe, config):
        return model, tokenizer, None
    final_dtype = model.dtype
    model.float()
    logger.info("model loaded in %s: training float32 master weights (compute precision: %s); final/ is saved "
                "in %s", final_dtype, getattr(config, "mixed_precision", "no"), final_dtype)
    return model, tokenizer, final_dtype


def lora_config(recipe: Recipe):
    if recipe.model.lora is None:
        return None
    from peft import LoraConfig

    lora = recipe.model.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def cpu_defaults(recipe: Recipe) -> Recipe:
    """GRPOConfig defaults to bf16, which fails without a GPU: default to CPU-safe settings there."""
    import torch

    if torch.cuda.is_available():
        return recipe
    training = dict(recipe.training)
    training.setdefault("use_cpu", True)
    training.setdefault("bf16", False)
    return recipe.model_copy(update={"training": training})


# ------------------------------------------------------------------------------------ model card
def describe_term(term: dict[str, Any]) -> str:
    """One line of the model card for a reward term."""
    kind = term["type"]
    if kind == "consistency":
        relaxed = term.get("relaxed")
        how = f"relaxed (kappa={relaxed['kappa']}, samples={relaxed['samples']})" if relaxed else "exact"
        what = f"`{term['similarity']}` across paraphrases, {how}"
    elif kind == "reference":
        what = f"`{term['similarity']}` against `{term.get('column') or 'answers'}`"
    elif kind == "agreement":
        what = "majority answer of the other paraphrases (Co-Reward)"
    else:
        what = f"`{term['function']}`" + (f" with {term['kwargs']}" if term.get("kwargs") else "")
    return f"{term.get('weight', 1.0)} x {term.get('name', kind)} ({kind}): {what}"


def model_card(recipe: Recipe, result: RunResult, data_summary: dict[str, Any]) -> str:
    terms = recipe.reward_terms()
    data = (f"{data_summary.get('train_sets')} sets x {data_summary.get('paraphrases_per_set')} paraphrases, prompt "
            f"`{recipe.data.prompt}`" if "train_sets" in data_summary else f"{data_summary.get('train_rows')} prompts")
    lines = [
        "---", "library_name: transformers", "tags: [grpo-sim, ps-grpo, trl, grpo]", "---", "",
        f"# {result.output_dir.name}", "",
        "Fine-tuned with grpo-sim: GRPO with similarity rewards on Hugging Face TRL's GRPOTrainer (consistency "
        "terms: PS-GRPO, Hamman et al., NeurIPS 2025, arXiv:2510.04392).", "",
        f"- base model: `{recipe.model.name_or_path}`" + (" + LoRA" if recipe.model.lora else ""),
        f"- training data: `{recipe.data.train}` ({data})",
        *[f"- reward: {describe_term(term)}" for term in terms],
        f"- advantages per `{recipe.reward.advantage or 'paraphrase'}`",
        f"- steps: {result.global_step}, wall time {result.seconds:.0f} s",
        f"- recipe: `{recipe._source}` (resolved copy: `{RESOLVED_RECIPE}`)", "",
    ]
    return "\n".join(lines + evaluation_card_lines(result.evaluation))


def evaluation_card_lines(evaluation: dict[str, Any] | None) -> list[str]:
    """The evaluation table of a model card, with the collapse warnings above it (bookkeeping keys left out)."""
    if not evaluation:
        return []
    from .eval.report import result_warnings

    rows = evaluation.get("kind") == "rows"  # ordinary rows: answers against references, no consistency
    lines = [f"## Evaluation (held-out {'rows' if rows else 'sets'})", ""]
    warnings = evaluation.get("warnings", []) if rows else result_warnings(evaluation)
    if warnings:
        lines += [f"**Warning:** {warning}" for warning in warnings] + [""]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in evaluation.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("_ci") \
                and key != "schema_version":
            lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return lines + [""]


# ------------------------------------------------------------------------------------ start checks
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
            problems.append(f"rewards[{k}] ({kind}): compares the paraphrases of a set, but data.train "
                            f"({recipe.data.train}) holds ordinary prompts without paraphrase sets; drop the term or "
                            "train on paraphrase-set data")
        elif kind == "reference":
            column = term.get("column") or "answers"
            if all(row.get(column) is None for row in rows):
                problems.append(f"rewards[{k}] (reference): no row of data.train has references in {column!r}; map "
                                "the reference column with data.columns.answers (or set the term's column)")
    if recipe.reward.advantage == "set":
        problems.append("reward.advantage: 'set' needs paraphrase sets; ordinary prompts use 'paraphrase' (one group "
                        "per prompt, as TRL) or 'batch'")
    return problems


def start_problems(recipe: Recipe, output_dir: Path | None = None, resume: str | None = None,
                   overwrite: bool = False, num_processes: int | None = None, num_machines: int = 1,
                   read_data: bool = True, check_batches: bool = True, config=None
                   ) -> tuple[StartDecisions, list[str]]:
    """Every check a run can make before its first write, and what it decided; reads only.

    GRPOConfig, the model path when it is a local one, the output directory and the resume target
    (when ``output_dir`` is given), the data (every problem of every file, the set layout the
    trainer needs) and the batch arithmetic for ``num_processes`` (default: this launch's).
    ``grpo-sim check`` and ``run_training`` both call it, so check passes exactly when train can start.
    ``check_batches=False`` skips the batch arithmetic (when the batch keys themselves are invalid). ``config``: the
    PSGRPOConfig a run already built from ``recipe`` (else it is built here).
    """
    from .plan import plan_batches
    from .sampler import build_set_layout

    source = recipe._source
    problems: list[str] = []
    try:
        if config is None:
            config = build_config(recipe, output_dir or Path("grpo-sim-check"), num_processes)
        if num_processes is None:
            num_processes = config.world_size
    except RecipeError as exc:
        problems.extend(_problems_of(exc, source))
    decisions = StartDecisions(output_dir, False, None, num_processes or 1)

    model = recipe.model.name_or_path
    local = model.startswith(("/", "./", "../", "~"))
    if model not in MODEL_SOURCES and local and not Path(model).expanduser().exists():
        problems.append(f"model.name_or_path: {model} does not exist (a local path; hub ids look like org/name)")

    if output_dir is not None:
        try:
            decisions.must_empty = check_output_dir(output_dir, resume, overwrite)
            decisions.checkpoint = resolve_resume(output_dir, resume)
        except RunError as exc:
            problems.append(str(exc))
        existing = next((p for p in (output_dir, *output_dir.parents) if p.exists()), None)
        if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"output directory {output_dir}: {existing} is not writable; choose another --output-dir")

    source = DATA_SOURCES.get(recipe.data.train)
    n = recipe.data.paraphrases_per_set or (source.paraphrases_per_set(recipe) if source else None)
    data_ok = True
    if read_data:
        try:
            sets = trim_sets(load_data(recipe.data.train, recipe, "train"), recipe.data.paraphrases_per_set,
                             recipe.data.max_train_sets)
            if is_prompt_rows(sets):  # ordinary prompts: one TRL group per prompt, a "set" of one
                decisions.train_sets, n = sets, 1
                problems.extend(_prompt_data_problems(recipe, sets))
            else:
                rows = [(s.set_id, p.paraphrase_id) for s in sets for p in s.paraphrases]
                layout = build_set_layout([r[0] for r in rows], [r[1] for r in rows],
                                          f"data.train ({recipe.data.train})")
                decisions.train_sets, n = sets, layout.paraphrases_per_set
        except ValueError as exc:  # RecipeError, DataError, SetLayoutError
            problems.append(_data_problem("train", exc))
            data_ok = False
        if recipe.data.eval:
            try:
                # evaluation scores every wording: paraphrases_per_set shapes training batches only
                decisions.eval_sets = trim_sets(load_data(recipe.data.eval, recipe, "eval"), None,
                                                recipe.data.max_eval_sets)
            except ValueError as exc:
                problems.append(_data_problem("eval", exc))
    decisions.paraphrases_per_set = n

    if check_batches and n is not None and (data_ok or recipe.data.paraphrases_per_set):
        launch_config = config if config is not None and config.world_size == decisions.num_processes else None
        plan = plan_batches(recipe, num_processes=decisions.num_processes, num_machines=num_machines,
                            paraphrases_per_set=n, config=launch_config)
        decisions.plan = plan
        if plan.problems:
            problems.append(f"batch settings do not fit {decisions.num_processes} process(es):\n"
                            + "\n".join(f"- {p}" for p in plan.problems))
        elif data_ok and read_data and plan.generation_batch:
            sets_per_batch = plan.generation_batch // (n * plan.num_generations)
            if len(decisions.train_sets) < sets_per_batch:
                problems.append(f"data.train holds {len(decisions.train_sets)} set(s), but one generation batch "
                                f"takes {sets_per_batch} whole sets ({plan.generation_batch} completions): add "
                                "sets, raise data.max_train_sets, or lower the batch")
    return decisions, problems


def check_start(recipe: Recipe, output_dir: Path | None = None, resume: str | None = None, overwrite: bool = False,
                num_processes: int | None = None, num_machines: int = 1, read_data: bool = True) -> StartDecisions:
    """:func:`start_problems`, raising one RecipeError that lists every problem."""
    decisions, problems = start_problems(recipe, output_dir, resume, overwrite, num_processes, num_machines,
                                         read_data)
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


def agree_on_start(recipe: Recipe, output_dir: Path, resume: str | None, overwrite: bool, config=None
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
        raise RunError(f"--resume: rank 0 resumes from {checkpoint}, which {', '.join(missing)} cannot see; every "
                       "machine needs that checkpoint (a shared --output-dir)")


def run_directory(recipe: Recipe, output_dir: str | os.PathLike[str] | None = None) -> Path:
    """--output-dir, else the recipe's output_dir, else runs/<recipe name>."""
    return Path(output_dir or recipe.output_dir or f"runs/{Path(recipe._source).stem}").resolve()


# ------------------------------------------------------------------------------------ run
def run_training(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> RunResult:
    """Train a recipe end to end. Raises RecipeError/RunError for bad input, Interrupted on signals."""
    from .trainer import PSGRPOTrainer

    start = time.time()
    out = run_directory(recipe, output_dir)
    cache = Path(cache_dir) if cache_dir else None
    recipe = cpu_defaults(recipe)
    if "run_name" not in recipe.training:  # trackers (wandb, tensorboard) name the run after its directory
        recipe = recipe.model_copy(update={"training": {**recipe.training, "run_name": out.name}})
    # Everything (data, batches, output dir, resume target) is checked before any process writes, so a run that
    # cannot start leaves no trace and its rerun with the fixed input is not refused. The output-dir and resume
    # decisions are global rank 0's, the same on every machine; a problem on any rank fails every rank.
    try:
        # built once: the start checks and the trainer use this one. (Every GRPOConfig build resets accelerate's
        # shared state, so a config built after this one, e.g. for a batch plan, would leave the trainer's stale.)
        config = build_config(recipe, out)
    except RecipeError:
        config = None  # agree_on_start reports why, with every other problem
    decisions = agree_on_start(recipe, out, resume, overwrite, config)
    assert config is not None  # otherwise agree_on_start raised
    state = config.distributed_state
    if state.is_main_process:
        if decisions.must_empty:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESOLVED_RECIPE, recipe.dump_yaml())
    check_output_dir_is_shared(out, decisions.checkpoint, save_on_each_node=bool(config.save_on_each_node))
    checkpoint = decisions.checkpoint
    train_sets, eval_sets = decisions.train_sets, decisions.eval_sets
    train_dataset = training_rows(train_sets, recipe)
    model, tokenizer, final_dtype = load_model(recipe, cache, config)
    policy_start_checks(model, tokenizer, [row[-1]["content"] for row in train_dataset["prompt"]],
                        f"data.train ({recipe.data.train})", recipe.model.name_or_path)
    if recipe.model.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)

    stopper = GracefulStopCallback()
    metrics_cb = MetricsFileCallback(out)
    trainer = PSGRPOTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer,
                            peft_config=lora_config(recipe),
                            callbacks=[metrics_cb, stopper, NothingLeftToTrainCallback(),
                                       RecipeToTrackersCallback(recipe)])
    if progress and sys.stdout.isatty() and is_main_process():
        from transformers.trainer_callback import ProgressCallback
        from trl.trainer.callbacks import RichProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(RichProgressCallback())
    stopper.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except _NothingLeftToTrain:
        logger.info("%s is at max_steps (%d): nothing left to train, saving it as the final model",
                    checkpoint, trainer.state.max_steps)
    finally:
        stopper.uninstall()
    if stopper.stopped_at is not None:
        # No rank leaves before rank 0 has written the checkpoint and its completion marker: a launcher that kills
        # the job when one process exits (srun --kill-on-bad-exit, torchrun) would otherwise kill the writer.
        trainer.accelerator.wait_for_everyone()
        saved = f"checkpoint-{stopper.stopped_at}"
        raise Interrupted(stopper.signum, str(out / saved) if (out / saved).is_dir() else None, out)
    if stopper.signum is not None:
        logger.warning("%s came during the last step: finishing the run", signal.Signals(stopper.signum).name)

    result = RunResult(out, out / FINAL_DIR, trainer.state.global_step, time.time() - start, metrics_cb.last)
    is_main = trainer.accelerator.is_main_process
    merge = recipe.model.lora is not None and recipe.model.merge_adapters
    if merge:
        result.final_adapter = out / FINAL_ADAPTER_DIR
    save_trained_model(trainer, result.final_adapter or result.final_model, final_dtype)
    hub_repo = hub_target(trainer)
    # Training is over: free it, and end the process group, so that nothing below can wait on another rank
    # (a sharded model blocks a rank-0-only forward forever; a long evaluation outlives the group's timeout).
    trainer.accelerator.free_memory()
    del trainer, model
    end_distributed()
    if not is_main:
        return result

    if merge:
        merge_saved_adapter(recipe, cache, result.final_adapter, result.final_model)
    if eval_sets and recipe.evaluation.enabled:
        result.evaluation = evaluate_final(recipe, result.final_model, eval_sets, out / "eval")
    data_summary = ({"train_rows": len(train_sets)} if is_prompt_rows(train_sets) else
                    {"train_sets": len(train_sets), "paraphrases_per_set": len(train_sets[0].paraphrases)})
    card = model_card(recipe, result, data_summary)
    atomic_write_text(result.final_model / "README.md", card)
    atomic_write_text(out / "README.md", card)  # replaces TRL's stock card (written with every checkpoint)
    if hub_repo is not None:
        result.pushed_to = push_final_to_hub(result.final_model, *hub_repo)
    return result


# ------------------------------------------------------------------------------------ after training
def save_trained_model(trainer, target: Path, final_dtype=None) -> None:
    """Every rank: ``trainer.save_model`` gathers sharded weights (ZeRO-3, FSDP) and the main process writes.

    ``final_dtype``: the float32 master weights :func:`load_model` made go back to the dtype the recipe
    loaded (a bf16 recipe keeps bf16-sized files). Only set when the model is not sharded.
    """
    if trainer.is_fsdp_enabled:
        # with SHARDED_STATE_DICT (configs/accelerate/fsdp.yaml) save_model would write no weights at all
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    if final_dtype is not None:
        trainer.accelerator.unwrap_model(trainer.model).to(final_dtype)
    # _internal_call: push_to_hub would upload the whole run directory here; final/ is pushed on its own
    trainer.save_model(str(target), _internal_call=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process and not any(
            (target / name).exists() for name in ("model.safetensors", "model.safetensors.index.json",
                                                  "adapter_model.safetensors", "pytorch_model.bin")):
        raise RunError(f"{target}: the trainer saved no model weights. Under DeepSpeed ZeRO-3 set "
                       "zero3_save_16bit_model: true (stage3_gather_16bit_weights_on_model_save) in the accelerate "
                       "config; the last checkpoint holds the trained state.")


def hub_target(trainer) -> tuple[str, str | None, str | None] | None:
    """(repo id, token, revision) when ``training.push_to_hub`` is on, after earlier checkpoint pushes finished."""
    repo_id = getattr(trainer, "hub_model_id", None)  # set on the main process by Trainer.init_hf_repo
    if not trainer.args.push_to_hub or repo_id is None:
        return None
    pending = getattr(trainer, "push_in_progress", None)  # checkpoint pushes run in the background
    if pending is not None and not pending.is_done():
        pending.wait_until_done()
    return repo_id, trainer.args.hub_token, trainer.args.hub_revision


def push_final_to_hub(final: Path, repo_id: str, token: str | None, revision: str | None) -> str:
    """Upload final/ (weights, tokenizer, model card) to the hub repo of ``training.hub_model_id``."""
    from huggingface_hub import upload_folder

    upload_folder(repo_id=repo_id, folder_path=str(final), commit_message="grpo-sim: final model", token=token,
                  revision=revision)
    logger.info("pushed %s to https://huggingface.co/%s", final, repo_id)
    return repo_id


def end_distributed() -> None:
    """Every rank meets once more, then the process group ends (no collective can run after training)."""
    import gc

    import torch
    import torch.distributed as dist

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def merge_saved_adapter(recipe: Recipe, cache: Path | None, adapter_dir: Path, final: Path) -> None:
    """One process: base model (as the recipe loads it) + the saved adapter, merged, into final/.

    Merging from disk works the same whatever sharded the adapter during training (ZeRO-3, FSDP).
    """
    from peft import PeftModel

    with outside_zero3_init():  # the run's ZeRO-3 config outlives training; this load must be whole
        base, tokenizer = _load_policy(recipe, cache)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))


def row_similarities(recipe: Recipe) -> dict[str, tuple[str, str]]:
    """What the evaluation of ordinary rows scores: ``{key: (similarity, reference column)}`` for every reference
    term (``reference_<name>``, as the reward saw it) and every evaluation metric against the answers
    (``accuracy_<metric>``)."""
    from .eval.metrics import metric_key

    out = {f"reference_{term['name']}": (term["similarity"], term.get("column") or "answers")
           for term in recipe.reward_terms() if term["type"] == "reference"}
    for entry in recipe.evaluation.metrics:
        key, spec = metric_key(entry)
        out[f"accuracy_{key}"] = (spec, "answers")
    return out


def evaluate_final(recipe: Recipe, final: Path, eval_items, output_dir: Path) -> dict[str, Any]:
    """Evaluate the saved final model (loaded from disk as a plain model) on the held-out data with grpo_sim.eval:
    the consistency evaluation of paraphrase sets, or, for ordinary rows, its greedy answers scored against the
    references (:func:`row_similarities`). Prompts are formatted exactly as training formats them (the template,
    data.system_prompt, model.chat_template_kwargs)."""
    from .eval import evaluate_model
    from .eval.rows import evaluate_rows

    ev = recipe.evaluation
    # Under ZeRO-3 the run's HfDeepSpeedConfig is still alive: without this, from_pretrained would partition the
    # evaluation model across a process group that no longer exists.
    with outside_zero3_init():
        if is_prompt_rows(eval_items):  # the rows carry the system prompt already (data.prompts.prompt_rows)
            return evaluate_rows(str(final), eval_items, row_similarities(recipe), output_dir,
                                 chat_template_kwargs=recipe.model.chat_template_kwargs,
                                 max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
        return evaluate_model(str(final), eval_items, output_dir=output_dir, levels=tuple(ev.levels),
                              metrics=tuple(ev.metrics), template=recipe.data.prompt,
                              max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                              system_prompt=recipe.data.system_prompt,
                              chat_template_kwargs=recipe.model.chat_template_kwargs)
