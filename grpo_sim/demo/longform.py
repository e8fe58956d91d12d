"""The long-form CPU demo (``grpo-sim demo --task longform``): consistency and accuracy come apart.

In the short-answer demo every question has one one-word answer, so making a wording right also
makes it agree with the others, and GRPO with an accuracy reward alone gains most of what PS-GRPO
gains. The paper's long-form setting (ELI5) differs: an answer can be right and still be worded
differently from the answer to a paraphrase. This demo builds exactly that, at toy scale:

1. **Data** (:mod:`grpo_sim.demo.longform_world`): the short demo's world with sentence answers that
   have three acceptable phrasings each ("they were born in Oslandia." / "their birthplace is
   Oslandia." / "Oslandia is where they were born."); held-out sets ask about unseen people and
   names. Deterministic for the seed.
2. **Warm start**: SFT with gold entities whose phrasing depends on the question wording (the
   wording's preferred phrasing with probability ``phrasing_fidelity``, else another): the policy
   is mostly right but words its answers to the paraphrases of a set differently. Cached.
3. **Two GRPO arms** from the warm start, same data, steps, seed and settings
   (:data:`LONGFORM_GRPO_SETTINGS`), different reward only (:data:`ARM_REWARD_TERMS`):
   ``grpo_accuracy_only`` = accuracy (best token F1 over the gold phrasings, which pays every
   correct phrasing the same) and ``ps_grpo`` = the same accuracy + cross-paraphrase consistency
   with BLEU-2 (the paper's choice on ELI5). The arms run in two processes (one torch thread each).
4. **Evaluation** of the warm start and both arms on the held-out sets, greedy decoding
   (:mod:`grpo_sim.eval`): accuracy as the best token F1 / ROUGE-L / exact match over the gold
   phrasings and ``accuracy_entity`` (the answer names the gold entity); end-to-end consistency
   with BLEU-2, ROUGE-L, exact match and embedding cosine (packaged MiniLM); ``phrasing_agreement``
   (share of paraphrase pairs of a set using the same phrasing, whatever name they give); collapse
   indicators (``frac_empty``, ``frac_sets_identical_wrong``). Paired bootstrap intervals
   (:func:`grpo_sim.eval.metrics.paired_difference`) for each arm minus the warm start and
   PS-GRPO minus accuracy-only; ``target`` records the issue's criterion (PS-GRPO minus
   accuracy-only: BLEU-2 consistency interval above 0, token-F1 accuracy interval's lower end
   >= -0.02).

Writes ``summary.json``, ``answers.json``, ``summary.png`` and one directory per arm under the
output directory, and prints a table. Nothing is tuned on the held-out sets.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..io import atomic_open, atomic_write_text
from .longform_world import (
    LONGFORM_TEMPLATE,
    LongformWarmStartConfig,
    build_longform_dataset,
    longform_text_corpus,
    longform_warm_start,
    mentions,
    phrasing_of,
)

LONGFORM_DATA_SETTINGS: dict[str, Any] = {
    "num_train_sets": 600,
    "num_eval_sets": 200,
    "num_paraphrases": 4,
    "passages_per_prompt": 3,
}

#: Warm start (see :class:`grpo_sim.demo.longform_world.LongformWarmStartConfig`).
LONGFORM_WARMSTART_SETTINGS: dict[str, Any] = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 8,
    "curriculum_steps": 300,
    "name_steps": 1200,
    "steps": 1300,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "warmup_steps": 100,
    "phrasing_fidelity": 0.75,
}

#: The GRPO settings shared by both arms (:class:`grpo_sim.trainer.PSGRPOConfig` fields, except
#: ``sets_per_step``: paraphrase sets per generation batch = per optimizer step). As in the short
#: demo, advantages are normalised over a whole set (``advantage_mode="set"``), embeddings stay
#: frozen (held-out names keep their "pretrained" vectors) and the entropy warning is off (sentences
#: of a fixed form legitimately become near-deterministic); the collapse penalty stays on.
LONGFORM_GRPO_SETTINGS: dict[str, Any] = {
    "max_steps": 250,
    "sets_per_step": 4,
    "num_generations": 4,
    "temperature": 1.0,
    "max_completion_length": 10,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "advantage_mode": "set",
    "collapse_penalty": True,
    "collapse_warn_entropy_ratio": 0.0,
}

_ACCURACY_TERM = {"type": "reference", "name": "accuracy", "weight": 1.0, "similarity": "token_f1"}
#: The only difference between the arms: their reward terms (:mod:`grpo_sim.reward_terms`).
ARM_REWARD_TERMS: dict[str, list[dict[str, Any]]] = {
    "grpo_accuracy_only": [_ACCURACY_TERM],
    "ps_grpo": [{"type": "consistency", "name": "consistency", "weight": 1.0, "similarity": "bleu2"}, _ACCURACY_TERM],
}
ARMS = tuple(ARM_REWARD_TERMS)
POLICIES = ("base",) + ARMS

#: ``quick=True``: a smoke test of the pipeline in seconds (the numbers mean nothing).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"num_train_sets": 16, "num_eval_sets": 6},
    "warmstart": {"name_steps": 10, "steps": 10, "curriculum_steps": 5, "batch_size": 8, "warmup_steps": 2},
    "grpo": {"max_steps": 2, "sets_per_step": 1},
}

#: Paired comparisons ``a_minus_b`` in ``summary.json["comparisons"]`` and the keys compared.
COMPARISONS = (("ps_grpo", "base"), ("grpo_accuracy_only", "base"), ("ps_grpo", "grpo_accuracy_only"))
COMPARED_KEYS = (
    "consistency_e2e_bleu2",
    "consistency_e2e_embedding",
    "phrasing_agreement",
    "accuracy_f1",
    "accuracy_rouge_l",
    "accuracy_entity",
)
#: The issue's criterion on PS-GRPO minus accuracy-only: consistency interval above 0, accuracy not lower.
ACCURACY_NOT_LOWER_MARGIN = -0.02
EVAL_METRICS = ("bleu2", "rouge_l", "exact_match", "embedding")
MAX_NEW_TOKENS = 12


def longform_settings(quick: bool = False, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"data", "warmstart", "grpo"}`` settings of a run."""
    s = {
        "data": dict(LONGFORM_DATA_SETTINGS),
        "warmstart": dict(LONGFORM_WARMSTART_SETTINGS),
        "grpo": copy.deepcopy(LONGFORM_GRPO_SETTINGS),
    }
    if quick:
        for part, over in QUICK_OVERRIDES.items():
            s[part].update(over)
    for part in s.values():
        part["seed"] = seed
    return s


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


