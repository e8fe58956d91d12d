"""Training the demo's GRPO arms from their recipes, and running independent jobs two at a time.

:func:`train_arm` trains one arm: its recipe's data (the ``demo`` data source), its recipe's trainer config
(:func:`grpo_sim.demo.settings.arm_config`), the warm start as the policy. :func:`run_jobs` runs the warm starts
and arms of a run in worker processes (``spawn``, one torch thread each), so that a 2-core machine trains two
arms at once; every progress line names its arm, and a failed job fails the run with that job's error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..io import atomic_write_text

__all__ = [
    "ArmFailed",
    "Job",
    "JobPool",
    "job_result",
    "progress_callback",
    "reward_seconds",
    "run_jobs",
    "train_arm",
    "train_stats",
]

#: Logged metric of :class:`~grpo_sim.trainer.PSGRPOTrainer`: seconds spent scoring one generation batch.
REWARD_SECONDS_KEY = "ps_grpo/reward_seconds"
#: One progress line per this many optimizer steps (and at the last one).
PROGRESS_EVERY = 50


class ArmFailed(RuntimeError):
    """A job of the demo (warm start or arm) failed in its worker; the message carries the worker's error."""


def progress_callback(name: str, max_steps: int):
    """Trainer callback printing one compact line every :data:`PROGRESS_EVERY` steps, prefixed ``[name]``."""
    from transformers import TrainerCallback

    class Printer(TrainerCallback):
        start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "reward" not in logs or (state.global_step % PROGRESS_EVERY and state.global_step != max_steps):
                return
            parts = [f"  [{name}] step {state.global_step}/{max_steps} ({time.perf_counter() - self.start:.0f}s)"]
            for key, label in (
                ("rewards/accuracy/mean", "acc"),
                ("rewards/consistency/mean", "cons"),
                ("ps_grpo/agreement", "agree"),
                ("frac_reward_zero_std", "zero-std"),
                ("entropy", "entropy"),
            ):
                if key in logs:
                    parts.append(f"{label} {float(logs[key]):.3f}")
            print("  ".join(parts), flush=True)

    return Printer()


