"""The long-form demo's GRPO arms (:mod:`grpo_sim.demo.longform`): one arm from the warm start with its reward
terms, and both arms in two processes."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import atomic_write_text
from .arms import progress_callback
from .longform_settings import ARM_REWARD_TERMS, ARMS
from .longform_world import LONGFORM_TEMPLATE

# ------------------------------------------------------------------------------------------
# GRPO arms
# ------------------------------------------------------------------------------------------


def arm_config_kwargs(settings: Mapping[str, Any], arm: str, num_paraphrases: int, output_dir: str) -> dict[str, Any]:
    """:class:`~grpo_sim.trainer.PSGRPOConfig` keyword arguments of one arm (CPU, no saving, no reporting)."""
    if arm not in ARM_REWARD_TERMS:
        raise ValueError(f"arm must be one of {list(ARM_REWARD_TERMS)}, got {arm!r}")
    s = dict(settings)
    batch = int(s.pop("sets_per_step")) * num_paraphrases * int(s["num_generations"])
    return {
        "output_dir": output_dir,
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "save_strategy": "no",
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "logging_steps": 10,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": False,
        **s,
        "reward_terms": copy.deepcopy(ARM_REWARD_TERMS[arm]),
    }


def train_longform_arm(
    policy_dir: str | os.PathLike[str],
    train_sets: Sequence[Any],
    output_dir: str | os.PathLike[str],
    arm: str,
    settings: Mapping[str, Any],
    progress: bool = False,
    num_threads: int | None = 1,
) -> dict[str, Any]:
    """Train one arm from ``policy_dir``; save model + tokenizer + ``train_log.json`` to ``output_dir``.

    Returns ``{"train_seconds", "stats"}`` (``stats``: training metrics early and late, see
    :func:`train_stats`). Runs in a worker process of :func:`run_longform_demo` (or in-process).
    """
    import warnings

    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging

    from ..data.schema import to_training_rows
    from ..models import load_policy
    from ..trainer import PSGRPOConfig, PSGRPOTrainer

    if num_threads:
        torch.set_num_threads(int(num_threads))
    hf_logging.disable_progress_bar()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_policy(str(policy_dir))
    model.get_input_embeddings().weight.requires_grad_(False)  # tied embeddings stay as in the warm start
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # transformers' deprecation notice about TRL's gradient_checkpointing field
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        args = PSGRPOConfig(**arm_config_kwargs(settings, arm, len(train_sets[0].paraphrases), str(out / "trainer")))
        trainer = PSGRPOTrainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(to_training_rows(train_sets, LONGFORM_TEMPLATE)),
        )
        trainer.remove_callback(PrinterCallback)
        if progress:
            trainer.add_callback(progress_callback(arm, args.max_steps))
        trainer.train()
    seconds = time.perf_counter() - t0
    model = trainer.model
    model.get_input_embeddings().weight.requires_grad_(True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    history = trainer.state.log_history
    atomic_write_text(
        out / "train_log.json",
        json.dumps(
            {
                "arm": arm,
                "reward_terms": ARM_REWARD_TERMS[arm],
                "settings": dict(settings),
                "train_seconds": seconds,
                "log_history": history,
            },
            indent=1,
            default=float,
        ),
    )
    return {"train_seconds": round(seconds, 2), "stats": train_stats(history)}


def _arm_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker entry (picklable): one arm, with its own torch thread count."""
    from ..data.schema import ParaphraseSet

    sets = [ParaphraseSet.model_validate(s) for s in job.pop("train_sets")]
    return train_longform_arm(train_sets=sets, **job)


def train_stats(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of a few logged GRPO metrics over the first and the last logged tenth of training."""
    logged = [h for h in history if "reward" in h]
    if not logged:
        return {}
    keys = (
        "reward",
        "rewards/accuracy/mean",
        "rewards/consistency/mean",
        "frac_reward_zero_std",
        "ps_grpo/agreement",
        "entropy",
    )
    k = max(1, len(logged) // 10)
    return {
        name: {
            key: round(sum(float(h[key]) for h in part) / len(part), 4) for key in keys if all(key in h for h in part)
        }
        for name, part in (("first", logged[:k]), ("last", logged[-k:]))
    }


def train_arms(
    policy_dir: Path,
    train_sets: Sequence[Any],
    out: Path,
    settings: Mapping[str, Any],
    progress: bool,
    num_threads: int | None,
    parallel: bool,
) -> dict[str, dict[str, Any]]:
    """Both arms; in two worker processes when ``parallel`` (one per core), else one after the other."""
    jobs = {
        arm: {
            "policy_dir": str(policy_dir),
            "output_dir": str(out / arm),
            "arm": arm,
            "settings": dict(settings),
            "progress": progress,
            "num_threads": num_threads,
        }
        for arm in ARMS
    }
    if not parallel:
        return {arm: train_longform_arm(train_sets=train_sets, **job) for arm, job in jobs.items()}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    dumped = [s.model_dump(mode="json") for s in train_sets]
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {arm: pool.submit(_arm_job, {**job, "train_sets": dumped}) for arm, job in jobs.items()}
        return {arm: f.result() for arm, f in futures.items()}