def _progress_callback(arm: str, max_steps: int):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "reward" not in logs or (state.global_step % 50 and state.global_step != max_steps):
                return
            parts = [f"  [{arm}] step {state.global_step}/{max_steps} ({time.perf_counter() - self.start:.0f}s)"]
            for key, label in (
                ("rewards/accuracy/mean", "acc"),
                ("rewards/consistency/mean", "cons"),
                ("frac_reward_zero_std", "zero-std"),
                ("entropy", "entropy"),
            ):
                if key in logs:
                    parts.append(f"{label} {float(logs[key]):.3f}")
            print("  ".join(parts), flush=True)

    return Progress()


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
            trainer.add_callback(_progress_callback(arm, args.max_steps))
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


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def answer_figures(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """Per set: ``accuracy_entity`` (share of answers naming the gold entity), ``phrasing_agreement``
    (share of ordered paraphrase pairs using the same phrasing; an answer in none of the phrasings
    agrees with nothing) and ``identical_wrong`` (1 when every normalised answer is the same and
    not a gold phrasing)."""
    from ..similarity.text import normalize_answer

    rows = []
    for s, group in zip(sets, answers):
        rel, entity = s.metadata["relation"], s.metadata["entity"]
        forms = [phrasing_of(a, rel) for a in group]
        pairs = [(i, j) for i in range(len(group)) for j in range(len(group)) if i != j]
        norm = {normalize_answer(a) for a in group}
        rows.append(
            {
                "accuracy_entity": sum(mentions(a, entity) for a in group) / len(group),
                "phrasing_agreement": (
                    sum(forms[i] is not None and forms[i] == forms[j] for i, j in pairs) / len(pairs)
                    if pairs
                    else float("nan")
                ),
                "identical_wrong": float(len(norm) == 1 and not norm & {normalize_answer(g) for g in s.answers}),
            }
        )
    return rows


def evaluate_policy(path: str | os.PathLike[str], sets: Sequence[Any]) -> tuple[dict[str, Any], list[dict], list]:
    """Greedy end-to-end evaluation -> ``(summary, per_set_rows, answers)`` (answers per set, paraphrase order)."""
    from ..eval import generate_predictions, summarize_with_details
    from ..eval.metrics import bootstrap_ci
    from ..models import load_policy

    model, tok = load_policy(str(path))
    preds = generate_predictions(
        model,
        tok,
        sets,
        level="e2e",
        template=LONGFORM_TEMPLATE,
        max_new_tokens=MAX_NEW_TOKENS,
        batch_size=128,
        do_sample=False,
        progress=False,
    )
    table = {(p["set_id"], p["paraphrase_id"]): p["answer"] for p in preds}
    answers = [[table[(s.set_id, p.paraphrase_id)] for p in s.paraphrases] for s in sets]
    summary, per_set = summarize_with_details(sets, preds, metrics=EVAL_METRICS)
    extra = answer_figures(sets, answers)
    for row, more in zip(per_set, extra):
        row.update(more)
    for key in ("accuracy_entity", "phrasing_agreement"):
        values = [r[key] for r in extra]
        summary[key] = sum(values) / len(values)
        summary[f"{key}_ci"] = list(bootstrap_ci(values) or ()) or None
    summary["frac_empty"] = summary["empty_answer_rate"]
    summary["frac_sets_identical_wrong"] = sum(r["identical_wrong"] for r in extra) / len(extra)
    return summary, per_set, answers


def paired_comparisons(
    per_set: Mapping[str, Sequence[Mapping[str, Any]]], seed: int = 0, n_boot: int = 2000
) -> dict[str, dict[str, Any]]:
    """``{"a_minus_b": {key: {"diff", "ci", "num_sets"}}}`` for :data:`COMPARISONS` and :data:`COMPARED_KEYS`."""
    from ..eval.metrics import paired_difference

    return {
        f"{a}_minus_{b}": {
            key: paired_difference(per_set[a], per_set[b], key, n_boot=n_boot, seed=seed) for key in COMPARED_KEYS
        }
        for a, b in COMPARISONS
        if a in per_set and b in per_set
    }


def target_check(comparisons: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's long-form target on PS-GRPO minus accuracy-only."""
    entry = comparisons["ps_grpo_minus_grpo_accuracy_only"]
    cons, acc = entry["consistency_e2e_bleu2"], entry["accuracy_f1"]
    cons_ok = cons["ci"] is not None and cons["ci"][0] > 0
    acc_ok = acc["ci"] is not None and acc["ci"][0] >= ACCURACY_NOT_LOWER_MARGIN
    return {
        "criterion": "PS-GRPO minus accuracy-only: consistency_e2e_bleu2 interval above 0 and accuracy_f1 "
        f"interval's lower end >= {ACCURACY_NOT_LOWER_MARGIN}",
        "consistency_bleu2_interval_above_0": cons_ok,
        "accuracy_f1_not_lower": acc_ok,
        "met": cons_ok and acc_ok,
    }


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

ROW_LABELS = {"base": "warm start", "grpo_accuracy_only": "GRPO acc.-only", "ps_grpo": "PS-GRPO"}
COLUMNS = (
    ("accuracy_f1", "acc F1"),
    ("accuracy_rouge_l", "acc ROUGE-L"),
    ("accuracy_entity", "acc entity"),
    ("consistency_e2e_bleu2", "cons BLEU-2"),
    ("consistency_e2e_embedding", "cons emb"),
    ("consistency_e2e_exact", "cons exact"),
    ("phrasing_agreement", "same phrasing"),
    ("frac_empty", "empty"),
    ("frac_sets_identical_wrong", "ident-wrong"),
)


def print_table(summary: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PS-GRPO long-form CPU demo — held-out sets (n={summary['base'].get('num_sets')})")
    table.add_column("policy", no_wrap=True)
    for _, label in COLUMNS:
        table.add_column(label, justify="right", no_wrap=True)
    for key in POLICIES:
        table.add_row(
            ROW_LABELS[key], *("-" if summary[key].get(k) is None else f"{summary[key][k]:.3f}" for k, _ in COLUMNS)
        )
    console = Console()
    if not console.is_terminal and console.width < 130:
        console = Console(width=130)
    console.print(table)


def plot_summary(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Bar chart of the accuracy and consistency columns for the three policies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = COLUMNS[:7]
    x = np.arange(len(cols))
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, key in enumerate(POLICIES):
        bars = ax.bar(
            x + (i - 1) * 0.26, [float(summary[key].get(k) or 0.0) for k, _ in cols], 0.26, label=ROW_LABELS[key]
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(x, [label for _, label in cols], fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("held-out score")
    ax.set_title(f"PS-GRPO long-form CPU demo ({summary['base'].get('num_sets')} held-out sets)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
# The demo
# ------------------------------------------------------------------------------------------


def run_longform_demo(
    output_dir: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = 1,
    parallel: bool | None = None,
) -> dict[str, Any]:
    """Run the long-form demo; returns the summary written to ``output_dir/summary.json``.

    Args:
        output_dir: receives ``summary.json``, ``summary.png``, ``answers.json`` (every held-out
            answer of every policy) and one directory per arm (model, tokenizer, ``train_log.json``).
        quick: tiny data and budgets (a smoke test; the numbers mean nothing).
        seed: seeds the data, the warm start and both arms.
        cache_dir: keeps the warm start between runs (default ``output_dir/../.cache``).
        num_threads: torch CPU threads per process (restored afterwards; ``None`` leaves them alone).
        parallel: train the two arms in two processes at once (default: yes, except with ``quick``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    previous_threads = torch.get_num_threads()
    bars = hf_logging.is_progress_bar_enabled()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    hf_logging.disable_progress_bar()
    try:
        return _run(
            Path(output_dir),
            quick,
            seed,
            progress,
            cache_dir,
            num_threads,
            (not quick) if parallel is None else parallel,
        )
    finally:
        torch.set_num_threads(previous_threads)
        if bars:
            hf_logging.enable_progress_bar()


def _run(
    out: Path, quick: bool, seed: int, progress: bool, cache_dir, num_threads: int | None, parallel: bool
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    log: Callable[[str], None] = print if progress else (lambda _m: None)
    settings = longform_settings(quick, seed)
    timings: dict[str, Any] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    d = settings["data"]
    train_sets, eval_sets, corpus = build_longform_dataset(
        d["num_train_sets"],
        d["num_eval_sets"],
        num_paraphrases=d["num_paraphrases"],
        passages_per_prompt=d["passages_per_prompt"],
        seed=seed,
    )
    timings["data_s"] = time.perf_counter() - t0
    log(
        f"long-form data: {len(train_sets)} train / {len(eval_sets)} held-out sets x {d['num_paraphrases']} "
        f"paraphrases, {len(corpus)} passages"
    )

    t0 = time.perf_counter()
    before = {p.name for p in cache.glob("longform-warmstart-*")} if cache.is_dir() else set()
    ws_config = LongformWarmStartConfig(**settings["warmstart"])
    policy_dir = longform_warm_start(
        train_sets, corpus, longform_text_corpus(train_sets + eval_sets, corpus), cache, ws_config, log=log
    )
    timings["warm_start_s"] = time.perf_counter() - t0
    timings["warm_start_cached"] = policy_dir.name in before
    ws_meta = json.loads((policy_dir / "longform-warmstart.json").read_text(encoding="utf-8"))

    t0 = time.perf_counter()
    log(
        f"GRPO arms {', '.join(ARMS)}: {settings['grpo']['max_steps']} steps each"
        f"{' in two processes' if parallel else ''}"
    )
    trained = train_arms(policy_dir, train_sets, out, settings["grpo"], progress, num_threads, parallel)
    timings["train_arms_s"] = time.perf_counter() - t0
    for arm, info in trained.items():
        timings[f"train_{arm}_s"] = info["train_seconds"]

    results: dict[str, Any] = {}
    per_set: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for name, path in (("base", policy_dir), *((arm, out / arm) for arm in ARMS)):
        t0 = time.perf_counter()
        results[name], per_set[name], answers[name] = evaluate_policy(path, eval_sets)
        timings[f"eval_{name}_s"] = time.perf_counter() - t0
        r = results[name]
        log(
            f"eval {name}: accuracy F1 {r['accuracy_f1']:.3f} entity {r['accuracy_entity']:.3f}  consistency "
            f"BLEU-2 {r['consistency_e2e_bleu2']:.3f}  same phrasing {r['phrasing_agreement']:.3f}"
        )

    timings["total_s"] = time.perf_counter() - t_all
    comparisons = paired_comparisons(per_set, seed=seed)
    summary: dict[str, Any] = {name: results[name] for name in POLICIES}
    summary["comparisons"] = comparisons
    summary["target"] = target_check(comparisons)
    summary["timings"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()}
    summary["train_stats"] = {arm: info["stats"] for arm, info in trained.items()}
    summary["settings"] = {
        **settings,
        "task": "longform",
        "arm_reward_terms": ARM_REWARD_TERMS,
        "quick": quick,
        "parallel_arms": parallel,
        "torch_threads_per_process": num_threads,
        "warm_start_dir": str(policy_dir),
        "warm_start": {
            k: ws_meta[k] for k in ("num_examples", "num_not_preferred_phrasing", "num_parameters", "train_seconds")
        },
    }
    # answers first, summary last: a summary.json on disk always comes with the answers it summarises
    atomic_write_text(
        out / "answers.json",
        json.dumps(
            {name: {s.set_id: a for s, a in zip(eval_sets, groups)} for name, groups in answers.items()}, indent=1
        ),
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    plot_summary(summary, out / "summary.png")
    if progress:
        print_table(summary)
        for name, entry in comparisons.items():
            log(
                f"{name}: "
                + "; ".join(
                    f"{k} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                    for k, v in entry.items()
                    if v["ci"] is not None
                )
            )
        log(
            f"target (PS-GRPO vs accuracy-only, BLEU-2 consistency up, token-F1 not lower): "
            f"{'met' if summary['target']['met'] else 'NOT met'}"
        )
        log("timings (s): " + ", ".join(f"{k}={v}" for k, v in summary["timings"].items()))
    return summary


def run_longform_seeds(
    output_dir: str | os.PathLike[str],
    seeds: Sequence[int],
    quick: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = 1,
) -> dict[str, Any]:
    """:func:`run_longform_demo` for each seed into ``output_dir/seed-<k>`` (one seed after the other; each trains
    its two arms in two processes), then ``output_dir/seeds.json`` and ``seeds.md``: the figures by seed with their
    spread, the paired differences with their intervals by seed, and the issue's target at each seed."""
    from .report import write_seeds_report
    from .run import cpu_model

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    out = Path(output_dir)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    (out / "seeds.md").unlink(missing_ok=True)
    summaries = {
        s: run_longform_demo(
            out / f"seed-{s}", quick=quick, seed=s, progress=progress, cache_dir=cache, num_threads=num_threads
        )
        for s in seeds
    }
    notes = [
        f"Target (PS-GRPO minus accuracy-only: BLEU-2 consistency interval above 0, token-F1 interval's lower "
        f"end >= {ACCURACY_NOT_LOWER_MARGIN}): "
        + ", ".join(f"seed {s} {'met' if summaries[s]['target']['met'] else 'not met'}" for s in seeds)
    ]
    combined = write_seeds_report(
        out,
        summaries,
        cpu_model(),
        figures=COLUMNS,
        labels=ROW_LABELS,
        title="PS-GRPO long-form CPU demo",
        notes=notes,
        extra={"target": {s: summaries[s]["target"] for s in seeds}},
    )
    if progress:
        print((out / "seeds.md").read_text(encoding="utf-8"), flush=True)
    return combined


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = [
    "run_longform_seeds",
    "ARMS",
    "ARM_REWARD_TERMS",
    "COMPARISONS",
    "LONGFORM_DATA_SETTINGS",
    "LONGFORM_GRPO_SETTINGS",
    "LONGFORM_WARMSTART_SETTINGS",
    "QUICK_OVERRIDES",
    "answer_figures",
    "evaluate_policy",
    "longform_settings",
    "paired_comparisons",
    "run_longform_demo",
    "target_check",
    "train_longform_arm",
]