def train_arm(
    arm: str,
    policy_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    settings: Mapping[str, Mapping[str, Any]],
    progress: bool = False,
    labels: Mapping[tuple[str, int], str] | None = None,
    label: str | None = None,
) -> Path:
    """Train ``arm`` (a key of :data:`grpo_sim.demo.settings.ARMS`) from the policy in ``policy_dir`` and save it
    (model + tokenizer) to ``output_dir``; the training log goes to ``output_dir/train_log.json``.

    ``settings``: :func:`grpo_sim.demo.settings.demo_settings` of the run (data size, seed, training
    overrides). ``labels`` maps ``(set_id, paraphrase_id)`` to the answer the accuracy reward scores against
    (default: the set's gold answers); the demo passes the warm start's noisy training labels. ``label``
    prefixes the progress lines (default: the arm).
    """
    from transformers import PrinterCallback

    from ..models import load_policy
    from ..runner import load_sets, training_rows
    from ..trainer import PSGRPOTrainer
    from .settings import arm_config, arm_recipe

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = arm_recipe(arm, settings, policy_dir=str(policy_dir))
    args = arm_config(recipe, str(out / "trainer"))
    train_dataset = training_rows(load_sets(recipe.data.train, recipe, "train"), recipe)
    if labels is not None:
        train_dataset = train_dataset.map(lambda row: {"answers": [labels[(row["set_id"], row["paraphrase_id"])]]})
    model, tokenizer = load_policy(str(policy_dir))
    if recipe.model.freeze_embeddings:
        # tied input/output embeddings stay as in the warm start (see grpo_sim.demo.warmstart)
        model.get_input_embeddings().weight.requires_grad_(False)
    t0 = time.perf_counter()
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # TRL's raw metric dicts; a compact line instead
    if progress:
        trainer.add_callback(progress_callback(label or arm, args.max_steps))
    trainer.train()
    seconds = time.perf_counter() - t0
    model = trainer.model
    model.get_input_embeddings().weight.requires_grad_(True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    log = {
        "arm": arm,
        "reward_terms": args.reward_terms,
        "recipe": recipe.dump_yaml(),
        "max_steps": args.max_steps,
        "logging_steps": args.logging_steps,
        "train_seconds": round(seconds, 2),
        "log_history": trainer.state.log_history,
    }
    atomic_write_text(out / "train_log.json", json.dumps(log, indent=2, default=float))
    return out


def reward_seconds(log_history: Sequence[Mapping[str, Any]], logging_steps: int, max_steps: int) -> float | None:
    """Total seconds spent in the reward functions over a run, from the logged per-step means.

    Each training log averages :data:`REWARD_SECONDS_KEY` over the steps since the previous log (``logging_steps``
    of them, fewer for the last one), so the total is the sum of mean x steps covered."""
    total, previous, seen = 0.0, 0, False
    for h in log_history:
        if REWARD_SECONDS_KEY not in h:
            continue
        step = int(h.get("step", previous + logging_steps))
        step = min(step, max_steps)
        total += float(h[REWARD_SECONDS_KEY]) * max(0, step - previous)
        previous, seen = step, True
    return round(total, 3) if seen else None


def train_stats(arm_dir: Path) -> dict[str, Any]:
    """Mean of a few logged GRPO metrics over the first and the last logged tenth of training, the training
    time and the time spent in the reward functions (``reward_seconds``)."""
    log = json.loads((arm_dir / "train_log.json").read_text(encoding="utf-8"))
    history = log["log_history"]
    logged = [h for h in history if "frac_reward_zero_std" in h]
    out: dict[str, Any] = {"train_seconds": log.get("train_seconds")}
    logging_steps = int(log.get("logging_steps") or 1)
    out["reward_seconds"] = reward_seconds(logged, logging_steps, int(log["max_steps"]))
    if not logged:
        return out
    keys = (
        "frac_reward_zero_std",
        "ps_grpo/frac_reward_zero_std_paraphrase",
        "ps_grpo/frac_reward_zero_std_set",
        "ps_grpo/agreement",
        "rewards/accuracy/mean",
        "rewards/consistency/mean",
        "entropy",
    )
    k = max(1, len(logged) // 10)
    for name, part in (("first", logged[:k]), ("last", logged[-k:])):
        out[name] = {
            key: round(sum(h[key] for h in part) / len(part), 4) for key in keys if all(key in h for h in part)
        }
    return out


# ------------------------------------------------------------------------------------------
# Jobs in worker processes
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One independent unit of a run: ``function(**kwargs)`` in a worker; ``label`` names it in errors."""

    label: str
    function: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)


def quiet_torch_process(num_threads: int | None) -> None:
    """Settings of a process that trains demo jobs: torch threads, no download/progress bars, no deprecation
    notices that TRL's own config triggers once per arm."""
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    if num_threads:
        torch.set_num_threads(int(num_threads))
    hf_logging.disable_progress_bar()  # "Loading weights" bars at every model load
    # transformers' deprecation notices about TRL's gradient_checkpointing field, once per arm
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def _call(job: Job) -> Any:
    try:
        return job.function(**job.kwargs)
    except Exception as exc:  # noqa: BLE001 - sent back to the parent as text, with its traceback
        raise ArmFailed(
            f"{job.label} failed: {type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc)).rstrip()}"
        ) from None


def _call_in_worker(job: Job) -> Any:
    """:func:`_call` in a worker process, whose log lines (collapse warnings, errors) name the job."""
    import logging

    logging.basicConfig(level=logging.WARNING, format=f"[{job.label}] %(levelname)s %(name)s: %(message)s", force=True)
    return _call(job)


class JobPool:
    """Runs :class:`Job` objects as they are submitted: in ``workers`` ``spawn`` processes with ``num_threads`` torch
    threads each, or (``workers <= 1``) in this process at once. :meth:`submit` returns a future whose
    :func:`job_result` raises :class:`ArmFailed` for a failed job. Leaving the ``with`` block on an error cancels
    the jobs not yet started and waits for the running ones."""

    def __init__(self, workers: int = 2, num_threads: int | None = 1):
        self.workers = int(workers)
        self.num_threads = num_threads
        self._executor = None

    def __enter__(self) -> "JobPool":
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")  # fork after torch/OpenMP initialised can hang
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=quiet_torch_process,
                initargs=(self.num_threads,),
            )
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._executor is not None:
            sys.stdout.flush()
            self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)

    def submit(self, job: Job):
        from concurrent.futures import Future

        if self._executor is not None:
            return self._executor.submit(_call_in_worker, job)
        future: Future = Future()
        try:
            future.set_result(_call(job))
        except ArmFailed as error:
            future.set_exception(error)
        return future


def job_result(future) -> Any:
    """The result of a finished job's future; :class:`ArmFailed` (with the job's error) when it failed."""
    error = future.exception()
    if error is None:
        return future.result()
    raise error if isinstance(error, ArmFailed) else ArmFailed(f"{type(error).__name__}: {error}")


def run_jobs(jobs: Sequence[Job], workers: int = 2, num_threads: int | None = 1) -> list[Any]:
    """Results of ``jobs`` (in order) run in a :class:`JobPool`; the first failure raises :class:`ArmFailed`
    after cancelling the jobs not yet started."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    with JobPool(min(workers, len(jobs)), num_threads) as pool:
        futures = [pool.submit(job) for job in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                job_result(f)
        return [job_result(f) for f in futures]
